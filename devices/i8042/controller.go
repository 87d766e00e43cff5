// Package i8042 emulates the two legacy PC ports a micro-VM keeps: the
// i8042 keyboard controller with a keyboard that has no keys but
// Ctrl+Alt+Del, and the POST code port 0x80, used to timestamp boot
// progress.
package i8042

import (
	"errors"
	"sync"

	"github.com/vmm-dev/vmm/devices"
)

// Controller port layout: register it at 0x60 over PortCount ports.
const (
	// Base is the controller's first port (the data port).
	Base = 0x60
	// PortCount covers 0x60..0x64; 0x61..0x63 are answered harmlessly.
	PortCount = 5

	offsetData     = 0 // 0x60
	offsetPortB    = 1 // 0x61, system control port B (not the i8042)
	offsetCommand  = 4 // 0x64: write command, read status
	unclaimedRead  = 0xff
	portBTimerHigh = 0x20 // port 0x61 bit 5: PIT channel 2 output
	portBRefresh   = 0x10 // port 0x61 bit 4: refresh toggle
)

// Controller commands (8042 command set, written to port 0x64; the names
// follow Linux's drivers/input/serio/i8042.h).
const (
	cmdReadCTR         = 0x20 // controller configuration byte to the output buffer
	cmdWriteCTR        = 0x60 // next byte on 0x60 is the configuration byte
	cmdAuxDisable      = 0xa7
	cmdAuxEnable       = 0xa8
	cmdAuxTest         = 0xa9 // aux interface test: 0 means good
	cmdSelfTest        = 0xaa // controller self-test: answers 0x55
	cmdKbdTest         = 0xab // keyboard interface test: 0 means good
	cmdKbdDisable      = 0xad
	cmdKbdEnable       = 0xae
	cmdWriteOutputPort = 0xd1 // next byte on 0x60 goes to the output port
	cmdWriteKbdOut     = 0xd2 // next byte on 0x60 comes back as keyboard data
	// cmdPulseBase..0xff pulse output-port lines 3:0 low for ~6 µs; a
	// zero in bit i of the command pulses line i. Line 0 is the CPU
	// reset, so 0xfe (the usual reboot command) resets.
	cmdPulseBase = 0xf0

	outputPortReset = 0x01 // output port bit 0: CPU reset, active low

	selfTestOK = 0x55
)

// Status register bits (port 0x64 reads).
const (
	strOBF     = 0x01 // output buffer full: a byte waits on port 0x60
	strSysFlag = 0x04 // the self-test passed at power-on
	strCmdData = 0x08 // the last write went to port 0x64
	// strKeylock set means the keyboard is not inhibited; Linux warns
	// "Keylock active" when it is clear.
	strKeylock = 0x10
)

// Controller configuration byte (CTR) bits.
const (
	ctrKbdInt = 0x01 // raise IRQ 1 when keyboard data waits
	ctrSysFlg = 0x04
	ctrKbdDis = 0x10 // keyboard clock off: its bytes wait
	ctrAuxDis = 0x20
	// ctrXlate (0x40) is left clear: the keyboard speaks scan code set 2
	// untranslated, and Linux then drives the port directly.

	// initialCTR is what the firmware leaves: keyboard interrupt on, the
	// system flag set, no aux device, no translation.
	initialCTR = ctrKbdInt | ctrSysFlg | ctrAuxDis
)

// Keyboard commands the keyboard answers (written to port 0x60 with no
// controller command pending; PS/2 keyboard command set).
const (
	kbdSetLEDs     = 0xed // one parameter byte
	kbdEcho        = 0xee // answers 0xee, no ACK
	kbdScanCodeSet = 0xf0 // one parameter; 0 asks for the current set
	kbdGetID       = 0xf2 // ACK, then 0xab 0x83 (an MF2 keyboard)
	kbdSetRate     = 0xf3 // one parameter byte
	kbdReset       = 0xff // ACK, then 0xaa (self-test passed)

	kbdAck         = 0xfa
	kbdSelfTestOK  = 0xaa
	kbdScanCodeSt2 = 0x02
)

// Scan code set 2 bytes of the keys SendCtrlAltDel presses (the tables
// in Linux's drivers/input/keyboard/atkbd.c: 0x14 left Ctrl, 0x11 left
// Alt, 0xe0 0x71 Delete; 0xf0 prefixes a release).
var ctrlAltDel = []byte{
	0x14, 0x11, 0xe0, 0x71, // press Ctrl, Alt, Delete
	0xe0, 0xf0, 0x71, 0xf0, 0x11, 0xf0, 0x14, // release them
}

// kbdQueueMax bounds the keyboard bytes waiting for the guest, as a
// keyboard's own buffer does: 16 bytes, Linux's I8042_BUFFER_SIZE.
const kbdQueueMax = 16

