package boot

import (
	"bytes"
	"encoding/binary"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vmm-dev/vmm/memory"
)

func TestLoadBzImage(t *testing.T) {
	tests := []struct {
		name      string
		spec      func(*bzImageSpec)
		image     func([]byte) []byte // edits the built file
		cmdline   string
		initrd    int // bytes; 0: none
		wantErr   error
		wantLoad  memory.GuestAddr
		wantEnd   memory.GuestAddr
		errSubstr string
	}{
		{name: "good", wantLoad: 0x1000000, wantEnd: 0x1800000},
		{name: "setup_sects 0 means 4", spec: func(s *bzImageSpec) { s.setupSects = 0 }, wantLoad: 0x1000000, wantEnd: 0x1800000},
		{name: "more setup sectors", spec: func(s *bzImageSpec) { s.setupSects = 30 }, wantLoad: 0x1000000, wantEnd: 0x1800000},
		{name: "unaligned pref_address is aligned up", spec: func(s *bzImageSpec) { s.prefAddress = 0x1100000 },
			wantLoad: 0x1200000, wantEnd: 0x1a00000},
		{name: "non-relocatable loads at 1 MiB", spec: func(s *bzImageSpec) { s.relocatable = false },
			wantLoad: 0x100000, wantEnd: 0x1800000},
		{name: "with initrd", initrd: 3<<20 + 5, wantLoad: 0x1000000, wantEnd: 0x1800000},
		{name: "cmdline at the limit", cmdline: strings.Repeat("x", 0x7ff), wantLoad: 0x1000000, wantEnd: 0x1800000},
		{name: "not a kernel", image: func(b []byte) []byte { return bytes.Repeat([]byte{0x90}, 4096) }, wantErr: ErrNotKernel},
		{name: "empty file", image: func([]byte) []byte { return nil }, wantErr: ErrNotKernel},
		{name: "truncated header", image: func(b []byte) []byte { return b[:0x240] }, wantErr: ErrTruncated},
		{name: "truncated setup code", image: func(b []byte) []byte { return b[:0x900] }, wantErr: ErrTruncated},
		{name: "no room for the 64-bit entry", spec: func(s *bzImageSpec) { s.codeSize = 0x100 }, wantErr: ErrTruncated},
		{name: "short header", image: func(b []byte) []byte { b[hdrJump+1] = 0x20; return b }, wantErr: ErrTruncated},
		{name: "protocol 2.10", spec: func(s *bzImageSpec) { s.version = 0x020a }, wantErr: ErrProtocolTooOld,
			errSubstr: "setup header protocol 2.10 < 2.12"},
		{name: "32-bit only", spec: func(s *bzImageSpec) { s.xloadflags = 0 }, wantErr: ErrNot64Bit},
		{name: "cmdline too long", cmdline: strings.Repeat("x", 0x800), wantErr: ErrCmdlineTooLong},
		{name: "cmdline with NUL", cmdline: "console=ttyS0\x00quiet", wantErr: ErrBadCmdline},
		{name: "init_size too large", spec: func(s *bzImageSpec) { s.initSize = 0x3378000 }, wantErr: ErrKernelTooLarge},
		{name: "pref_address beyond RAM", spec: func(s *bzImageSpec) { s.prefAddress = 0x10000000 }, wantErr: ErrKernelTooLarge},
		{name: "pref_address near 2^64", spec: func(s *bzImageSpec) { s.prefAddress = ^uint64(0) - 0xfff }, wantErr: ErrKernelTooLarge},
		{name: "non-relocatable with huge pref_address", spec: func(s *bzImageSpec) {
			s.relocatable, s.prefAddress = false, ^uint64(0)
		}, wantErr: ErrKernelTooLarge},
		{name: "initrd too large", initrd: 41 << 20, wantErr: ErrInitrdTooLarge},
		{name: "initrd above initrd_addr_max", spec: func(s *bzImageSpec) { s.initrdAddrMax = 0x1900000 }, initrd: 2 << 20,
			wantErr: ErrInitrdTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := goodBzImage()
			if tt.spec != nil {
				tt.spec(&spec)
			}
			file := spec.build()
			if tt.image != nil {
				file = tt.image(file)
			}
			cfg := Config{KernelPath: writeTempFile(t, "bzImage", file), Cmdline: tt.cmdline}
			var initrd []byte
			if tt.initrd > 0 {
				initrd = bytes.Repeat([]byte{0xa5}, tt.initrd)
				cfg.InitrdPath = writeTempFile(t, "initrd", initrd)
			}
			mem := newTestMemory(t, testRAM)
			cpu, img, err := Load(mem, cfg)
			if tt.wantErr != nil {
				require.ErrorIs(t, err, tt.wantErr)
				assert.Contains(t, err.Error(), cfg.KernelPath)
				if tt.errSubstr != "" {
					assert.Contains(t, err.Error(), "load bzImage "+cfg.KernelPath+": "+tt.errSubstr)
				}
				return
			}
			require.NoError(t, err)
			assert.Equal(t, BzImage, img.Format)
			assert.Equal(t, tt.wantLoad, img.LoadAddr)
			assert.Equal(t, tt.wantEnd, img.End)
			assert.Equal(t, tt.wantLoad+0x200, img.Entry)
			assert.Equal(t, spec.version, img.Protocol)
			assert.Equal(t, ModeLong64, cpu.Mode)
			assert.Equal(t, uint64(img.Entry), cpu.RIP)
			assert.Equal(t, uint64(ZeroPageAddr), cpu.RSI)

			// The protected-mode code is in guest memory byte for byte.
			sects := int(spec.setupSects)
			if sects == 0 {
				sects = 4
			}
			code := file[(sects+1)*512:]
			assert.Equal(t, code, readGuest(t, mem, img.LoadAddr, uint64(len(code))))

			assert.Equal(t, append([]byte(tt.cmdline), 0), readGuest(t, mem, CmdlineAddr, uint64(len(tt.cmdline)+1)))
			if initrd != nil {
				assert.Equal(t, uint64(len(initrd)), img.InitrdSize)
				assert.Zero(t, img.InitrdAddr%pageSize)
				assert.GreaterOrEqual(t, img.InitrdAddr, img.End)
				assert.LessOrEqual(t, uint64(img.InitrdAddr)+img.InitrdSize, uint64(testRAM))
				assert.Greater(t, uint64(img.InitrdAddr)+img.InitrdSize, uint64(testRAM-pageSize), "initrd sits at the top of RAM")
				assert.Equal(t, initrd, readGuest(t, mem, img.InitrdAddr, img.InitrdSize))
			}
		})
	}
}

