package boot

import (
	"fmt"
	"sort"

	"github.com/vmm-dev/vmm/memory"
)

// E820Type is an address range type (ACPI 6.5 §15.1, Table 15.1). The PVH
// memory map uses the same values (XEN_HVM_MEMMAP_TYPE_*).
type E820Type uint32

const (
	E820RAM      E820Type = 1
	E820Reserved E820Type = 2
	E820ACPI     E820Type = 3
	E820NVS      E820Type = 4
	E820Unusable E820Type = 5
)

func (t E820Type) String() string {
	switch t {
	case E820RAM:
		return "RAM"
	case E820Reserved:
		return "reserved"
	case E820ACPI:
		return "ACPI"
	case E820NVS:
		return "NVS"
	case E820Unusable:
		return "unusable"
	}
	return fmt.Sprintf("E820Type(%d)", uint32(t))
}

// E820Entry is one range of the memory map given to the guest.
type E820Entry struct {
	Addr memory.GuestAddr
	Size uint64
	Type E820Type
}

// End returns the first address past the entry.
func (e E820Entry) End() memory.GuestAddr { return e.Addr + memory.GuestAddr(e.Size) }

// e820MaxZeroPage is E820_MAX_ENTRIES_ZEROPAGE in bootparam.h.
const e820MaxZeroPage = 128

// E820Map returns the memory map the guest sees, in address order: RAM
// below the EBDA, the EBDA and the BIOS area (ACPI tables) reserved, RAM
// from 1 MiB to the MMIO hole and RAM above 4 GiB (docs/ARCHITECTURE.md).
// The VGA hole 0xa0000..0xe0000 is left out: nothing lives there.
func E820Map(mem *memory.Memory) []E820Entry {
	entries := []E820Entry{
		{Addr: EBDAAddr, Size: uint64(VGAHoleAddr - EBDAAddr), Type: E820Reserved},
		{Addr: BIOSAreaAddr, Size: uint64(HighMemAddr - BIOSAreaAddr), Type: E820Reserved},
	}
	// RAM is what the regions hold outside [EBDAAddr, HighMemAddr).
	for _, r := range mem.Regions() {
		for _, span := range [][2]memory.GuestAddr{{0, EBDAAddr}, {HighMemAddr, ^memory.GuestAddr(0)}} {
			start, end := max(r.Base, span[0]), min(r.End(), span[1])
			if start < end {
				entries = append(entries, E820Entry{Addr: start, Size: uint64(end - start), Type: E820RAM})
			}
		}
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].Addr < entries[j].Addr })
	return entries
}
