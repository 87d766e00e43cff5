package serial

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// This file replays what Linux's 8250 driver (drivers/tty/serial/8250,
// v6.1) does to the UART, written from the driver's documented behaviour:
// autoconfig() identifies the part, serial8250_do_startup() tests its
// interrupts, and the interrupt handler moves bytes.

// uartType is the driver's verdict.
type uartType string

const (
	type8250    uartType = "8250"
	type16450   uartType = "16450"
	type16550   uartType = "16550"
	type16550A  uartType = "16550A"
	type16650   uartType = "16650"
	type16750   uartType = "16750"
	typeEFR     uartType = "16650V2/16850/16C950 (EFR)"
	typeNS      uartType = "NS16550A"
	typeXScale  uartType = "XScale"
	typeU6      uartType = "U6_16550A"
	typeUnknown uartType = "unknown"
)

// linuxAutoconfig follows autoconfig() and autoconfig_16550a() with
// CONFIG_SERIAL_8250_16550A_VARIANTS behaviour (the full probe).
func linuxAutoconfig(t *testing.T, u *UART) uartType {
	t.Helper()
	// IER test: nothing there unless IER holds 0 and 0x0f.
	scratch := inb(u, regIER)
	outb(u, regIER, 0)
	scratch2 := inb(u, regIER) & 0x0f
	outb(u, regIER, 0x0f)
	scratch3 := inb(u, regIER) & 0x0f
	outb(u, regIER, scratch)
	if scratch2 != 0 || scratch3 != 0x0f {
		return typeUnknown
	}
	saveMCR := inb(u, regMCR)
	saveLCR := inb(u, regLCR)

	// Loopback test: MCR = LOOP | OUT2 | RTS must read back DCD | CTS.
	outb(u, regMCR, mcrLoopback|0x0a)
	status1 := inb(u, regMSR) & 0xf0
	outb(u, regMCR, saveMCR)
	if status1 != 0x90 {
		return typeUnknown
	}

	// EFR (at offset 2 under LCR 0xbf) reset; on a 16550A this is FCR.
	outb(u, regLCR, 0xbf)
	outb(u, regIIR, 0)
	outb(u, regLCR, 0)

	outb(u, regIIR, fcrEnable)
	var typ uartType
	switch inb(u, regIIR) >> 6 {
	case 0:
		typ = type8250
		s := inb(u, regScratch)
		outb(u, regScratch, 0xa5)
		s1 := inb(u, regScratch)
		outb(u, regScratch, 0x5a)
		s2 := inb(u, regScratch)
		outb(u, regScratch, s)
		if s1 == 0xa5 && s2 == 0x5a {
			typ = type16450
		}
	case 1:
		typ = typeUnknown
	case 2:
		typ = type16550
	case 3:
		typ = autoconfig16550A(u)
	}
	outb(u, regLCR, saveLCR)
	if typ == typeUnknown {
		return typ
	}
	// Reset the UART: restore MCR, clear FIFOs, read RX, disable IER.
	outb(u, regMCR, saveMCR)
	linuxClearFIFOs(u)
	inb(u, regData)
	outb(u, regIER, 0)
	return typ
}

