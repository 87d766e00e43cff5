// Package acpi writes the ACPI tables a micro-VM guest boots with: an
// RSDP (revision 2) pointing at an XSDT, which lists a hardware-reduced
// FADT and a MADT; the FADT points at a DSDT written with package aml.
//
// These tables are how a modern x86 Linux finds everything we do not
// probe for: its CPUs (MADT, with CONFIG_X86_MPPARSE off), the serial
// port's and the virtio-mmio devices' resources (DSDT), and how to power
// off and reset (FADT registers served by devices/power, DSDT \_S5_).
package acpi

import (
	"errors"
	"fmt"

	"github.com/vmm-dev/vmm/devices/power"
	"github.com/vmm-dev/vmm/memory"
)

// VirtioMMIO is one virtio-mmio device: its register window and the GSI
// its interrupt is wired to.
type VirtioMMIO struct {
	Base uint64
	Size uint32
	GSI  uint32
}

// Config describes the platform the tables announce.
type Config struct {
	// CPUs is the number of vCPUs; their local APIC IDs are 0..CPUs-1.
	CPUs int
	// IOAPICAddr is the IOAPIC's MMIO base (0xfec00000).
	IOAPICAddr uint32
	// IOAPICID must not be a local APIC ID (CPUs is a good choice) while
	// there are fewer than 255 vCPUs; beyond that no 8-bit ID is free,
	// and Linux on x86-64 checks IOAPIC IDs only against each other.
	IOAPICID uint8
	// SerialPort and SerialIRQ describe COM1 (0x3f8, 4) as a PNP0501
	// device. A zero SerialPort leaves it out.
	SerialPort uint16
	SerialIRQ  uint32
	// VirtioMMIO become LNRO0005 devices \_SB_.VR00, VR01, ...
	VirtioMMIO []VirtioMMIO
	// Power holds the ports of the power device (devices/power).
	Power power.Registers
	// PVPanicPort is the I/O port of the pvpanic device (devices/pvpanic),
	// announced as \_SB_.PVPN, _HID "QEMU0001"; 0 leaves it out.
	PVPanicPort uint16
	// PCI, when set, adds an MCFG table and the root bridge \_SB_.PCI0.
	PCI *PCIHost
	// KeyboardIRQ, when KeyboardPorts is set, announces an i8042 keyboard
	// controller (\_SB_.PS2K, PNP0303) with its data and command ports
	// (0x60, 0x64) and its interrupt: on a hardware-reduced platform Linux
	// maps no ISA IRQ by itself, so only this _CRS gives the keyboard its
	// line (Linux's i8042 driver finds it through PNP; i8042.nopnp skips
	// that and leaves the controller without an interrupt).
	KeyboardPorts [2]uint16
	KeyboardIRQ   uint32
	// VMGenID, when set, announces a VM generation ID (\_SB_.VGEN,
	// _HID "VMGENCTR", _CID "VM_Gen_Counter") and the Generic Event
	// Device that tells the guest it changed (\_SB_.GED0, ACPI0013).
	VMGenID *VMGenID
}

// VMGenID places the 16-byte VM generation ID (Microsoft's "Virtual
// Machine Generation ID" specification): at Addr in guest memory that
// e820 does not give the guest as RAM, 8-byte aligned. When the VMM
// changes it (on a restore from a snapshot), it raises GSI, an
// edge-triggered IOAPIC pin: the GED's _EVT then notifies \_SB_.VGEN
// (0x80), and Linux's vmgenid driver reads the new ID and reseeds its
// random number generator.
type VMGenID struct {
	Addr uint64
	GSI  uint32
}

// Limits of what the tables describe.
const (
	// IOAPICPins is the number of pins of KVM's in-kernel IOAPIC
	// (KVM_IOAPIC_NUM_PINS); with GSI base 0, GSIs 0-23 are valid.
	IOAPICPins = 24
	// MaxCPUs is Linux's largest NR_CPUS (CONFIG_MAXSMP).
	MaxCPUs = 8192
	// MaxVirtioMMIO is how many devices the names VR00-VR99 can tell apart.
	MaxVirtioMMIO = 100

	// BIOSAreaStart and BIOSAreaEnd bound the read-only BIOS area that
	// an OS without a firmware-provided pointer scans for the RSDP, on
	// 16-byte boundaries (ACPI 6.4 §5.2.5.1).
	BIOSAreaStart memory.GuestAddr = 0xe_0000
	BIOSAreaEnd   memory.GuestAddr = 0x10_0000
)

