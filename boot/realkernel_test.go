package boot

import (
	"bytes"
	"encoding/binary"
	"os"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vmm-dev/vmm/memory"
)

// debianKernel is Debian 12's cloud kernel, the project's reference guest,
// where the sandbox setup unpacked it.
const debianKernel = "/tmp/k/x/boot/vmlinuz-6.1.0-57-cloud-amd64"

func TestLoadDebianCloudKernel(t *testing.T) {
	if _, err := os.Stat(debianKernel); err != nil {
		t.Skipf("%s not present: %v", debianKernel, err)
	}
	mem := newTestMemory(t, 256<<20)
	initrd := bytes.Repeat([]byte{0x5a}, 1<<20)
	cfg := Config{
		KernelPath:  debianKernel,
		InitrdPath:  writeTempFile(t, "initrd", initrd),
		Cmdline:     "console=ttyS0 reboot=k panic=-1",
		RSDP:        0xe0000,
		MPTableCPUs: 2,
	}
	cpu, img, err := Load(mem, cfg)
	require.NoError(t, err)
	t.Log(img)

	assert.Equal(t, BzImage, img.Format)
	assert.Equal(t, uint16(0x020f), img.Protocol, "6.1 speaks boot protocol 2.15")
	assert.Equal(t, memory.GuestAddr(0x1000000), img.LoadAddr, "pref_address")
	assert.Equal(t, memory.GuestAddr(0x1000200), img.Entry)
	assert.Equal(t, uint64(0x1000200), cpu.RIP)
	assert.Equal(t, ModeLong64, cpu.Mode)
	assert.GreaterOrEqual(t, img.InitrdAddr, img.End)
	assert.Equal(t, memory.GuestAddr(256<<20-1<<20), img.InitrdAddr)

	zp := readGuest(t, mem, ZeroPageAddr, zpSize)
	le := binary.LittleEndian
	assert.Equal(t, "HdrS", string(zp[0x202:0x206]))
	assert.Zero(t, zp[0x1ef], "sentinel")
	assert.Equal(t, byte(0xff), zp[0x210])
	assert.Equal(t, uint32(img.InitrdAddr), le.Uint32(zp[0x218:]))
	assert.Equal(t, uint32(0x7ff), le.Uint32(zp[0x238:]), "cmdline_size")
	assert.Equal(t, uint64(img.End-img.LoadAddr), uint64(le.Uint32(zp[0x260:])), "init_size")

	// The protected-mode code is in memory as in the file.
	f, err := os.ReadFile(debianKernel)
	require.NoError(t, err)
	setup := (int(f[0x1f1]) + 1) * 512
	assert.True(t, bytes.Equal(f[setup:], readGuest(t, mem, img.LoadAddr, uint64(len(f)-setup))))
}
