package boot

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestPVHStartInfoLayout(t *testing.T) {
	mem := newTestMemory(t, testRAM)
	initrd := bytes.Repeat([]byte{7}, 5000)
	cfg := Config{
		KernelPath: writeTempFile(t, "vmlinux", goodPVHELF().build()),
		InitrdPath: writeTempFile(t, "initrd", initrd),
		Cmdline:    "console=ttyS0",
		RSDP:       0xe0000,
	}
	cpu, img, err := Load(mem, cfg)
	require.NoError(t, err)
	require.Equal(t, ELFPVH, img.Format)

	le := binary.LittleEndian
	si := readGuest(t, mem, PVHStartInfoAddr, 0x38)
	assert.Equal(t, uint32(0x336ec578), le.Uint32(si[0x00:]), "magic")
	assert.Equal(t, uint32(1), le.Uint32(si[0x04:]), "version")
	assert.Zero(t, le.Uint32(si[0x08:]), "flags")
	assert.Equal(t, uint32(1), le.Uint32(si[0x0c:]), "nr_modules")
	assert.Equal(t, uint64(PVHModlistAddr), le.Uint64(si[0x10:]), "modlist_paddr")
	assert.Equal(t, uint64(CmdlineAddr), le.Uint64(si[0x18:]), "cmdline_paddr")
	assert.Equal(t, uint64(0xe0000), le.Uint64(si[0x20:]), "rsdp_paddr")
	assert.Equal(t, uint64(PVHMemmapAddr), le.Uint64(si[0x28:]), "memmap_paddr")
	e820 := E820Map(mem)
	assert.Equal(t, uint32(len(e820)), le.Uint32(si[0x30:]), "memmap_entries")
	assert.Zero(t, le.Uint32(si[0x34:]), "reserved")

	mod := readGuest(t, mem, PVHModlistAddr, 32)
	assert.Equal(t, uint64(img.InitrdAddr), le.Uint64(mod[0:]), "module paddr")
	assert.Equal(t, uint64(len(initrd)), le.Uint64(mod[8:]), "module size")
	assert.Zero(t, le.Uint64(mod[16:]), "module cmdline_paddr")
	assert.Equal(t, initrd, readGuest(t, mem, img.InitrdAddr, img.InitrdSize))

	mm := readGuest(t, mem, PVHMemmapAddr, uint64(24*len(e820)))
	for i, e := range e820 {
		b := mm[24*i:]
		assert.Equal(t, uint64(e.Addr), le.Uint64(b), "memmap[%d].addr", i)
		assert.Equal(t, e.Size, le.Uint64(b[8:]), "memmap[%d].size", i)
		assert.Equal(t, uint32(e.Type), le.Uint32(b[16:]), "memmap[%d].type", i)
		assert.Zero(t, le.Uint32(b[20:]), "memmap[%d].reserved", i)
	}
	assert.Equal(t, "console=ttyS0\x00", string(readGuest(t, mem, CmdlineAddr, 14)))

	// Xen docs/misc/pvh.pandoc: 32-bit protected mode, paging off.
	assert.Equal(t, ModeProtected32, cpu.Mode)
	assert.Equal(t, uint64(0x1000100), cpu.RIP)
	assert.Equal(t, uint64(PVHStartInfoAddr), cpu.RBX)
	assert.Equal(t, uint64(cr0PE), cpu.CR0&^cr0ET)
	assert.Zero(t, cpu.CR4)
	assert.Zero(t, cpu.EFER)
	assert.Equal(t, SelectorCode32, cpu.CodeSelector)
	assert.Equal(t, SelectorData, cpu.DataSelector)
	assert.True(t, cpu.Code.DB)
	assert.False(t, cpu.Code.L)
	assert.Equal(t, uint32(0x67), cpu.TSS.Limit)
	assert.Zero(t, cpu.RFLAGS&(1<<9|1<<17), "IF and VM clear")
}

func TestPVHWithoutInitrd(t *testing.T) {
	mem := newTestMemory(t, testRAM)
	_, _, err := Load(mem, Config{KernelPath: writeTempFile(t, "vmlinux", goodPVHELF().build())})
	require.NoError(t, err)
	si := readGuest(t, mem, PVHStartInfoAddr, 0x38)
	assert.Zero(t, binary.LittleEndian.Uint32(si[0x0c:]), "nr_modules")
	assert.Zero(t, binary.LittleEndian.Uint64(si[0x10:]), "modlist_paddr")
	assert.Zero(t, binary.LittleEndian.Uint64(si[0x20:]), "rsdp_paddr")
}
