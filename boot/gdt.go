package boot

import (
	"encoding/binary"
	"fmt"

	"github.com/vmm-dev/vmm/memory"
)

// GDT selectors. The 64-bit boot protocol needs __BOOT_CS = 0x10 and
// __BOOT_DS = 0x18 (boot.rst); the PVH entry leaves selectors free, so it
// uses the 32-bit code segment at 0x08 with the same data segment.
const (
	SelectorCode32 uint16 = 0x08
	SelectorCode64 uint16 = 0x10 // __BOOT_CS
	SelectorData   uint16 = 0x18 // __BOOT_DS
	SelectorTSS    uint16 = 0x20 // 16-byte system descriptor in long mode
)

// gdtSize covers null, code32, code64, data and the two slots of the TSS
// descriptor (SDM Vol. 3 §7.2.3: 16 bytes in IA-32e mode).
const (
	gdtSize  = 6 * 8
	gdtLimit = gdtSize - 1
)

var (
	code32Segment = Segment{Selector: SelectorCode32, Limit: 0xffffffff, Type: segTypeCodeExecRead,
		S: true, Present: true, DB: true, G: true}
	code64Segment = Segment{Selector: SelectorCode64, Limit: 0xffffffff, Type: segTypeCodeExecRead,
		S: true, Present: true, L: true, G: true}
	dataSegment = Segment{Selector: SelectorData, Limit: 0xffffffff, Type: segTypeDataReadWrite,
		S: true, Present: true, DB: true, G: true}
	// tssSegment is the minimal 104-byte TSS that PVH asks for in TR; it
	// is never switched through, so its contents do not matter.
	tssSegment = Segment{Selector: SelectorTSS, Limit: 0x67, Type: segTypeTSSBusy, Present: true}
)

// Descriptor encodes s as an 8-byte GDT descriptor (SDM Vol. 3 §3.4.5).
// For a system segment in long mode this is the low half; the high half
// holds base bits 63:32.
func (s Segment) Descriptor() uint64 {
	limit := uint64(s.Limit)
	if s.G {
		limit >>= 12
	}
	d := limit & 0xffff
	d |= (s.Base & 0xffffff) << 16
	d |= uint64(s.Type&0xf) << 40
	d |= boolBit(s.S) << 44
	d |= uint64(s.DPL&3) << 45
	d |= boolBit(s.Present) << 47
	d |= (limit >> 16 & 0xf) << 48
	d |= boolBit(s.AVL) << 52
	d |= boolBit(s.L) << 53
	d |= boolBit(s.DB) << 54
	d |= boolBit(s.G) << 55
	d |= (s.Base >> 24 & 0xff) << 56
	return d
}

func boolBit(b bool) uint64 {
	if b {
		return 1
	}
	return 0
}

// writeGDT writes the boot GDT at GDTAddr.
func writeGDT(mem *memory.Memory) error {
	var gdt [gdtSize]byte
	for _, s := range []Segment{code32Segment, code64Segment, dataSegment, tssSegment} {
		binary.LittleEndian.PutUint64(gdt[s.Selector:], s.Descriptor())
	}
	binary.LittleEndian.PutUint64(gdt[SelectorTSS+8:], tssSegment.Base>>32)
	if err := mem.WriteAt(gdt[:], GDTAddr); err != nil {
		return fmt.Errorf("write boot GDT: %w", err)
	}
	return nil
}