func TestZeroPageFields(t *testing.T) {
	spec := goodBzImage()
	file := spec.build()
	initrd := bytes.Repeat([]byte{1}, 10000)
	cfg := Config{
		KernelPath: writeTempFile(t, "bzImage", file),
		InitrdPath: writeTempFile(t, "initrd", initrd),
		Cmdline:    "console=ttyS0 reboot=k",
		RSDP:       0xe0000,
	}
	mem := newTestMemory(t, testRAM)
	_, img, err := Load(mem, cfg)
	require.NoError(t, err)

	zp := readGuest(t, mem, ZeroPageAddr, zpSize)
	le := binary.LittleEndian
	// The setup header is copied from 0x1f1 to its end, 0x202+0x6a.
	assert.Equal(t, file[0x1f1:0x26c], zpWithLoaderFieldsFromFile(zp, file)[0x1f1:0x26c])
	assert.Equal(t, "HdrS", string(zp[0x202:0x206]))
	assert.Equal(t, uint16(0xaa55), le.Uint16(zp[0x1fe:]))
	assert.Zero(t, zp[0x1ef], "sentinel stays 0 so the kernel trusts the fields")
	assert.Equal(t, byte(0xff), zp[0x210], "type_of_loader")
	assert.Equal(t, byte(0x81), zp[0x211], "loadflags LOADED_HIGH|CAN_USE_HEAP")
	assert.Equal(t, uint16(0xfe00), le.Uint16(zp[0x224:]), "heap_end_ptr")
	assert.Equal(t, uint32(CmdlineAddr), le.Uint32(zp[0x228:]), "cmd_line_ptr")
	assert.Zero(t, le.Uint32(zp[0x0c8:]), "ext_cmd_line_ptr")
	assert.Equal(t, uint32(img.InitrdAddr), le.Uint32(zp[0x218:]), "ramdisk_image")
	assert.Equal(t, uint32(len(initrd)), le.Uint32(zp[0x21c:]), "ramdisk_size")
	assert.Zero(t, le.Uint32(zp[0x0c0:]), "ext_ramdisk_image")
	assert.Zero(t, le.Uint32(zp[0x0c4:]), "ext_ramdisk_size")
	assert.Equal(t, uint64(0xe0000), le.Uint64(zp[0x070:]), "acpi_rsdp_addr")
	assert.Equal(t, uint32(0x1000000), le.Uint32(zp[0x258:]), "pref_address copied")
	assert.Equal(t, uint32(0x800000), le.Uint32(zp[0x260:]), "init_size copied")

	e820 := E820Map(mem)
	require.Equal(t, len(e820), int(zp[0x1e8]), "e820_entries")
	for i, e := range e820 {
		off := 0x2d0 + 20*i
		assert.Equal(t, uint64(e.Addr), le.Uint64(zp[off:]), "e820[%d].addr", i)
		assert.Equal(t, e.Size, le.Uint64(zp[off+8:]), "e820[%d].size", i)
		assert.Equal(t, uint32(e.Type), le.Uint32(zp[off+16:]), "e820[%d].type", i)
	}
	assert.Equal(t, make([]byte, 20), zp[0x2d0+20*len(e820):0x2d0+20*len(e820)+20])
	// Nothing past the setup header's padding comes from the file.
	assert.Equal(t, make([]byte, 0x2d0-0x290), zp[0x290:0x2d0])
}

