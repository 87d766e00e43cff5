package boot

import (
	"encoding/binary"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vmm-dev/vmm/memory"
)

// decodeDescriptor is an independent decoder for SDM Vol. 3 §3.4.5
// segment descriptors, to check what writeGDT put in memory.
func decodeDescriptor(d uint64, selector uint16) Segment {
	limit := uint32(d&0xffff | (d>>48&0xf)<<16)
	g := d>>55&1 == 1
	if g {
		limit = limit<<12 | 0xfff
	}
	return Segment{
		Selector: selector,
		Base:     d>>16&0xffffff | (d>>56&0xff)<<24,
		Limit:    limit,
		Type:     uint8(d >> 40 & 0xf),
		S:        d>>44&1 == 1,
		DPL:      uint8(d >> 45 & 3),
		Present:  d>>47&1 == 1,
		AVL:      d>>52&1 == 1,
		L:        d>>53&1 == 1,
		DB:       d>>54&1 == 1,
		G:        g,
	}
}

func TestGDT(t *testing.T) {
	mem := newTestMemory(t, testRAM)
	require.NoError(t, writeGDT(mem))
	gdt := readGuest(t, mem, GDTAddr, gdtSize)
	le := binary.LittleEndian
	assert.Zero(t, le.Uint64(gdt[0:]), "null descriptor")
	// The well-known encodings of flat segments.
	assert.Equal(t, uint64(0x00cf9b000000ffff), le.Uint64(gdt[SelectorCode32:]), "code32")
	assert.Equal(t, uint64(0x00af9b000000ffff), le.Uint64(gdt[SelectorCode64:]), "code64 (__BOOT_CS)")
	assert.Equal(t, uint64(0x00cf93000000ffff), le.Uint64(gdt[SelectorData:]), "data (__BOOT_DS)")
	assert.Equal(t, uint64(0x00008b0000000067), le.Uint64(gdt[SelectorTSS:]), "TSS, low half")
	assert.Zero(t, le.Uint64(gdt[SelectorTSS+8:]), "TSS, high half")

	// The segments handed to vcpu match the descriptors in the GDT.
	for _, s := range []Segment{code32Segment, code64Segment, dataSegment, tssSegment} {
		assert.Equal(t, s, decodeDescriptor(le.Uint64(gdt[s.Selector:]), s.Selector))
	}
}

func TestLong64State(t *testing.T) {
	cpu := long64State(0x1000200)
	assert.Equal(t, ModeLong64, cpu.Mode)
	assert.Equal(t, uint64(0x1000200), cpu.RIP)
	assert.Equal(t, uint64(ZeroPageAddr), cpu.RSI)
	assert.Equal(t, uint64(2), cpu.RFLAGS)
	assert.NotZero(t, cpu.CR0&cr0PE)
	assert.NotZero(t, cpu.CR0&cr0PG)
	assert.Equal(t, uint64(cr4PAE), cpu.CR4)
	assert.Equal(t, uint64(eferLME|eferLMA), cpu.EFER)
	assert.Equal(t, uint64(PML4Addr), cpu.CR3)
	assert.Equal(t, uint64(GDTAddr), cpu.GDTBase)
	assert.Equal(t, uint16(gdtSize-1), cpu.GDTLimit)
	// boot.rst: CS = __BOOT_CS (0x10), DS/ES/SS = __BOOT_DS (0x18),
	// both flat 4 GiB, CS execute/read, DS read/write.
	assert.Equal(t, uint16(0x10), cpu.CodeSelector)
	assert.Equal(t, uint16(0x18), cpu.DataSelector)
	assert.Equal(t, cpu.CodeSelector, cpu.Code.Selector)
	assert.Equal(t, cpu.DataSelector, cpu.Data.Selector)
	assert.True(t, cpu.Code.L)
	assert.False(t, cpu.Code.DB, "L and D must not both be set")
	assert.Equal(t, uint8(0xb), cpu.Code.Type)
	assert.Equal(t, uint8(0x3), cpu.Data.Type)
	for _, s := range []Segment{cpu.Code, cpu.Data} {
		assert.Zero(t, s.Base)
		assert.Equal(t, uint32(0xffffffff), s.Limit)
		assert.True(t, s.Present && s.S && s.G)
	}
	assert.Equal(t, uint16(0x20), cpu.TSS.Selector)
	assert.Equal(t, uint8(0xb), cpu.TSS.Type, "busy TSS, as VM entry requires in TR")
	assert.Less(t, cpu.RSP, uint64(PML4Addr))
	assert.Greater(t, cpu.RSP, uint64(ZeroPageAddr+zpSize))
}

// translate walks the 4-level page tables in guest memory (SDM Vol. 3
// §4.5) and returns the physical address va maps to.
func translate(t *testing.T, mem *memory.Memory, cr3, va uint64) (uint64, bool) {
	t.Helper()
	table := cr3 &^ 0xfff
	for level, shift := range []uint{39, 30, 21, 12} {
		e, err := mem.Uint64(memory.GuestAddr(table + (va>>shift&0x1ff)*8))
		require.NoError(t, err)
		if e&ptePresent == 0 || e&pteWritable == 0 {
			return 0, false
		}
		addr := e & 0x000f_ffff_ffff_f000
		if level == 2 && e&ptePageSize != 0 {
			return addr&^(hugePageSize-1) | va&(hugePageSize-1), true
		}
		if level == 3 {
			return addr | va&0xfff, true
		}
		table = addr
	}
	return 0, false
}

func TestPageTablesIdentityMap4GiB(t *testing.T) {
	mem := newTestMemory(t, testRAM)
	require.NoError(t, writePageTables(mem))
	cr3 := uint64(PML4Addr)
	for va := uint64(0); va < 4<<30; va += hugePageSize {
		for _, off := range []uint64{0, 0x1234, hugePageSize - 1} {
			pa, ok := translate(t, mem, cr3, va+off)
			require.True(t, ok, "va %#x not mapped", va+off)
			require.Equal(t, va+off, pa)
		}
	}
	_, ok := translate(t, mem, cr3, 4<<30)
	assert.False(t, ok, "nothing above 4 GiB is mapped")
	// The tables stay clear of the zero page, cmdline and kernel.
	assert.GreaterOrEqual(t, PML4Addr, ZeroPageAddr+zpSize)
	assert.LessOrEqual(t, PDAddr+4*pageSize, CmdlineAddr)
}

func TestModeAndFormatStrings(t *testing.T) {
	assert.Equal(t, "long64", ModeLong64.String())
	assert.Equal(t, "protected32", ModeProtected32.String())
	assert.Equal(t, "Mode(9)", Mode(9).String())
	assert.Equal(t, "bzImage", BzImage.String())
	assert.Equal(t, "ELF (PVH)", ELFPVH.String())
	assert.Equal(t, "Format(0)", Format(0).String())
	img := &Image{Format: BzImage, LoadAddr: 0x1000000, End: 0x2000000, Entry: 0x1000200, Protocol: 0x020f,
		InitrdAddr: 0x3000000, InitrdSize: 10}
	assert.Equal(t, "bzImage at 0x1000000..0x2000000, entry 0x1000200, boot protocol 2.15, initrd 10 bytes at 0x3000000",
		img.String())
}
