// Package i8042 emulates the two legacy PC ports a micro-VM keeps: the
// i8042 keyboard controller, reduced to its CPU reset line, and the POST
// code port 0x80, used to timestamp boot progress.
package i8042

import (
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

// Controller commands (8042 command set, written to port 0x64).
const (
	cmdWriteOutputPort = 0xd1 // next byte on 0x60 goes to the output port
	// cmdPulseBase..0xff pulse output-port lines 3:0 low for ~6 µs; a
	// zero in bit i of the command pulses line i. Line 0 is the CPU
	// reset, so 0xfe (the usual reboot command) resets.
	cmdPulseBase = 0xf0

	outputPortReset = 0x01 // output port bit 0: CPU reset, active low
)

// status is what reading port 0x64 returns: output buffer empty (bit 0
// clear: nothing for the guest to read) and input buffer empty (bit 1
// clear: the guest may write a command). Linux's i8042_flush() stops at
// once, its reboot path's kb_wait() returns at once, and its command
// helpers give up after their timeout (I8042_CTL_TIMEOUT) instead of
// spinning: no loop depends on a byte this controller never produces.
const status = 0x00

// Controller is the i8042 keyboard controller with nothing attached: it
// answers the status register and turns a reset pulse into a
// devices.Reset request. It implements bus.Device and is safe for
// concurrent use.
type Controller struct {
	power devices.PowerHandler

	mu               sync.Mutex
	awaitOutputPort  bool // last command was 0xd1
	portBRefreshBit  byte
	portBControlBits byte
}

// New returns a controller that reports reset requests to power. A nil
// power ignores them.
func New(power devices.PowerHandler) *Controller {
	return &Controller{power: power}
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
		return 0
	case offsetCommand:
		return status
	case offsetPortB:
		return c.readPortB()
	}
	return unclaimedRead
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
	reset := false
	c.mu.Lock()
	switch offset {
	case offsetCommand:
		c.awaitOutputPort = v == cmdWriteOutputPort
		reset = v >= cmdPulseBase && v&outputPortReset == 0
	case offsetData:
		reset = c.awaitOutputPort && v&outputPortReset == 0
		c.awaitOutputPort = false
	case offsetPortB:
		// Bits 1:0 (speaker data, timer 2 gate) read back as written.
		c.portBControlBits = v & 0x03
	}
	c.mu.Unlock()
	if reset && c.power != nil {
		c.power(devices.Reset)
	}
}
