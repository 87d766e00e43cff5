package serial

import (
	"testing"
	"time"
)

// peekIIR returns IIR without the side effects of a guest read.
func (u *UART) peekIIR() byte {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.iir()
}

// FuzzUART feeds random register accesses and host input. Each op takes
// three bytes: kind (read, write, receive, multi-byte), offset, value.
// Besides never panicking or blocking, it checks the edge-trigger promise:
// once the guest has read IIR as "no interrupt", any interrupt that
// becomes pending is announced by a new edge.
func FuzzUART(f *testing.F) {
	f.Add([]byte{1, regIER, 0x0f, 0, regIIR, 0, 1, regData, 'a', 0, regIIR, 0})
	f.Add([]byte{1, regMCR, 0x1a, 0, regMSR, 0, 1, regIIR, 0x01, 0, regIIR, 0})
	f.Add([]byte{2, 0, 'x', 1, regIER, 0x01, 0, regData, 0, 0, regIIR, 0})
	f.Add([]byte{1, regLCR, 0x80, 1, regData, 0x01, 1, regLCR, 0x03, 3, 0, 0})
	f.Fuzz(func(t *testing.T, script []byte) {
		done := make(chan struct{})
		go func() {
			defer close(done)
			runScript(t, script)
		}()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("UART blocked")
		}
	})
}

func runScript(t *testing.T, script []byte) {
	irq := &countingIRQ{}
	u := New(nil, irq)
	sawNoInterrupt := false
	edges := irq.n.Load()
	for len(script) >= 3 {
		kind, off, val := script[0]%4, uint64(script[1]%10), script[2]
		script = script[3:]
		switch kind {
		case 0:
			v := inb(u, off)
			if off == regIIR {
				sawNoInterrupt = v&iirNone != 0
				if v&0x30 != 0 {
					t.Fatalf("IIR %#x has reserved bits set", v)
				}
			}
			if off == regLSR && v&(lsrTxEmpty|lsrTxIdle) != lsrTxEmpty|lsrTxIdle {
				t.Fatalf("LSR %#x: transmitter not empty", v)
			}
			if off == regIER && u.peekLCR()&lcrDLAB == 0 && v&^ierMask != 0 {
				t.Fatalf("IER %#x has unimplemented bits", v)
			}
		case 1:
			outb(u, off, val)
		case 2:
			u.Receive(make([]byte, int(val)*20))
		case 3:
			data := make([]byte, 1+int(val)%8)
			if val&0x80 != 0 {
				u.Write(off, data)
			} else {
				u.Read(off, data)
			}
		}
		if n := irq.n.Load(); n != edges {
			edges = n
			sawNoInterrupt = false
		}
		if sawNoInterrupt && u.peekIIR()&iirNone == 0 {
			t.Fatalf("interrupt %#x pending without an edge since the guest saw none", u.peekIIR())
		}
		if l := u.peekRxLen(); l < 0 || l > RxBufferSize {
			t.Fatalf("receive buffer length %d", l)
		}
	}
}

func (u *UART) peekLCR() byte {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.lcr
}

func (u *UART) peekRxLen() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.rxLen
}
