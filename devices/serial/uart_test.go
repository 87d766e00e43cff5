package serial

import (
	"bytes"
	"errors"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// countingIRQ is a devices.Interrupt that counts edges.
type countingIRQ struct {
	n   atomic.Int64
	err error
}

func (c *countingIRQ) Trigger() error {
	c.n.Add(1)
	return c.err
}

// syncBuffer is a bytes.Buffer safe for concurrent writers and readers.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}

func inb(u *UART, off uint64) byte {
	var b [1]byte
	u.Read(off, b[:])
	return b[0]
}

func outb(u *UART, off uint64, v byte) {
	u.Write(off, []byte{v})
}

// op is one guest access in a register test: a write, or a read whose
// result is checked.
type op struct {
	write bool
	off   uint64
	val   byte
}

func w(off uint64, v byte) op { return op{write: true, off: off, val: v} }
func r(off uint64, v byte) op { return op{off: off, val: v} }

func TestRegisters(t *testing.T) {
	tests := []struct {
		name string
		ops  []op
	}{
		{"reset state", []op{
			r(regIER, 0), r(regIIR, iirNone), r(regLCR, 0), r(regMCR, 0),
			r(regLSR, lsrTxEmpty|lsrTxIdle), r(regMSR, msrConnected), r(regScratch, 0),
		}},
		{"scratch register holds any value", []op{w(regScratch, 0xa5), r(regScratch, 0xa5), w(regScratch, 0x5a), r(regScratch, 0x5a)}},
		{"IER keeps only the low nibble", []op{w(regIER, 0xff), r(regIER, 0x0f), w(regIER, 0x40), r(regIER, 0)}},
		{"DLAB maps the divisor latch over RBR and IER", []op{
			w(regIER, 0x05), w(regLCR, lcrDLAB), r(regData, defaultDivisor), r(regIER, 0),
			w(regData, 0x01), w(regIER, 0x02), r(regData, 0x01), r(regIER, 0x02),
			w(regLCR, 0x03), r(regIER, 0x05), r(regLCR, 0x03),
		}},
		{"FIFO enable shows in IIR bits 7:6", []op{w(regIIR, fcrEnable), r(regIIR, 0xc1), w(regIIR, 0), r(regIIR, 0x01)}},
		{"IIR bit 5 stays clear with the 64-byte FIFO bit (not a 16750)", []op{w(regIIR, 0x21), r(regIIR, 0xc1)}},
		{"THRE interrupt on ETBEI enable, cleared by reading IIR", []op{
			w(regIER, ierTxEmpty), r(regIIR, iirTxEmpty), r(regIIR, iirNone),
		}},
		{"THRE raised again after ETBEI 0 -> 1", []op{
			w(regIER, ierTxEmpty), r(regIIR, iirTxEmpty), w(regIER, 0), w(regIER, ierTxEmpty), r(regIIR, iirTxEmpty),
		}},
		{"rewriting ETBEI while set does not re-raise THRE", []op{
			w(regIER, ierTxEmpty), r(regIIR, iirTxEmpty), w(regIER, ierTxEmpty), r(regIIR, iirNone),
		}},
		{"THR write raises THRE again", []op{
			w(regIER, ierTxEmpty), r(regIIR, iirTxEmpty), w(regData, 'a'), r(regIIR, iirTxEmpty), r(regIIR, iirNone),
		}},
		{"MCR keeps five bits", []op{w(regMCR, 0xff), r(regMCR, 0x1f)}},
		{"loopback maps MCR outputs to MSR inputs", []op{
			w(regMCR, mcrLoopback|mcrOut2|mcrRTS), r(regMSR, msrDCD|msrCTS|msrDeltaDSR),
			w(regMCR, mcrLoopback|mcrDTR|mcrOut1), r(regMSR, msrDSR|msrRI|msrDeltaCTS|msrDeltaDSR|msrDeltaDCD),
			w(regMCR, mcrLoopback), r(regMSR, msrTrailingRI|msrDeltaDSR),
			w(regMCR, 0), r(regMSR, msrConnected|msrDeltaCTS|msrDeltaDSR|msrDeltaDCD), r(regMSR, msrConnected),
		}},
		{"loopback transmits into the receiver", []op{
			w(regMCR, mcrLoopback), w(regData, 'x'), r(regLSR, lsrTxEmpty|lsrTxIdle|lsrDataReady), r(regData, 'x'),
			r(regLSR, lsrTxEmpty|lsrTxIdle),
		}},
		{"loopback without FIFO overruns on the second byte", []op{
			w(regMCR, mcrLoopback), w(regData, 1), w(regData, 2),
			r(regLSR, lsrTxEmpty|lsrTxIdle|lsrDataReady|lsrOverrun), r(regLSR, lsrTxEmpty|lsrTxIdle|lsrDataReady),
			r(regData, 1), r(regLSR, lsrTxEmpty|lsrTxIdle),
		}},
		{"line status interrupt on overrun", []op{
			w(regIER, ierLineStatus), w(regMCR, mcrLoopback), w(regData, 1), w(regData, 2),
			r(regIIR, iirLineStatus), r(regLSR, lsrTxEmpty|lsrTxIdle|lsrDataReady|lsrOverrun), r(regIIR, iirNone),
		}},
		{"modem status interrupt until MSR is read", []op{
			w(regIER, ierModem), w(regMCR, mcrLoopback), r(regIIR, iirModem), r(regMSR, msrDeltaCTS|msrDeltaDSR|msrDeltaDCD), r(regIIR, iirNone),
		}},
		{"received data beats THRE in IIR", []op{
			w(regIER, ierTxEmpty|ierRxData), w(regMCR, mcrLoopback), w(regData, 'q'),
			r(regIIR, iirRxData), r(regData, 'q'), r(regIIR, iirTxEmpty), r(regIIR, iirNone),
		}},
		{"LSR and MSR writes are ignored", []op{w(regLSR, 0xff), w(regMSR, 0xff), r(regLSR, lsrTxEmpty|lsrTxIdle), r(regMSR, msrConnected)}},
		{"ports past the UART read as unclaimed", []op{r(8, 0xff), w(8, 1), r(100, 0xff)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u := New(nil, &countingIRQ{})
			for i, o := range tt.ops {
				if o.write {
					outb(u, o.off, o.val)
					continue
				}
				assert.Equalf(t, o.val, inb(u, o.off), "op %d: read offset %d", i, o.off)
			}
		})
	}
}

func TestTransmitWritesToHost(t *testing.T) {
	var out bytes.Buffer
	u := New(&out, &countingIRQ{})
	for _, c := range []byte("hello\r\n") {
		outb(u, regData, c)
	}
	assert.Equal(t, "hello\r\n", out.String())
	assert.Equal(t, uint64(7), u.Stats().TransmittedBytes)
}

func TestMultiByteAccessSplitsIntoBytes(t *testing.T) {
	var out bytes.Buffer
	u := New(&out, &countingIRQ{})
	u.Write(regData, []byte{'a', 0x03}) // THR then IER
	assert.Equal(t, "a", out.String())
	data := make([]byte, 2)
	u.Read(regLCR, data)
	assert.Equal(t, []byte{0, 0}, data)
	u.Read(regIER, data) // IER, IIR
	assert.Equal(t, []byte{0x03, iirTxEmpty}, data)
	u.Read(7, data) // scratch, then past the end
	assert.Equal(t, []byte{0, unclaimedRead}, data)
}

func TestReceive(t *testing.T) {
	irq := &countingIRQ{}
	u := New(nil, irq)
	u.Receive([]byte("ab"))
	assert.Zero(t, irq.n.Load(), "no interrupt while ERBFI is off")
	assert.Equal(t, byte(lsrDataReady|lsrTxEmpty|lsrTxIdle), inb(u, regLSR))

	outb(u, regIER, ierRxData)
	assert.Equal(t, int64(1), irq.n.Load(), "enabling ERBFI with data queued raises an edge")
	assert.Equal(t, byte(iirRxData), inb(u, regIIR))
	assert.Equal(t, byte('a'), inb(u, regData))
	assert.Equal(t, byte('b'), inb(u, regData))
	assert.Equal(t, byte(iirNone), inb(u, regIIR))
	assert.Equal(t, byte(lsrTxEmpty|lsrTxIdle), inb(u, regLSR))

	u.Receive([]byte("c"))
	assert.Equal(t, int64(2), irq.n.Load())
	u.Receive([]byte("d"))
	assert.Equal(t, int64(2), irq.n.Load(), "data already pending: no new source, no new edge")
	assert.Equal(t, uint64(4), u.Stats().ReceivedBytes)
}

func TestReceiveDropsWhatDoesNotFit(t *testing.T) {
	u := New(nil, &countingIRQ{})
	u.Receive(bytes.Repeat([]byte{'x'}, RxBufferSize-1))
	u.Receive([]byte("yz!"))
	st := u.Stats()
	assert.Equal(t, uint64(RxBufferSize), st.ReceivedBytes)
	assert.Equal(t, uint64(2), st.DroppedBytes)
	for range RxBufferSize - 1 {
		require.Equal(t, byte('x'), inb(u, regData))
	}
	assert.Equal(t, byte('y'), inb(u, regData))
	assert.Zero(t, inb(u, regLSR)&lsrDataReady)
}

func TestReceiveInLoopbackIsDropped(t *testing.T) {
	u := New(nil, &countingIRQ{})
	outb(u, regMCR, mcrLoopback)
	u.Receive([]byte("abc"))
	assert.Equal(t, uint64(3), u.Stats().DroppedBytes)
	assert.Zero(t, inb(u, regLSR)&lsrDataReady)
}

func TestFCRClearsReceiveBuffer(t *testing.T) {
	tests := []struct {
		name        string
		before      []byte // FCR writes before the host input arrives
		after       []byte // FCR writes after it
		stillQueued bool
	}{
		{"clear RX bit", []byte{fcrEnable}, []byte{fcrEnable | fcrClearRx}, false},
		{"enabling the FIFO clears it", nil, []byte{fcrEnable}, false},
		{"disabling the FIFO clears it", []byte{fcrEnable}, []byte{0}, false},
		{"rewriting the same mode keeps data", []byte{fcrEnable}, []byte{fcrEnable | 0xc0}, true},
		{"clear TX bit keeps RX", []byte{fcrEnable}, []byte{fcrEnable | fcrClearTx}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u := New(nil, &countingIRQ{})
			for _, f := range tt.before {
				outb(u, regIIR, f)
			}
			u.Receive([]byte("data"))
			for _, f := range tt.after {
				outb(u, regIIR, f)
			}
			assert.Equal(t, tt.stillQueued, inb(u, regLSR)&lsrDataReady != 0)
		})
	}
}

