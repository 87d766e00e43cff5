// Package boot loads a Linux kernel into guest memory and prepares what the
// x86-64 boot protocols expect to find there: the zero page (struct
// boot_params) or the PVH start info, the e820 map, the command line, the
// initrd, a boot GDT, identity page tables and, for kernels without ACPI, an
// Intel MP table. It writes only through package memory and returns the
// initial CPU state as plain values, so it knows nothing about KVM.
package boot

import "github.com/vmm-dev/vmm/memory"

// Guest physical layout of the boot structures (docs/ARCHITECTURE.md).
// Everything here lies below 1 MiB, where neither the kernel nor the initrd
// is ever placed.
const (
	// GDTAddr holds the boot GDT (see gdt.go for its entries).
	GDTAddr memory.GuestAddr = 0x500
	// PVHStartInfoAddr holds struct hvm_start_info for the PVH entry.
	PVHStartInfoAddr memory.GuestAddr = 0x6000
	// PVHModlistAddr holds the PVH module list (the initrd).
	PVHModlistAddr memory.GuestAddr = 0x6040
	// PVHMemmapAddr holds the PVH memory map, up to the zero page.
	PVHMemmapAddr memory.GuestAddr = 0x6080
	// ZeroPageAddr holds struct boot_params for the 64-bit boot protocol.
	ZeroPageAddr memory.GuestAddr = 0x7000
	// BootStackPointer is the initial RSP: the top of the free page
	// between the zero page and the page tables. Linux switches to its
	// own stack at once; the value only has to point at harmless RAM.
	BootStackPointer memory.GuestAddr = 0x8ff0
	// PML4Addr, PDPTAddr and PDAddr hold the identity page tables: one
	// PML4, one PDPT and four page directories of 2 MiB pages covering
	// the first 4 GiB.
	PML4Addr memory.GuestAddr = 0x9000
	PDPTAddr memory.GuestAddr = 0xa000
	PDAddr   memory.GuestAddr = 0xb000
	// CmdlineAddr holds the NUL-terminated kernel command line.
	CmdlineAddr memory.GuestAddr = 0x20000
	// CmdlineMaxSize is the room at CmdlineAddr, terminator included.
	CmdlineMaxSize = 0x10000
	// EBDAAddr is the extended BIOS data area, the last KiB of base
	// memory, where the MP table goes. Linux scans 639 KiB..640 KiB for
	// the MP floating pointer (MP spec 1.4 §4).
	EBDAAddr memory.GuestAddr = 0x9fc00
	// EBDASize is the size of the EBDA.
	EBDASize = 0x400
	// VGAHoleAddr..HighMemAddr is the legacy VGA and BIOS hole; the part
	// from BIOSAreaAddr up holds the ACPI tables and is reserved in e820.
	VGAHoleAddr  memory.GuestAddr = 0xa0000
	BIOSAreaAddr memory.GuestAddr = 0xe0000
	// HighMemAddr (1 MiB) is the lowest address a kernel is loaded at.
	HighMemAddr memory.GuestAddr = 0x100000
)

const pageSize = 0x1000