func autoconfig16550A(u *UART) uartType {
	// EFR visible with DLAB set: only ST16C650V1.
	outb(u, regLCR, 0x80)
	if inb(u, regIIR) == 0 {
		outb(u, regIIR, 0xa8)
		if inb(u, regIIR) != 0 {
			return type16650
		}
		return typeUnknown
	}
	// EFR under LCR 0xbf: ST16C650V2, TI16C752, 16C950...
	outb(u, regLCR, 0xbf)
	if inb(u, regIIR) == 0 {
		return typeEFR
	}
	// National Semiconductor bank switching.
	outb(u, regLCR, 0)
	status1 := inb(u, regMCR)
	outb(u, regLCR, 0xe0)
	status2 := inb(u, regIIR)
	if (status1^status2)&mcrLoopback == 0 {
		outb(u, regLCR, 0)
		outb(u, regMCR, status1^mcrLoopback)
		outb(u, regLCR, 0xe0)
		status2 = inb(u, regIIR)
		outb(u, regLCR, 0)
		outb(u, regMCR, status1)
		if (status2^status1)&mcrLoopback != 0 {
			return typeNS
		}
	}
	// TI16750: IIR bit 5 with the 64-byte FIFO bit, only under DLAB.
	outb(u, regLCR, 0)
	outb(u, regIIR, fcrEnable|0x20)
	s1 := inb(u, regIIR) >> 5
	outb(u, regIIR, fcrEnable)
	outb(u, regLCR, 0x80)
	outb(u, regIIR, fcrEnable|0x20)
	s2 := inb(u, regIIR) >> 5
	outb(u, regIIR, fcrEnable)
	outb(u, regLCR, 0)
	if s1 == 6 && s2 == 7 {
		return type16750
	}
	// XScale: IER bit 6 (UUE) sticks.
	ierSave := inb(u, regIER)
	outb(u, regIER, ierSave&^0x40)
	if inb(u, regIER)&0x40 == 0 {
		outb(u, regIER, ierSave|0x40)
		if inb(u, regIER)&0x40 != 0 {
			return typeXScale
		}
	}
	outb(u, regIER, ierSave)
	if linuxSizeFIFO(u) == 64 {
		return typeU6
	}
	return type16550A
}

// linuxSizeFIFO counts how many looped-back bytes the receiver holds.
func linuxSizeFIFO(u *UART) int {
	oldLCR := inb(u, regLCR)
	outb(u, regLCR, 0)
	oldFCR := inb(u, regIIR) // the driver reads "FCR", which is IIR
	oldMCR := inb(u, regMCR)
	outb(u, regIIR, fcrEnable|fcrClearRx|fcrClearTx)
	outb(u, regMCR, mcrLoopback)
	outb(u, regLCR, 0x80)
	oldDLL, oldDLM := inb(u, regData), inb(u, regIER)
	outb(u, regData, 1)
	outb(u, regIER, 0)
	outb(u, regLCR, 0x03)
	for i := range 256 {
		outb(u, regData, byte(i))
	}
	count := 0
	for ; inb(u, regLSR)&lsrDataReady != 0 && count < 256; count++ {
		inb(u, regData)
	}
	outb(u, regIIR, oldFCR)
	outb(u, regMCR, oldMCR)
	outb(u, regLCR, 0x80)
	outb(u, regData, oldDLL)
	outb(u, regIER, oldDLM)
	outb(u, regLCR, oldLCR)
	return count
}

func linuxClearFIFOs(u *UART) {
	outb(u, regIIR, fcrEnable)
	outb(u, regIIR, fcrEnable|fcrClearRx|fcrClearTx)
	outb(u, regIIR, 0)
}

func TestLinuxAutoconfigFindsA16550A(t *testing.T) {
	irq := &countingIRQ{}
	u := New(nil, irq)
	assert.Equal(t, type16550A, linuxAutoconfig(t, u))
	assert.Equal(t, 16, func() int { linuxClearFIFOs(u); return linuxSizeFIFO(u) }())
	// Only the IER test (IER = 0x0f with THR empty) raises THRE; Linux has
	// not requested the IRQ yet, so the masked IOAPIC pin drops the edge.
	assert.Equal(t, int64(1), irq.n.Load())
	assert.Equal(t, byte(0), inb(u, regIER))
	assert.Equal(t, byte(0), inb(u, regMCR))
	assert.Equal(t, byte(0), inb(u, regLCR))
}

