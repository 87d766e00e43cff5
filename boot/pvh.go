package boot

import (
	"encoding/binary"
	"fmt"

	"github.com/vmm-dev/vmm/memory"
)

// struct hvm_start_info version 1 (xen/include/public/arch-x86/hvm/
// start_info.h): all addresses are 64-bit, little-endian, 0 = absent.
const (
	hvmStartMagic   = 0x336ec578 // "xEn3" with the 0x80 bit of the "E" set
	hvmStartVersion = 1          // adds memmap_paddr and memmap_entries

	hvmMagic         = 0x00
	hvmVersion       = 0x04
	hvmFlags         = 0x08
	hvmNrModules     = 0x0c
	hvmModlistPaddr  = 0x10
	hvmCmdlinePaddr  = 0x18
	hvmRSDPPaddr     = 0x20
	hvmMemmapPaddr   = 0x28
	hvmMemmapEntries = 0x30
	hvmStartInfoSize = 0x38

	// struct hvm_modlist_entry: paddr, size, cmdline_paddr, reserved.
	hvmModlistEntrySize = 32
	// struct hvm_memmap_table_entry: addr, size, type, reserved.
	hvmMemmapEntrySize = 24

	pvhMemmapMaxEntries = int(ZeroPageAddr-PVHMemmapAddr) / hvmMemmapEntrySize
)

// writePVHStartInfo writes hvm_start_info, the module list (the initrd)
// and the memory map, whose XEN_HVM_MEMMAP_TYPE_* values are the e820
// types.
func writePVHStartInfo(mem *memory.Memory, info bootInfo) error {
	if len(info.e820) > pvhMemmapMaxEntries {
		return fmt.Errorf("PVH memory map has %d entries, room for %d", len(info.e820), pvhMemmapMaxEntries)
	}
	le := binary.LittleEndian

	memmap := make([]byte, len(info.e820)*hvmMemmapEntrySize)
	for i, e := range info.e820 {
		b := memmap[i*hvmMemmapEntrySize:]
		le.PutUint64(b, uint64(e.Addr))
		le.PutUint64(b[8:], e.Size)
		le.PutUint32(b[16:], uint32(e.Type))
	}
	if err := mem.WriteAt(memmap, PVHMemmapAddr); err != nil {
		return fmt.Errorf("write PVH memory map: %w", err)
	}

	var start [hvmStartInfoSize]byte
	le.PutUint32(start[hvmMagic:], hvmStartMagic)
	le.PutUint32(start[hvmVersion:], hvmStartVersion)
	le.PutUint64(start[hvmCmdlinePaddr:], uint64(info.cmdline))
	le.PutUint64(start[hvmRSDPPaddr:], uint64(info.rsdp))
	le.PutUint64(start[hvmMemmapPaddr:], uint64(PVHMemmapAddr))
	le.PutUint32(start[hvmMemmapEntries:], uint32(len(info.e820)))
	if info.initrdSize > 0 {
		var mod [hvmModlistEntrySize]byte
		le.PutUint64(mod[0:], uint64(info.initrd))
		le.PutUint64(mod[8:], info.initrdSize)
		if err := mem.WriteAt(mod[:], PVHModlistAddr); err != nil {
			return fmt.Errorf("write PVH module list: %w", err)
		}
		le.PutUint32(start[hvmNrModules:], 1)
		le.PutUint64(start[hvmModlistPaddr:], uint64(PVHModlistAddr))
	}
	if err := mem.WriteAt(start[:], PVHStartInfoAddr); err != nil {
		return fmt.Errorf("write hvm_start_info: %w", err)
	}
	return nil
}
