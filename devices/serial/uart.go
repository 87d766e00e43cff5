// Package serial emulates a 16550A UART the way Linux's 8250 driver uses
// it: the console of the guest (COM1, ports 0x3f8-0x3ff, IRQ 4).
//
// Transmission is instant: a byte written to THR goes to the host writer
// at once, so THR and the transmitter are always empty. Reception is fed by
// the host through Receive into a bounded buffer the guest drains through
// RBR.
//
// The interrupt line is edge-triggered (ISA IRQ 4, pulsed with KVM_IRQ_LINE). The
// UART raises an edge after any access that makes a source pending that
// was not pending before it. A guest that last read IIR as "no interrupt"
// therefore always gets an edge for the next interrupt; Linux's 8250
// handler loops until IIR reads "no interrupt", so it never misses one.
package serial

import (
	"io"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/vmm-dev/vmm/devices"
)

// Interrupt sources, one bit each. The UART's interrupt line is high while
// any enabled source is pending (IIR bit 0 clear).
type sources uint8

const (
	srcLineStatus sources = 1 << iota
	srcRxData
	srcTxEmpty
	srcModem
)

// Stats counts what went through the UART.
type Stats struct {
	// TransmittedBytes are the bytes the guest wrote to THR outside
	// loopback mode, whether or not the host writer accepted them.
	TransmittedBytes uint64
	// ReceivedBytes are host bytes queued for the guest.
	ReceivedBytes uint64
	// DroppedBytes are host bytes lost because the receive buffer was
	// full or the UART was in loopback mode (its input disconnected).
	DroppedBytes uint64
	// OutputErrors counts failed writes to the host writer.
	OutputErrors uint64
	// InterruptErrors counts failed interrupt triggers.
	InterruptErrors uint64
}

// UART is an emulated 16550A. It implements bus.Device over PortCount
// ports and is safe for concurrent use by vCPUs and the host input reader.
type UART struct {
	irq devices.Interrupt

	mu          sync.Mutex
	ier         byte
	fcr         byte
	lcr         byte
	mcr         byte
	scratch     byte
	dll, dlm    byte
	lsrErrors   byte // OE/PE/FE/BI latched until LSR is read
	msrDelta    byte // MSR bits 3:0 latched until MSR is read
	txEmptyIRQ  bool // THRE interrupt pending (PC16550D: cleared by reading IIR or writing THR)
	rx          [RxBufferSize]byte
	rxHead      int
	rxLen       int
	lastRx      byte // RBR keeps the last byte when the guest over-reads
	outMu       sync.Mutex
	out         io.Writer
	outByte     [1]byte
	outErrOnce  sync.Once
	irqErrOnce  sync.Once
	transmitted atomic.Uint64
	received    atomic.Uint64
	dropped     atomic.Uint64
	outErrors   atomic.Uint64
	irqErrors   atomic.Uint64
}

// New returns a UART in its reset state that writes what the guest
// transmits to out and raises irq on each new interrupt condition. A nil
// out discards output.
func New(out io.Writer, irq devices.Interrupt) *UART {
	if out == nil {
		out = io.Discard
	}
	return &UART{
		irq: irq,
		out: out,
		dll: defaultDivisor,
	}
}

// Stats returns the UART's counters.
func (u *UART) Stats() Stats {
	return Stats{
		TransmittedBytes: u.transmitted.Load(),
		ReceivedBytes:    u.received.Load(),
		DroppedBytes:     u.dropped.Load(),
		OutputErrors:     u.outErrors.Load(),
		InterruptErrors:  u.irqErrors.Load(),
	}
}

// Read handles a guest read at offset. A multi-byte access reads
// consecutive registers, as an ISA bus splits it into byte cycles.
func (u *UART) Read(offset uint64, data []byte) {
	for i := range data {
		data[i] = u.readRegister(offset + uint64(i))
	}
}