func TestLinuxStartupTests(t *testing.T) {
	irq := &countingIRQ{}
	u := New(nil, irq)
	require.Equal(t, type16550A, linuxAutoconfig(t, u))

	// serial8250_do_startup: clear FIFOs and interrupt state.
	linuxClearFIFOs(u)
	inb(u, regLSR)
	inb(u, regData)
	inb(u, regIIR)
	inb(u, regMSR)
	require.NotEqual(t, byte(0xff), inb(u, regLSR), "LSR safety check")

	// UART_BUG_THRE probe: THRE must be raised again after ETBEI 0 -> 1.
	outb(u, regIER, ierTxEmpty)
	iir1 := inb(u, regIIR)
	outb(u, regIER, 0)
	outb(u, regIER, ierTxEmpty)
	iir := inb(u, regIIR)
	outb(u, regIER, 0)
	assert.Zero(t, iir1&iirNone, "THRE after enabling ETBEI")
	assert.Zero(t, iir&iirNone, "THRE re-asserted: no UART_BUG_THRE polling timer")

	outb(u, regLCR, 0x03) // 8N1
	outb(u, regMCR, mcrOut2|mcrDTR|mcrRTS)

	// UART_BUG_TXEN probe: enabling ETBEI must show up in IIR.
	outb(u, regIER, ierTxEmpty)
	lsr := inb(u, regLSR)
	iir = inb(u, regIIR)
	outb(u, regIER, 0)
	assert.False(t, lsr&lsrTxIdle != 0 && iir&iirNone != 0, "UART_BUG_TXEN would be set")
}

// linuxGuest drives the UART like the 8250 driver with an edge-triggered
// IRQ: start_tx sets ETBEI, and each delivered edge runs the handler,
// which loops over IIR until it reports no interrupt.
type linuxGuest struct {
	u        *UART
	irq      *countingIRQ
	seen     int64 // edges already handled
	ier      byte
	xmit     []byte
	received []byte
}

func (g *linuxGuest) startTx() {
	if g.ier&ierTxEmpty == 0 {
		g.ier |= ierTxEmpty
		outb(g.u, regIER, g.ier)
	}
}

// deliver runs the handler once per pending edge, as the local APIC
// would; it reports whether any edge was pending.
func (g *linuxGuest) deliver() bool {
	if g.irq.n.Load() == g.seen {
		return false
	}
	g.seen = g.irq.n.Load()
	for pass := 0; pass < 512; pass++ {
		iir := inb(g.u, regIIR)
		if iir&iirNone != 0 {
			break
		}
		lsr := inb(g.u, regLSR)
		for n := 0; lsr&lsrDataReady != 0 && n < 256; n++ {
			g.received = append(g.received, inb(g.u, regData))
			lsr = inb(g.u, regLSR)
		}
		inb(g.u, regMSR)
		if lsr&lsrTxEmpty != 0 && g.ier&ierTxEmpty != 0 {
			g.txChars()
		}
	}
	return true
}

func (g *linuxGuest) txChars() {
	if len(g.xmit) == 0 {
		g.ier &^= ierTxEmpty
		outb(g.u, regIER, g.ier)
		return
	}
	for count := fifoSize; count > 0 && len(g.xmit) > 0; count-- {
		outb(g.u, regData, g.xmit[0])
		g.xmit = g.xmit[1:]
	}
	if len(g.xmit) == 0 {
		g.ier &^= ierTxEmpty
		outb(g.u, regIER, g.ier)
	}
}

func TestLinuxInterruptDrivenTransmitNeverStalls(t *testing.T) {
	var out bytes.Buffer
	irq := &countingIRQ{}
	u := New(&out, irq)
	g := &linuxGuest{u: u, irq: irq}
	require.Equal(t, type16550A, linuxAutoconfig(t, u))
	g.ier = ierRxData
	outb(u, regIER, g.ier)
	outb(u, regIIR, fcrEnable|0x80)

	var want bytes.Buffer
	for round := range 50 {
		msg := bytes.Repeat([]byte{byte('a' + round%26)}, 1+round*7)
		want.Write(msg)
		g.xmit = append(g.xmit, msg...)
		g.startTx()
		if round%3 == 0 {
			u.Receive([]byte{byte(round)})
		}
		// The transmitter must make progress on interrupts alone.
		for steps := 0; len(g.xmit) > 0; steps++ {
			require.Less(t, steps, 1000, "transmit stalled: no THRE edge with %d bytes left", len(g.xmit))
			require.True(t, g.deliver() || len(g.xmit) == 0, "transmit stalled: no THRE edge with %d bytes left", len(g.xmit))
		}
		g.deliver()
	}
	assert.Equal(t, want.String(), out.String())
	assert.Len(t, g.received, 17)
}
