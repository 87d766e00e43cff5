// Package power emulates the ACPI hardware-reduced power registers: the
// sleep control and sleep status registers the guest's ACPI driver writes
// to power off (ACPI 6.4 §4.8.3.7, §4.8.3.8), and the reset register it
// writes to reboot (§4.8.3.6). The FADT built by package acpi points the
// guest at these ports.
package power

import (
	"errors"
	"fmt"
	"sync"

	"github.com/vmm-dev/vmm/devices"
)

// Registers are the I/O ports of the three byte-wide registers and the
// value that, written to the reset register, resets the machine.
type Registers struct {
	SleepControl, SleepStatus, Reset uint16
	ResetValue                       uint8
}

// DefaultRegisters is the platform's layout (docs/ARCHITECTURE.md).
var DefaultRegisters = Registers{SleepControl: 0x600, SleepStatus: 0x601, Reset: 0x604, ResetValue: 0x01}

// SleepTypeS5 is the SLP_TYP value for soft-off. The DSDT's \_S5_ package
// hands it to the guest, which writes SleepTypeS5<<2 | SLP_EN to the sleep
// control register; the value itself is ours to choose (3 bits).
const SleepTypeS5 = 5

// MaxSpan bounds how far apart the registers may lie, so that the port
// range the device claims on the bus stays small.
const MaxSpan = 16

// Register bits, ACPI 6.4 §4.8.3.7 and §4.8.3.8.
const (
	sleepTypeShift = 2
	sleepTypeMask  = 0x7 << sleepTypeShift // SLP_TYPx, bits 2-4
	sleepEnable    = 1 << 5                // SLP_EN
	wakeStatus     = 1 << 7                // WAK_STS, write 1 to clear
)

// ErrRegisters reports a register layout the device cannot serve.
var ErrRegisters = errors.New("invalid power register layout")

// Validate checks that the ports are non-zero (a zero address means "not
// present" in a FADT), distinct, and within MaxSpan ports of each other.
func (r Registers) Validate() error {
	ports := []uint16{r.SleepControl, r.SleepStatus, r.Reset}
	for i, p := range ports {
		if p == 0 {
			return fmt.Errorf("%w: %+v: port 0", ErrRegisters, r)
		}
		for _, q := range ports[:i] {
			if p == q {
				return fmt.Errorf("%w: %+v: port %#x used twice", ErrRegisters, r, p)
			}
		}
	}
	if span := r.span(); span > MaxSpan {
		return fmt.Errorf("%w: %+v: registers span %d ports (max %d)", ErrRegisters, r, span, MaxSpan)
	}
	return nil
}

// Base returns the lowest register port.
func (r Registers) Base() uint16 { return min(r.SleepControl, r.SleepStatus, r.Reset) }

func (r Registers) span() int {
	return int(max(r.SleepControl, r.SleepStatus, r.Reset)) - int(r.Base()) + 1
}

// Device serves the registers. It implements bus.Device over the port
// range [Base(), Base()+Len()); ports in that range that are not
// registers read as zero and ignore writes.
type Device struct {
	regs    Registers
	onPower devices.PowerHandler

	mu    sync.Mutex
	awake bool // WAK_STS
}

// New returns the device. regs should pass Validate; if two registers
// share a port, a write there acts on each of them. A nil onPower makes
// power requests no-ops.
func New(regs Registers, onPower devices.PowerHandler) *Device {
	return &Device{regs: regs, onPower: onPower}
}

// Base returns the first port of the device's range.
func (d *Device) Base() uint64 { return uint64(d.regs.Base()) }

// Len returns the number of ports in the device's range.
func (d *Device) Len() uint64 { return uint64(d.regs.span()) }

// Read serves a guest read; each byte of data is the register at the
// consecutive port from offset. Only the sleep status register reads
// back anything: WAK_STS. Sleep control's bits are write-only, as is
// the reset register.
func (d *Device) Read(offset uint64, data []byte) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for i := range data {
		data[i] = 0
		if port, ok := d.port(offset, i); ok && port == d.regs.SleepStatus && d.awake {
			data[i] = wakeStatus
		}
	}
}

// Write serves a guest write, byte by byte as Read does.
func (d *Device) Write(offset uint64, data []byte) {
	var actions []devices.PowerAction
	d.mu.Lock()
	for i, v := range data {
		port, ok := d.port(offset, i)
		if !ok {
			continue
		}
		if port == d.regs.SleepControl && v&sleepEnable != 0 {
			if (v&sleepTypeMask)>>sleepTypeShift == SleepTypeS5 {
				actions = append(actions, devices.PowerOff)
			} else {
				// We offer no sleep state but S5. A guest that asks for
				// another anyway polls WAK_STS until it is set: wake it
				// at once rather than leave the vCPU spinning.
				d.awake = true
			}
		}
		if port == d.regs.SleepStatus && v&wakeStatus != 0 {
			d.awake = false
		}
		if port == d.regs.Reset && v == d.regs.ResetValue {
			actions = append(actions, devices.Reset)
		}
	}
	d.mu.Unlock()
	// Outside the lock: the handler stops vCPUs, and one of them may be
	// about to access this device.
	if d.onPower != nil {
		for _, a := range actions {
			d.onPower(a)
		}
	}
}

// port returns the port of byte i of an access at offset, if it lies in
// the device's range.
func (d *Device) port(offset uint64, i int) (uint16, bool) {
	off := offset + uint64(i)
	if off < offset || off >= d.Len() {
		return 0, false
	}
	return d.regs.Base() + uint16(off), true
}