func TestInterruptEdges(t *testing.T) {
	irq := &countingIRQ{}
	u := New(nil, irq)
	outb(u, regIER, ierTxEmpty)
	require.Equal(t, int64(1), irq.n.Load(), "THRE pending on enable")
	outb(u, regData, 'a')
	assert.Equal(t, int64(1), irq.n.Load(), "THRE still pending across the write: line stayed high")
	require.Equal(t, byte(iirTxEmpty), inb(u, regIIR))
	outb(u, regData, 'b')
	assert.Equal(t, int64(2), irq.n.Load(), "THRE after IIR cleared it is a new edge")

	// A new source while another is pending is a new edge too.
	outb(u, regIER, ierTxEmpty|ierRxData)
	assert.Equal(t, int64(2), irq.n.Load())
	u.Receive([]byte("x"))
	assert.Equal(t, int64(3), irq.n.Load())
}

func TestOutputAndInterruptErrorsAreCounted(t *testing.T) {
	irq := &countingIRQ{err: errors.New("eventfd closed")}
	u := New(failingWriter{}, irq)
	outb(u, regIER, ierTxEmpty)
	outb(u, regData, 'a')
	inb(u, regIIR)
	outb(u, regData, 'b')
	st := u.Stats()
	assert.Equal(t, uint64(2), st.OutputErrors)
	assert.Equal(t, uint64(2), st.TransmittedBytes)
	assert.Equal(t, uint64(2), st.InterruptErrors)
}

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errors.New("broken pipe") }

func TestNilInterruptIsAllowed(t *testing.T) {
	u := New(nil, nil)
	outb(u, regIER, 0x0f)
	u.Receive([]byte("a"))
	assert.Equal(t, byte(iirRxData), inb(u, regIIR))
}

func TestConcurrentUse(t *testing.T) {
	out := &syncBuffer{}
	u := New(out, &countingIRQ{})
	outb(u, regIER, ierRxData|ierTxEmpty)
	var wg sync.WaitGroup
	wg.Add(3)
	go func() {
		defer wg.Done()
		for range 1000 {
			u.Receive([]byte("in"))
		}
	}()
	go func() {
		defer wg.Done()
		for range 1000 {
			outb(u, regData, 'o')
		}
	}()
	go func() {
		defer wg.Done()
		for range 2000 {
			if inb(u, regLSR)&lsrDataReady != 0 {
				inb(u, regData)
			}
			inb(u, regIIR)
		}
	}()
	wg.Wait()
	assert.Len(t, out.String(), 1000)
}