// zpWithLoaderFieldsFromFile returns the zero page with the fields the
// loader owns put back to the file's values, so the rest can be compared.
func zpWithLoaderFieldsFromFile(zp, file []byte) []byte {
	out := bytes.Clone(zp)
	for _, f := range []struct{ off, n int }{
		{hdrTypeOfLoader, 1}, {hdrLoadflags, 1}, {hdrHeapEndPtr, 2}, {hdrCmdLinePtr, 4},
		{hdrRamdiskImage, 4}, {hdrRamdiskSize, 4},
	} {
		copy(out[f.off:f.off+f.n], file[f.off:f.off+f.n])
	}
	return out
}

func TestLoadMissingFiles(t *testing.T) {
	mem := newTestMemory(t, testRAM)
	_, _, err := Load(mem, Config{KernelPath: "/nonexistent/bzImage"})
	require.Error(t, err)

	kernel := writeTempFile(t, "bzImage", goodBzImage().build())
	_, _, err = Load(mem, Config{KernelPath: kernel, InitrdPath: "/nonexistent/initrd"})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "/nonexistent/initrd")

	_, _, err = Load(mem, Config{KernelPath: t.TempDir()})
	require.ErrorIs(t, err, ErrNotKernel)
}

func TestLoadEmptyInitrd(t *testing.T) {
	mem := newTestMemory(t, testRAM)
	cfg := Config{KernelPath: writeTempFile(t, "bzImage", goodBzImage().build()), InitrdPath: writeTempFile(t, "initrd", nil)}
	_, img, err := Load(mem, cfg)
	require.NoError(t, err)
	assert.Zero(t, img.InitrdAddr)
	assert.Zero(t, img.InitrdSize)
}

func TestLoadRejectsMemoryWithoutLowRAM(t *testing.T) {
	kernel := writeTempFile(t, "bzImage", goodBzImage().build())
	for _, mem := range []*memory.Memory{
		nil,
		memory.FromSlices(),
		memory.FromSlices(memory.Region{Base: 0, Host: make([]byte, 0x80000)}),
		memory.FromSlices(memory.Region{Base: 0x100000, Host: make([]byte, 0x100000)}),
	} {
		_, _, err := Load(mem, Config{KernelPath: kernel})
		require.ErrorIs(t, err, ErrNoLowRAM)
	}
}

func TestLoadMPTableCPUsOutOfRange(t *testing.T) {
	mem := newTestMemory(t, testRAM)
	kernel := writeTempFile(t, "bzImage", goodBzImage().build())
	for _, n := range []int{-1, MaxMPTableCPUs + 1} {
		_, _, err := Load(mem, Config{KernelPath: kernel, MPTableCPUs: n})
		require.ErrorIs(t, err, ErrTooManyCPUs)
	}
	_, _, err := Load(mem, Config{KernelPath: kernel, MPTableCPUs: 2})
	require.NoError(t, err)
	assert.Equal(t, "_MP_", string(readGuest(t, mem, EBDAAddr, 4)))
}