// ErrKeyboardBusy: the keyboard's buffer cannot take the key sequence:
// the guest has not read what was sent before (no driver, or keyboard
// interrupts off).
var ErrKeyboardBusy = errors.New("i8042 keyboard buffer full: the guest is not reading its keyboard")

// Controller is the i8042 keyboard controller with a keyboard attached:
// it answers the commands Linux's i8042 and atkbd drivers send, turns a
// reset pulse into a devices.Reset request, and types Ctrl+Alt+Del on
// request, raising IRQ 1 for each byte. It implements bus.Device and is
// safe for concurrent use.
type Controller struct {
	power devices.PowerHandler

	mu               sync.Mutex
	irq              devices.Interrupt // nil: no keyboard interrupt wired
	pendingCmd       byte              // controller command waiting for its data byte, 0 if none
	kbdParamFor      byte              // keyboard command waiting for its parameter, 0 if none
	ctr              byte
	cmdData          bool   // the last write was a command
	result           []byte // controller command results, read before keyboard data
	kbd              []byte // keyboard bytes not yet read
	portBRefreshBit  byte
	portBControlBits byte
	irqErrors        uint64
}

// New returns a controller that reports reset requests to power. A nil
// power ignores them.
func New(power devices.PowerHandler) *Controller {
	return &Controller{power: power, ctr: initialCTR}
}

// SetKeyboardInterrupt wires IRQ 1. Call it before the guest runs.
func (c *Controller) SetKeyboardInterrupt(irq devices.Interrupt) {
	c.mu.Lock()
	c.irq = irq
	c.mu.Unlock()
}

// SendCtrlAltDel types Ctrl+Alt+Del: the presses and releases in scan
// code set 2, one byte per interrupt. Linux's keyboard handler turns the
// combination into ctrl_alt_del(): a restart, or SIGINT to init when
// init asked for it (reboot(2), LINUX_REBOOT_CMD_CAD_OFF).
func (c *Controller) SendCtrlAltDel() error {
	c.mu.Lock()
	if len(c.kbd)+len(ctrlAltDel) > kbdQueueMax {
		c.mu.Unlock()
		return ErrKeyboardBusy
	}
	raise := c.pushKbdLocked(ctrlAltDel...)
	c.mu.Unlock()
	c.raise(raise)
	return nil
}

// InterruptErrors counts failed IRQ 1 triggers.
func (c *Controller) InterruptErrors() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.irqErrors
}

// Read handles a guest read; multi-byte accesses read consecutive ports.
func (c *Controller) Read(offset uint64, data []byte) {
	for i := range data {
		data[i] = c.readPort(offset + uint64(i))
	}
}

// Write handles a guest write; multi-byte accesses write consecutive ports.
func (c *Controller) Write(offset uint64, data []byte) {
	for i, b := range data {
		c.writePort(offset+uint64(i), b)
	}
}

func (c *Controller) readPort(offset uint64) byte {
	switch offset {
	case offsetData:
		return c.readData()
	case offsetCommand:
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.statusLocked()
	case offsetPortB:
		return c.readPortB()
	}
	return unclaimedRead
}

// statusLocked is the status register. The input buffer is always empty
// (bit 1 clear): every write is taken at once, so Linux's kb_wait() and
// i8042_wait_write() return at once.
func (c *Controller) statusLocked() byte {
	s := byte(strKeylock)
	if c.ctr&ctrSysFlg != 0 {
		s |= strSysFlag
	}
	if c.cmdData {
		s |= strCmdData
	}
	if c.outputFullLocked() {
		s |= strOBF
	}
	return s
}

// outputFullLocked reports whether a byte waits on port 0x60: a command
// result, or keyboard data while the keyboard is enabled.
func (c *Controller) outputFullLocked() bool {
	return len(c.result) > 0 || (len(c.kbd) > 0 && c.ctr&ctrKbdDis == 0)
}

// readData takes the byte in the output buffer (0 when empty, as the
// previous stub did) and raises the next keyboard interrupt if more
// keyboard data waits: Linux's i8042_interrupt reads one byte per
// interrupt.
func (c *Controller) readData() byte {
	c.mu.Lock()
	var b byte
	switch {
	case len(c.result) > 0:
		b, c.result = c.result[0], c.result[1:]
	case len(c.kbd) > 0 && c.ctr&ctrKbdDis == 0:
		b, c.kbd = c.kbd[0], c.kbd[1:]
	}
	raise := c.kbdIRQDueLocked()
	c.mu.Unlock()
	c.raise(raise)
	return b
}

// kbdIRQDueLocked reports whether keyboard data is the next byte out and
// its interrupt is enabled.
func (c *Controller) kbdIRQDueLocked() bool {
	return len(c.result) == 0 && len(c.kbd) > 0 && c.ctr&(ctrKbdDis|ctrKbdInt) == ctrKbdInt
}