// Sentinel errors; callers branch on them with errors.Is.
var (
	// ErrConfig reports a Config the tables cannot describe.
	ErrConfig = errors.New("invalid ACPI configuration")
	// ErrPlacement reports an RSDP address the guest would not find.
	ErrPlacement = errors.New("invalid ACPI RSDP placement")
	// ErrNoSpace reports tables that do not fit below the limit.
	ErrNoSpace = errors.New("ACPI tables do not fit")
)

// Write lays out the RSDP at base, which must be 16-byte aligned inside
// the BIOS area 0xe0000-0xfffff so that Linux finds it by scanning even
// without the zero page's acpi_rsdp_addr, and the other tables after it,
// all below limit. It returns the RSDP address. Nothing is written unless
// every table fits.
func Write(mem *memory.Memory, base, limit memory.GuestAddr, cfg Config) (memory.GuestAddr, error) {
	if err := cfg.validate(); err != nil {
		return 0, err
	}
	if base%16 != 0 || base < BIOSAreaStart || base+rsdpLen > BIOSAreaEnd {
		return 0, fmt.Errorf("%w: %v must be 16-byte aligned in [%v, %v)", ErrPlacement, base, BIOSAreaStart, BIOSAreaEnd)
	}
	image, err := build(base, cfg)
	if err != nil {
		return 0, err
	}
	if limit < base || uint64(len(image)) > uint64(limit-base) {
		return 0, fmt.Errorf("%w: %d bytes at %v, limit %v", ErrNoSpace, len(image), base, limit)
	}
	if err := mem.WriteAt(image, base); err != nil {
		return 0, fmt.Errorf("write ACPI tables at %v: %w", base, err)
	}
	return base, nil
}

// tableAlign keeps every table on a 16-byte boundary, like the RSDP.
const tableAlign = 16

// build returns the image of all tables as they lie from base on.
func build(base memory.GuestAddr, cfg Config) ([]byte, error) {
	dsdt, err := buildDSDT(cfg)
	if err != nil {
		return nil, err
	}
	madt := buildMADT(cfg)
	var mcfg []byte
	if cfg.PCI != nil {
		mcfg = buildMCFG(cfg.PCI)
	}

	// Order in memory: RSDP, XSDT, FADT, MADT, DSDT, MCFG.
	xsdtEntries := 2
	if mcfg != nil {
		xsdtEntries++
	}
	xsdtOff := alignUp(rsdpLen)
	fadtOff := alignUp(xsdtOff + headerLen + 8*xsdtEntries)
	madtOff := alignUp(fadtOff + fadtLen)
	dsdtOff := alignUp(madtOff + len(madt))
	mcfgOff := alignUp(dsdtOff + len(dsdt))
	at := func(off int) uint64 { return uint64(base) + uint64(off) }

	fadt := buildFADT(cfg, at(dsdtOff))
	entries := []uint64{at(fadtOff), at(madtOff)}
	if mcfg != nil {
		entries = append(entries, at(mcfgOff))
	}
	xsdt := buildXSDT(entries...)
	rsdp := buildRSDP(at(xsdtOff))

	size := dsdtOff + len(dsdt)
	if mcfg != nil {
		size = mcfgOff + len(mcfg)
	}
	image := make([]byte, size)
	if mcfg != nil {
		copy(image[mcfgOff:], mcfg)
	}
	copy(image, rsdp)
	copy(image[xsdtOff:], xsdt)
	copy(image[fadtOff:], fadt)
	copy(image[madtOff:], madt)
	copy(image[dsdtOff:], dsdt)
	return image, nil
}

func alignUp(n int) int { return (n + tableAlign - 1) &^ (tableAlign - 1) }
