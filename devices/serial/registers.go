package serial

// Register offsets from the UART's base port (PC16550D datasheet, table
// "UART register addresses"). Offsets 0 and 1 switch to the divisor latch
// while LCR.DLAB is set.
const (
	regData    = 0 // read: RBR; write: THR; DLAB: DLL
	regIER     = 1 // DLAB: DLM
	regIIR     = 2 // read: IIR; write: FCR
	regLCR     = 3
	regMCR     = 4
	regLSR     = 5
	regMSR     = 6
	regScratch = 7

	// PortCount is the number of consecutive I/O ports the UART decodes.
	PortCount = 8
)

// IER bits.
const (
	ierRxData     = 0x01 // ERBFI: received data available
	ierTxEmpty    = 0x02 // ETBEI: transmitter holding register empty
	ierLineStatus = 0x04 // ELSI: receiver line status
	ierModem      = 0x08 // EDSSI: modem status
	// ierMask keeps the bits a 16550A implements; Linux's autoconfig
	// expects the upper nibble to read back as zero (and its XScale
	// probe expects bit 6 not to stick).
	ierMask = 0x0f
)

// IIR values. Bit 0 set means no interrupt is pending; bits 7:6 read 11
// while the FIFOs are enabled, which is how Linux tells a 16550A apart
// from a 16450 or a 16550 with a broken FIFO.
const (
	iirNone        = 0x01
	iirModem       = 0x00
	iirTxEmpty     = 0x02
	iirRxData      = 0x04
	iirLineStatus  = 0x06
	iirFIFOEnabled = 0xc0
)

// FCR bits.
const (
	fcrEnable  = 0x01
	fcrClearRx = 0x02
	fcrClearTx = 0x04
	// fcrKept are the bits that stay set after a write: the clear bits
	// are self-clearing.
	fcrKept = 0xff &^ (fcrClearRx | fcrClearTx)
)

// LCR bits.
const lcrDLAB = 0x80

// MCR bits.
const (
	mcrDTR      = 0x01
	mcrRTS      = 0x02
	mcrOut1     = 0x04
	mcrOut2     = 0x08
	mcrLoopback = 0x10
	mcrMask     = 0x1f
)

// LSR bits.
const (
	lsrDataReady  = 0x01
	lsrOverrun    = 0x02
	lsrTxEmpty    = 0x20 // THRE
	lsrTxIdle     = 0x40 // TEMT
	lsrErrorsMask = 0x1e // OE, PE, FE, BI: cleared by reading LSR
)

// MSR bits: the upper nibble is the state of the modem inputs, the lower
// nibble records changes since MSR was last read.
const (
	msrDeltaCTS   = 0x01
	msrDeltaDSR   = 0x02
	msrTrailingRI = 0x04
	msrDeltaDCD   = 0x08
	msrCTS        = 0x10
	msrDSR        = 0x20
	msrRI         = 0x40
	msrDCD        = 0x80
	msrDeltaMask  = 0x0f
	// msrConnected is what the host side reports outside loopback: a
	// modem that is present and ready, so a guest tty without CLOCAL
	// does not wait for carrier forever.
	msrConnected = msrDCD | msrDSR | msrCTS
)

const (
	// fifoSize is the 16550A's FIFO depth. It bounds what loopback mode
	// can hold, as Linux's size_fifo() probe expects.
	fifoSize = 16
	// RxBufferSize bounds host input waiting for the guest to read it;
	// Receive drops what does not fit.
	RxBufferSize = 4096
	// defaultDivisor is 9600 baud from the 1.8432 MHz reference clock.
	defaultDivisor = 12
	// unclaimedRead is what a read of a port the UART does not decode
	// returns, like an undriven ISA bus.
	unclaimedRead = 0xff
)