// pushKbdLocked queues keyboard bytes (dropping what does not fit, as a
// keyboard with a full buffer does) and reports whether an interrupt is
// due: only when the output buffer was empty, since each byte's read
// raises the next.
func (c *Controller) pushKbdLocked(b ...byte) bool {
	wasFull := c.outputFullLocked()
	for _, x := range b {
		if len(c.kbd) < kbdQueueMax {
			c.kbd = append(c.kbd, x)
		}
	}
	return !wasFull && c.kbdIRQDueLocked()
}

func (c *Controller) raise(due bool) {
	if !due {
		return
	}
	c.mu.Lock()
	irq := c.irq
	c.mu.Unlock()
	if irq == nil {
		return
	}
	if err := irq.Trigger(); err != nil {
		c.mu.Lock()
		c.irqErrors++
		c.mu.Unlock()
	}
}

// readPortB answers port 0x61 when the in-kernel PIT does not claim it.
// Linux's pit_calibrate_tsc() spins, with no timeout, until bit 5 (PIT
// channel 2 output) is set, so report it set; old delay loops wait for
// bit 4 to toggle, so toggle it. Bits 7:6 (SERR, IOCHK) stay clear, or
// the NMI handler would report hardware errors.
func (c *Controller) readPortB() byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.portBRefreshBit ^= portBRefresh
	return portBTimerHigh | c.portBRefreshBit | c.portBControlBits
}

func (c *Controller) writePort(offset uint64, v byte) {
	reset, raise := false, false
	c.mu.Lock()
	switch offset {
	case offsetCommand:
		c.cmdData = true
		reset, raise = c.commandLocked(v)
	case offsetData:
		c.cmdData = false
		reset, raise = c.dataLocked(v)
	case offsetPortB:
		// Bits 1:0 (speaker data, timer 2 gate) read back as written.
		c.portBControlBits = v & 0x03
	}
	c.mu.Unlock()
	c.raise(raise)
	if reset && c.power != nil {
		c.power(devices.Reset)
	}
}

// commandLocked runs a controller command; it reports a reset pulse and
// whether a keyboard interrupt became due.
func (c *Controller) commandLocked(v byte) (reset, raise bool) {
	c.pendingCmd = 0
	switch v {
	case cmdReadCTR:
		c.result = append(c.result[:0], c.ctr)
	case cmdWriteCTR, cmdWriteOutputPort, cmdWriteKbdOut:
		c.pendingCmd = v
	case cmdSelfTest:
		// A self-test leaves the controller as at power-on.
		c.ctr = initialCTR
		c.result = append(c.result[:0], selfTestOK)
	case cmdKbdTest, cmdAuxTest:
		c.result = append(c.result[:0], 0x00)
	case cmdKbdDisable:
		c.ctr |= ctrKbdDis
	case cmdKbdEnable:
		wasFull := c.outputFullLocked()
		c.ctr &^= ctrKbdDis
		raise = !wasFull && c.kbdIRQDueLocked()
	case cmdAuxDisable:
		c.ctr |= ctrAuxDis
	case cmdAuxEnable:
		// No aux device is attached; the bit stays as the guest sets it.
		c.ctr &^= ctrAuxDis
	default:
		reset = v >= cmdPulseBase && v&outputPortReset == 0
	}
	return reset, raise
}

// dataLocked takes a byte written to port 0x60: a controller command's
// data byte, else a byte for the keyboard.
func (c *Controller) dataLocked(v byte) (reset, raise bool) {
	cmd := c.pendingCmd
	c.pendingCmd = 0
	switch cmd {
	case cmdWriteCTR:
		wasFull := c.outputFullLocked()
		c.ctr = v
		return false, !wasFull && c.kbdIRQDueLocked()
	case cmdWriteOutputPort:
		return v&outputPortReset == 0, false
	case cmdWriteKbdOut:
		return false, c.pushKbdLocked(v)
	}
	return false, c.keyboardLocked(v)
}

// keyboardLocked answers a keyboard command the way a PS/2 keyboard
// does: an ACK for every byte, a parameter byte after the commands that
// take one, and the extra bytes of reset, identify, echo and get-set.
func (c *Controller) keyboardLocked(v byte) bool {
	if p := c.kbdParamFor; p != 0 {
		c.kbdParamFor = 0
		if p == kbdScanCodeSet && v == 0 {
			return c.pushKbdLocked(kbdAck, kbdScanCodeSt2)
		}
		return c.pushKbdLocked(kbdAck)
	}
	switch v {
	case kbdSetLEDs, kbdScanCodeSet, kbdSetRate:
		c.kbdParamFor = v
		return c.pushKbdLocked(kbdAck)
	case kbdEcho:
		return c.pushKbdLocked(kbdEcho)
	case kbdGetID:
		return c.pushKbdLocked(kbdAck, 0xab, 0x83)
	case kbdReset:
		c.kbd = c.kbd[:0]
		return c.pushKbdLocked(kbdAck, kbdSelfTestOK)
	}
	return c.pushKbdLocked(kbdAck)
}
