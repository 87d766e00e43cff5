package machine

import (
	"fmt"

	"github.com/vmm-dev/vmm/acpi"
	"github.com/vmm-dev/vmm/devices/i8042"
	"github.com/vmm-dev/vmm/devices/power"
	"github.com/vmm-dev/vmm/devices/pvpanic"
	"github.com/vmm-dev/vmm/devices/rtc"
	"github.com/vmm-dev/vmm/devices/serial"
	"github.com/vmm-dev/vmm/devices/vmgenid"
	"github.com/vmm-dev/vmm/firmware"
)

// addPlatformDevices attaches what every VM has: COM1, the i8042 reset
// line, the boot-progress port, the CMOS clock, the ACPI power registers,
// the reset control register at 0xcf9 and the pvpanic device; with ACPI,
// also the VM generation ID (its ID written by writeFirmwareTables, or
// replaced by Restore).
func (m *Machine) addPlatformDevices() error {
	if !m.cfg.NoACPI {
		var err error
		if m.genID, err = vmgenid.New(m.mem, vmgenIDAddr, m.newIRQLine(vmgenIDGSI)); err != nil {
			return err
		}
	}
	irq := m.newIRQLine(com1GSI)
	m.panics = newPanicWatch(m.cfg.Console)
	m.panics.onBanner = m.onConsolePanic
	m.panics.onOutput = m.onConsoleAfterPanic
	m.onClose(m.stopPanicTimer)
	m.uart = serial.New(m.panics, irq)
	m.progress = i8042.NewProgressPort(m.cfg.Progress)
	kbdIRQ := m.newIRQLine(i8042KbdGSI)
	m.kbd = i8042.New(m.power)
	m.kbd.SetKeyboardInterrupt(kbdIRQ)
	m.pm = power.New(power.DefaultRegisters, m.power)
	m.rtc = rtc.New()
	m.resetCtl = power.NewResetControl(m.power)
	for _, d := range []struct {
		name       string
		base, size uint64
		dev        interface {
			Read(uint64, []byte)
			Write(uint64, []byte)
		}
	}{
		{"COM1", com1Port, 8, m.uart},
		{"i8042", i8042Port, i8042Len, m.kbd},
		{"boot-progress port", progressPort, 1, m.progress},
		{"CMOS RTC", rtc.Base, rtc.Ports, m.rtc},
		{"ACPI power registers", m.pm.Base(), m.pm.Len(), m.pm},
		{"reset control register", power.ResetControlPort, 1, m.resetCtl},
		{"pvpanic", pvpanic.Port, 1, pvpanic.New(m.onPVPanic)},
	} {
		if err := m.pio.Register(d.name, d.base, d.size, d.dev); err != nil {
			return err
		}
	}
	return nil
}

// writeFirmwareTables writes the reset vector and the ACPI tables, with
// the RSDP at acpiTableBase, where the boot protocol was told it is (with
// NoACPI, no tables: boot writes the MP table).
func (m *Machine) writeFirmwareTables(virtio []virtioSlot) error {
	if err := firmware.Write(m.mem); err != nil {
		return err
	}
	if m.cfg.NoACPI {
		return nil
	}
	cfg := acpi.Config{
		CPUs:       m.cfg.CPUs,
		IOAPICAddr: ioapicAddr,
		IOAPICID:   uint8(m.cfg.CPUs),
		SerialPort: com1Port,
		SerialIRQ:  com1GSI,
		Power:      power.DefaultRegisters,
	}
	cfg.PVPanicPort = pvpanic.Port
	cfg.KeyboardPorts = [2]uint16{i8042Port, i8042Port + i8042CommandOffset}
	cfg.KeyboardIRQ = i8042KbdGSI
	for _, s := range virtio {
		cfg.VirtioMMIO = append(cfg.VirtioMMIO, acpi.VirtioMMIO{Base: s.Base, Size: s.Size, GSI: s.GSI})
	}
	if m.pci != nil {
		cfg.PCI = m.pci.acpi
	}
	cfg.VMGenID = &acpi.VMGenID{Addr: uint64(vmgenIDAddr), GSI: vmgenIDGSI}
	if err := m.genID.Init(); err != nil {
		return err
	}
	rsdp, err := acpi.Write(m.mem, acpiTableBase, acpiTableEnd, cfg)
	if err != nil {
		return fmt.Errorf("ACPI tables: %w", err)
	}
	if rsdp != acpiTableBase {
		return fmt.Errorf("ACPI tables: RSDP written at %v, not at %#x", rsdp, acpiTableBase)
	}
	return nil
}

// ProgressRecords returns the guest's writes to the boot-progress port,
// with their times since the VM was built.
func (m *Machine) ProgressRecords() []i8042.ProgressRecord { return m.progress.Records() }

// SendCtrlAltDel types Ctrl+Alt+Del on the i8042 keyboard, as
// Firecracker's SendCtrlAltDel action does. Linux's i8042 driver finds
// the controller through the DSDT's PNP0303 device, which also gives it
// IRQ 1 (a hardware-reduced platform maps no ISA IRQ otherwise, so
// i8042.nopnp leaves the driver without one), and then restarts on the
// key combination, or signals init if init took Ctrl+Alt+Del for itself.
func (m *Machine) SendCtrlAltDel() error {
	if err := m.kbd.SendCtrlAltDel(); err != nil {
		return fmt.Errorf("send Ctrl+Alt+Del: %w", err)
	}
	return nil
}
