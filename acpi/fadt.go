package acpi

import "encoding/binary"

// FADT revision 6.4: major revision 6 in the header, minor version 4
// (ACPI 6.4 §5.2.9, Table 5.9), 276 bytes.
const (
	fadtRevision     = 6
	fadtMinorVersion = 4
	fadtLen          = 276
)

// Offsets of the FADT fields we set, ACPI 6.4 Table 5.9.
const (
	fadtIAPCBootArch      = 109
	fadtFlagsOff          = 112
	fadtResetReg          = 116
	fadtResetValue        = 128
	fadtMinorVersionOff   = 131
	fadtXDSDT             = 140
	fadtSleepControlReg   = 244
	fadtSleepStatusReg    = 256
	fadtHypervisorVendor  = 268
	fadtHypervisorVendLen = 8
)

// IA-PC boot architecture flags, ACPI 6.4 Table 5.10.
const (
	bootArchLegacyDevices = 1 << 0 // ISA-style devices the OS must drive: COM1
	bootArchVGANotPresent = 1 << 2
	bootArchNoCMOSRTC     = 1 << 5
)

// Fixed feature flags, ACPI 6.4 Table 5.11.
const (
	fadtFlagWBINVD        = 1 << 0
	fadtFlagPowerButton   = 1 << 4 // set: no fixed-feature power button
	fadtFlagSleepButton   = 1 << 5 // set: no fixed-feature sleep button
	fadtFlagResetRegSup   = 1 << 10
	fadtFlagHWReducedACPI = 1 << 20
)

// hypervisorVendor is the FADT's Hypervisor Vendor Identity (ACPI 6.0+).
const hypervisorVendor = "VMMDEV"

// The boot architecture flags we announce, and why:
//   - LEGACY_DEVICES: COM1 is an ISA-style device the OS drives.
//   - 8042 (bit 1) is clear: only the i8042's reset line is emulated.
//     With it set, Linux's i8042 driver would probe the keyboard
//     controller directly and log "Can't read CTR" errors; clear, it
//     stops after an info line. Reboot does not depend on it: Linux
//     tries the FADT reset register first and pulses port 0x64 without
//     looking at this flag.
//   - VGA_NOT_PRESENT: there is no VGA; Linux then leaves its ports and
//     memory alone.
//   - CMOS_RTC_NOT_PRESENT: ports 0x70/0x71 are not emulated; Linux then
//     does not register the rtc_cmos device (the wall clock comes from
//     kvmclock).
//   - MSI_NOT_SUPPORTED (bit 3) is clear: there is no PCI bus for it to
//     matter, and KVM's irqchip could deliver MSIs if one ever appears.
const iapcBootArch = bootArchLegacyDevices | bootArchVGANotPresent | bootArchNoCMOSRTC

// The fixed feature flags:
//   - HW_REDUCED_ACPI: no PM1/GPE blocks, no SCI, no FACS; sleep goes
//     through SLEEP_CONTROL_REG/SLEEP_STATUS_REG. Linux then also skips the
//     PIT/HPET timer setup and the legacy PIC, which a KVM guest does not
//     need (kvmclock, LAPIC timer).
//   - RESET_REG_SUP: RESET_REG is valid; Linux's first reboot method.
//   - PWR_BUTTON, SLP_BUTTON: there are no fixed-feature buttons (a
//     hardware-reduced platform has no fixed events to raise them).
//   - WBINVD: required of every ACPI 2.0+ processor; KVM executes it.
const fadtFlags = fadtFlagWBINVD | fadtFlagPowerButton | fadtFlagSleepButton |
	fadtFlagResetRegSup | fadtFlagHWReducedACPI

// buildFADT writes the Fixed ACPI Description Table. Everything a
// hardware-reduced platform has no use for stays zero: FACS pointers,
// SCI_INT, SMI_CMD, PM1/PM2/PM timer/GPE blocks.
func buildFADT(cfg Config, dsdt uint64) []byte {
	t := newTable("FACP", fadtRevision, fadtLen)
	// Only X_DSDT: ACPI 6.4 Table 5.9 says X_DSDT must be zero when DSDT
	// holds a usable address, so DSDT stays zero, and Linux has no 32/64
	// mismatch to warn about.
	binary.LittleEndian.PutUint64(t[fadtXDSDT:], dsdt)
	binary.LittleEndian.PutUint16(t[fadtIAPCBootArch:], iapcBootArch)
	binary.LittleEndian.PutUint32(t[fadtFlagsOff:], fadtFlags)
	putIOByteRegister(t[fadtResetReg:], cfg.Power.Reset)
	t[fadtResetValue] = cfg.Power.ResetValue
	t[fadtMinorVersionOff] = fadtMinorVersion
	putIOByteRegister(t[fadtSleepControlReg:], cfg.Power.SleepControl)
	putIOByteRegister(t[fadtSleepStatusReg:], cfg.Power.SleepStatus)
	copy(t[fadtHypervisorVendor:fadtHypervisorVendor+fadtHypervisorVendLen], hypervisorVendor)
	return sealTable(t)
}
