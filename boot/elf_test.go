package boot

import (
	"encoding/binary"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vmm-dev/vmm/memory"
)

func TestLoadELF(t *testing.T) {
	tests := []struct {
		name      string
		spec      elfSpec
		edit      func([]byte) []byte
		wantErr   error
		wantFmt   Format
		wantEntry memory.GuestAddr
	}{
		{name: "64-bit entry", spec: goodELF(), wantFmt: ELF, wantEntry: 0x1000000},
		{name: "PVH note, 8-byte descriptor", spec: goodPVHELF(), wantFmt: ELFPVH, wantEntry: 0x1000100},
		{name: "PVH note, 4-byte descriptor", spec: func() elfSpec {
			s := goodPVHELF()
			s.pvhDesc = 4
			return s
		}(), wantFmt: ELFPVH, wantEntry: 0x1000100},
		{name: "only another note", spec: func() elfSpec { s := goodELF(); s.extraNote = true; return s }(),
			wantFmt: ELF, wantEntry: 0x1000000},
		{name: "ELF32", spec: func() elfSpec { s := goodELF(); s.class = 1; return s }(), wantErr: ErrBadELF},
		{name: "not x86-64", spec: func() elfSpec { s := goodELF(); s.machine = 183; return s }(), wantErr: ErrBadELF},
		{name: "relocatable object", spec: func() elfSpec { s := goodELF(); s.typ = 1; return s }(), wantErr: ErrBadELF},
		{name: "big-endian", spec: goodELF(), edit: func(b []byte) []byte { b[5] = 2; return b }, wantErr: ErrBadELF},
		{name: "bad phentsize", spec: goodELF(), edit: func(b []byte) []byte { b[54] = 32; return b }, wantErr: ErrBadELF},
		{name: "no program headers", spec: goodELF(), edit: func(b []byte) []byte { b[56] = 0; return b }, wantErr: ErrBadELF},
		{name: "too many program headers", spec: goodELF(), edit: func(b []byte) []byte { b[56], b[57] = 0xff, 0xff; return b },
			wantErr: ErrBadELF},
		{name: "no PT_LOAD", spec: goodELF(), edit: func(b []byte) []byte { b[64] = 6; return b }, wantErr: ErrBadELF},
		{name: "segment below 1 MiB", spec: func() elfSpec { s := goodELF(); s.paddr, s.entry = 0x8000, 0x8000; return s }(),
			wantErr: ErrBadELF},
		{name: "segment beyond RAM", spec: func() elfSpec { s := goodELF(); s.paddr, s.entry = 0x4000000, 0x4000000; return s }(),
			wantErr: ErrKernelTooLarge},
		{name: "bss beyond RAM", spec: func() elfSpec { s := goodELF(); s.memSize = testRAM; return s }(),
			wantErr: ErrKernelTooLarge},
		{name: "file size > memory size", spec: func() elfSpec { s := goodELF(); s.memSize = 0x1000; return s }(),
			wantErr: ErrBadELF},
		{name: "entry outside segments", spec: func() elfSpec { s := goodELF(); s.entry = 0x2000000; return s }(),
			wantErr: ErrBadELF},
		{name: "PVH entry outside segments", spec: func() elfSpec { s := goodPVHELF(); s.pvhEntry = 0x10; return s }(),
			wantErr: ErrBadELF},
		{name: "PVH entry above 4 GiB", spec: func() elfSpec { s := goodPVHELF(); s.pvhEntry = 1 << 32; return s }(),
			wantErr: ErrBadELF},
		{name: "PVH descriptor of 2 bytes", spec: func() elfSpec { s := goodPVHELF(); s.pvhDesc = 2; return s }(),
			wantErr: ErrBadELF},
		{name: "truncated header", spec: goodELF(), edit: func(b []byte) []byte { return b[:40] }, wantErr: ErrTruncated},
		{name: "truncated program headers", spec: goodELF(), edit: func(b []byte) []byte { return b[:100] }, wantErr: ErrTruncated},
		{name: "truncated segment", spec: goodELF(), edit: func(b []byte) []byte { return b[:len(b)-1] }, wantErr: ErrTruncated},
		{name: "truncated note", spec: goodPVHELF(), edit: func(b []byte) []byte {
			binary.LittleEndian.PutUint64(b[64+56+8:], uint64(len(b))) // PT_NOTE offset past EOF
			return b
		}, wantErr: ErrTruncated},
		{name: "note overruns its segment", spec: goodPVHELF(), edit: func(b []byte) []byte {
			noteOff := binary.LittleEndian.Uint64(b[64+56+8:])
			binary.LittleEndian.PutUint32(b[noteOff+4:], 0xffffffff) // descsz of the first note
			return b
		}, wantErr: ErrBadELF},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			file := tt.spec.build()
			if tt.edit != nil {
				file = tt.edit(file)
			}
			mem := newTestMemory(t, testRAM)
			cfg := Config{KernelPath: writeTempFile(t, "vmlinux", file), Cmdline: "console=ttyS0"}
			cpu, img, err := Load(mem, cfg)
			if tt.wantErr != nil {
				require.ErrorIs(t, err, tt.wantErr)
				assert.Contains(t, err.Error(), cfg.KernelPath)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.wantFmt, img.Format)
			assert.Equal(t, tt.wantEntry, img.Entry)
			assert.Equal(t, memory.GuestAddr(tt.spec.paddr), img.LoadAddr)
			assert.Equal(t, memory.GuestAddr(tt.spec.paddr+tt.spec.memSize), img.End)
			assert.Equal(t, uint64(tt.wantEntry), cpu.RIP)

			// The segment is loaded and its bss is zero.
			dataOff := uint64(len(file)) - tt.spec.fileSize
			assert.Equal(t, file[dataOff:], readGuest(t, mem, img.LoadAddr, tt.spec.fileSize))
			bss := tt.spec.memSize - tt.spec.fileSize
			assert.Equal(t, make([]byte, bss), readGuest(t, mem, img.LoadAddr+memory.GuestAddr(tt.spec.fileSize), bss))

			if tt.wantFmt == ELFPVH {
				assert.Equal(t, ModeProtected32, cpu.Mode)
				assert.Equal(t, uint64(PVHStartInfoAddr), cpu.RBX)
				magic, err := mem.Uint32(PVHStartInfoAddr)
				require.NoError(t, err)
				assert.Equal(t, uint32(0x336ec578), magic)
				return
			}
			// Without PVH: the 64-bit protocol with a zero page from scratch.
			assert.Equal(t, ModeLong64, cpu.Mode)
			assert.Equal(t, uint64(ZeroPageAddr), cpu.RSI)
			zp := readGuest(t, mem, ZeroPageAddr, zpSize)
			le := binary.LittleEndian
			assert.Equal(t, "HdrS", string(zp[0x202:0x206]))
			assert.Equal(t, uint16(0xaa55), le.Uint16(zp[0x1fe:]))
			assert.Equal(t, uint16(0x020f), le.Uint16(zp[0x206:]))
			assert.Equal(t, byte(0xff), zp[0x210])
			assert.Equal(t, uint32(CmdlineAddr), le.Uint32(zp[0x228:]))
			assert.Equal(t, uint32(2047), le.Uint32(zp[0x238:]), "cmdline_size")
			assert.Equal(t, len(E820Map(mem)), int(zp[0x1e8]))
		})
	}
}

func TestELFCmdlineLimit(t *testing.T) {
	mem := newTestMemory(t, testRAM)
	path := writeTempFile(t, "vmlinux", goodELF().build())
	_, _, err := Load(mem, Config{KernelPath: path, Cmdline: string(make([]byte, 2048))})
	require.ErrorIs(t, err, ErrBadCmdline)
	long := make([]byte, 2048)
	for i := range long {
		long[i] = 'a'
	}
	_, _, err = Load(mem, Config{KernelPath: path, Cmdline: string(long)})
	require.ErrorIs(t, err, ErrCmdlineTooLong)
	_, _, err = Load(mem, Config{KernelPath: path, Cmdline: string(long[:2047])})
	require.NoError(t, err)
}