// Write handles a guest write at offset, byte by byte like Read.
func (u *UART) Write(offset uint64, data []byte) {
	for i, b := range data {
		u.writeRegister(offset+uint64(i), b)
	}
}

// Receive queues input from the host for the guest. It never blocks on the
// guest: bytes that do not fit in the RxBufferSize buffer are dropped and
// counted in Stats.DroppedBytes.
func (u *UART) Receive(b []byte) {
	if len(b) == 0 {
		return
	}
	u.mu.Lock()
	before := u.pending()
	n := 0
	// PC16550D MCR bit 4: in loopback the serial input is disconnected.
	if u.mcr&mcrLoopback == 0 {
		n = u.pushRx(b, RxBufferSize)
	}
	raise := u.pending()&^before != 0
	u.mu.Unlock()

	u.received.Add(uint64(n))
	if dropped := len(b) - n; dropped > 0 {
		u.dropped.Add(uint64(dropped))
	}
	if raise {
		u.trigger()
	}
}

func (u *UART) readRegister(offset uint64) byte {
	if offset >= PortCount {
		return unclaimedRead
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	dlab := u.lcr&lcrDLAB != 0
	switch offset {
	case regData:
		if dlab {
			return u.dll
		}
		return u.popRx()
	case regIER:
		if dlab {
			return u.dlm
		}
		return u.ier
	case regIIR:
		iir := u.iir()
		// PC16550D table "Interrupt control functions": reading IIR
		// clears a THRE interrupt only when THRE is what it reports.
		if iir&0x0f == iirTxEmpty {
			u.txEmptyIRQ = false
		}
		return iir
	case regLCR:
		return u.lcr
	case regMCR:
		return u.mcr
	case regLSR:
		lsr := u.lsr()
		u.lsrErrors = 0
		return lsr
	case regMSR:
		msr := u.modemInputs() | u.msrDelta
		u.msrDelta = 0
		return msr
	default: // regScratch
		return u.scratch
	}
}

func (u *UART) writeRegister(offset uint64, v byte) {
	if offset >= PortCount {
		return
	}
	u.mu.Lock()
	before := u.pending()
	transmit := false
	dlab := u.lcr&lcrDLAB != 0
	switch offset {
	case regData:
		if dlab {
			u.dll = v
			break
		}
		transmit = u.writeTHR(v)
	case regIER:
		if dlab {
			u.dlm = v
			break
		}
		u.writeIER(v)
	case regIIR:
		u.writeFCR(v)
	case regLCR:
		u.lcr = v
	case regMCR:
		u.writeMCR(v)
	case regLSR, regMSR:
		// Writable only for factory testing on real parts; ignored.
	default: // regScratch
		u.scratch = v
	}
	// Edge-triggered line: raise it whenever a source that was not
	// pending before this access is pending after it, so a guest that
	// last saw IIR report "no interrupt" always gets a new edge.
	raise := u.pending()&^before != 0
	if transmit {
		// Take the output lock before releasing the state lock so bytes
		// reach the host in the order the guest wrote them, without
		// holding the state lock (and Receive) across a slow write.
		u.outMu.Lock()
	}
	u.mu.Unlock()

	if transmit {
		u.emit(v)
		u.outMu.Unlock()
	}
	if raise {
		u.trigger()
	}
}

// emit writes one transmitted byte to the host. Called with outMu held.
func (u *UART) emit(v byte) {
	u.transmitted.Add(1)
	u.outByte[0] = v
	if _, err := u.out.Write(u.outByte[:]); err != nil {
		u.outErrors.Add(1)
		u.outErrOnce.Do(func() {
			slog.Warn("serial: writing guest output failed; counting further errors silently", "err", err)
		})
	}
}

func (u *UART) trigger() {
	if u.irq == nil {
		return
	}
	if err := u.irq.Trigger(); err != nil {
		u.irqErrors.Add(1)
		u.irqErrOnce.Do(func() {
			slog.Warn("serial: raising interrupt failed; counting further errors silently", "err", err)
		})
	}
}
