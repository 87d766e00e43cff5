package boot

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vmm-dev/vmm/memory"
)

const testRAM = 64 << 20

func newTestMemory(t testing.TB, size uint64) *memory.Memory {
	t.Helper()
	mem, err := memory.New(size)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, mem.Close()) })
	return mem
}

func writeTempFile(t testing.TB, name string, data []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	require.NoError(t, os.WriteFile(path, data, 0o600))
	return path
}

// bzImageSpec describes a synthesized bzImage: a real-mode part of
// (setupSects+1) sectors with a setup header, then codeSize bytes of
// "protected-mode code".
type bzImageSpec struct {
	setupSects    uint8
	version       uint16
	xloadflags    uint16
	relocatable   bool
	prefAddress   uint64
	alignment     uint32
	initSize      uint32
	initrdAddrMax uint32
	cmdlineSize   uint32
	codeSize      int
}

func goodBzImage() bzImageSpec {
	return bzImageSpec{
		setupSects:    4,
		version:       0x020f,
		xloadflags:    xlfKernel64 | 1<<1,
		relocatable:   true,
		prefAddress:   0x1000000,
		alignment:     0x200000,
		initSize:      0x800000,
		initrdAddrMax: 0x7fffffff,
		cmdlineSize:   0x7ff,
		codeSize:      0x3000,
	}
}

func (s bzImageSpec) build() []byte {
	sects := int(s.setupSects)
	if sects == 0 {
		sects = defaultSetupSects
	}
	setup := (sects + 1) * sectorSize
	b := make([]byte, setup+s.codeSize)
	le := binary.LittleEndian
	b[hdrSetupSects] = s.setupSects
	le.PutUint16(b[hdrBootFlag:], bootFlagMagic)
	b[hdrJump], b[hdrJump+1] = 0xeb, 0x6a // jmp to 0x26c, the end of a 2.15 header
	copy(b[hdrMagic:], headerMagic)
	le.PutUint16(b[hdrVersion:], s.version)
	b[hdrLoadflags] = loadflagLoadedHigh
	le.PutUint32(b[hdrCode32Start:], 0x100000)
	le.PutUint32(b[hdrInitrdAddrMax:], s.initrdAddrMax)
	le.PutUint32(b[hdrKernelAlignment:], s.alignment)
	if s.relocatable {
		b[hdrRelocatable] = 1
	}
	le.PutUint16(b[hdrXloadflags:], s.xloadflags)
	le.PutUint32(b[hdrCmdlineSize:], s.cmdlineSize)
	le.PutUint64(b[hdrPrefAddress:], s.prefAddress)
	le.PutUint32(b[hdrInitSize:], s.initSize)
	b[zpSentinel] = 0xff // as in real images: must not reach the zero page
	for i := setup; i < len(b); i++ {
		b[i] = byte(i * 7)
	}
	return b
}

// elfSpec describes a synthesized x86-64 ELF kernel with one PT_LOAD and,
// optionally, a PT_NOTE carrying XEN_ELFNOTE_PHYS32_ENTRY.
type elfSpec struct {
	class     byte
	machine   uint16
	typ       uint16
	entry     uint64
	paddr     uint64
	fileSize  uint64
	memSize   uint64
	pvhEntry  uint64
	pvhDesc   int // 0: no PVH note; 4 or 8: descriptor size
	extraNote bool
}

func goodELF() elfSpec {
	return elfSpec{class: 2, machine: 62, typ: 2, entry: 0x1000000, paddr: 0x1000000,
		fileSize: 0x2000, memSize: 0x5000}
}

func goodPVHELF() elfSpec {
	s := goodELF()
	s.pvhEntry, s.pvhDesc, s.extraNote = 0x1000100, 8, true
	return s
}

func (s elfSpec) build() []byte {
	le := binary.LittleEndian
	var notes []byte
	note := func(name string, typ uint32, desc []byte) {
		n := make([]byte, 12+int(alignUp(uint64(len(name)+1), 4))+int(alignUp(uint64(len(desc)), 4)))
		le.PutUint32(n, uint32(len(name)+1))
		le.PutUint32(n[4:], uint32(len(desc)))
		le.PutUint32(n[8:], typ)
		copy(n[12:], name)
		copy(n[12+alignUp(uint64(len(name)+1), 4):], desc)
		notes = append(notes, n...)
	}
	if s.extraNote {
		note("GNU", 3, []byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20})
	}
	if s.pvhDesc != 0 {
		desc := make([]byte, s.pvhDesc)
		if s.pvhDesc >= 8 {
			le.PutUint64(desc, s.pvhEntry)
		} else if s.pvhDesc >= 4 {
			le.PutUint32(desc, uint32(s.pvhEntry))
		}
		note("Xen", xenElfnotePhys32Entry, desc)
	}
	phnum := 1
	if notes != nil {
		phnum = 2
	}
	phoff := uint64(elfHeaderSize)
	noteOff := phoff + uint64(phnum*elfPhdrSize)
	dataOff := alignUp(noteOff+uint64(len(notes)), 0x1000)
	b := make([]byte, dataOff+s.fileSize)
	copy(b, elfMagic)
	b[4], b[5], b[6] = s.class, 1, 1
	le.PutUint16(b[16:], s.typ)
	le.PutUint16(b[18:], s.machine)
	le.PutUint32(b[20:], 1)
	le.PutUint64(b[24:], s.entry)
	le.PutUint64(b[32:], phoff)
	le.PutUint16(b[52:], elfHeaderSize)
	le.PutUint16(b[54:], elfPhdrSize)
	le.PutUint16(b[56:], uint16(phnum))

	ph := b[phoff:]
	le.PutUint32(ph, 1) // PT_LOAD
	le.PutUint32(ph[4:], 7)
	le.PutUint64(ph[8:], dataOff)
	le.PutUint64(ph[16:], 0xffffffff80000000+s.paddr)
	le.PutUint64(ph[24:], s.paddr)
	le.PutUint64(ph[32:], s.fileSize)
	le.PutUint64(ph[40:], s.memSize)
	le.PutUint64(ph[48:], 0x200000)
	if notes != nil {
		ph = b[phoff+elfPhdrSize:]
		le.PutUint32(ph, 4) // PT_NOTE
		le.PutUint64(ph[8:], noteOff)
		le.PutUint64(ph[32:], uint64(len(notes)))
		le.PutUint64(ph[40:], uint64(len(notes)))
		copy(b[noteOff:], notes)
	}
	for i := dataOff; i < uint64(len(b)); i++ {
		b[i] = byte(i * 13)
	}
	return b
}

func readGuest(t testing.TB, mem *memory.Memory, addr memory.GuestAddr, n uint64) []byte {
	t.Helper()
	b := make([]byte, n)
	require.NoError(t, mem.ReadAt(b, addr))
	return b
}
