package machine

import (
	"bytes"
	"errors"
	"github.com/vmm-dev/vmm/devices/ratelimit"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vmm-dev/vmm/boot"
	"github.com/vmm-dev/vmm/memory"
)

func TestValidate(t *testing.T) {
	good := Config{Kernel: "k"}.withDefaults()
	require.NoError(t, good.validate(1024))
	for _, tc := range []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{"no kernel", func(c *Config) { c.Kernel = "" }, "no kernel"},
		{"too many cpus for KVM", func(c *Config) { c.CPUs = 9 }, "allows 1 to 8"},
		{"too many cpus", func(c *Config) { c.CPUs = 300; c.Memory = DefaultMemory }, "at most 254"},
		{"tiny memory", func(c *Config) { c.Memory = 1 << 20 }, "must be between"},
		{"huge memory", func(c *Config) { c.Memory = 2 << 40 }, "must be between"},
		{"too many devices", func(c *Config) { c.Disks = make([]Disk, MaxDevices+1) }, "virtio devices"},
		{"entropy counts as a device", func(c *Config) { c.Disks = make([]Disk, MaxDevices); c.Entropy = &Entropy{} }, "20 virtio devices"},
		{"bad disk limit", func(c *Config) {
			c.Disks = []Disk{{Path: "d", RateLimit: ratelimit.Config{Ops: ratelimit.Bucket{Size: 1 << 63, RefillTime: 1}}}}
		}, "invalid rate limiter"},
		{"vsock CID", func(c *Config) { c.Vsock = &Vsock{GuestCID: 2, UDSPath: "/v"} }, "guest CID 2"},
		{"vsock path", func(c *Config) { c.Vsock = &Vsock{GuestCID: 3} }, "socket path"},
		{"balloon larger than RAM", func(c *Config) { c.Balloon = &Balloon{AmountMiB: DefaultMemory>>20 + 1} }, "balloon of 513 MiB"},
		{"NUL in cmdline", func(c *Config) { c.Cmdline = "a\x00b" }, "NUL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := good
			tc.mod(&c)
			max := 1024
			if tc.name == "too many cpus for KVM" {
				max = 8
			}
			err := c.validate(max)
			require.ErrorIs(t, err, ErrConfig)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}

func TestCmdlineAnnouncesDevicesOnlyWithoutACPI(t *testing.T) {
	slots := []virtioSlot{slotFor(0), slotFor(1)}
	assert.Equal(t, "console=ttyS0", cmdlineWithDevices("console=ttyS0", slots, true))
	assert.Equal(t, "console=ttyS0 virtio_mmio.device=4K@0xd0000000:5 virtio_mmio.device=4K@0xd0001000:6",
		cmdlineWithDevices("console=ttyS0", slots, false))
}

func TestPanicWatchSeesSplitBanner(t *testing.T) {
	var out bytes.Buffer
	w := newPanicWatch(&out)
	for _, part := range []string{"[ 1.0] Kernel pa", "nic - not sy", "ncing: Fatal exception\r\n"} {
		_, err := w.Write([]byte(part))
		require.NoError(t, err)
	}
	assert.True(t, w.seen())
	assert.Equal(t, "[ 1.0] Kernel panic - not syncing: Fatal exception\r\n", out.String())

	quiet := newPanicWatch(&bytes.Buffer{})
	_, _ = quiet.Write([]byte(strings.Repeat("Kernel pani ", 100)))
	assert.False(t, quiet.seen())
}

// New fails cleanly on bad images, before any vCPU runs, wherever
// /dev/kvm opens.
func TestNewRejectsBadKernels(t *testing.T) {
	if _, err := os.Stat("/dev/kvm"); err != nil {
		t.Skip("no /dev/kvm on this host")
	}
	dir := t.TempDir()
	text := filepath.Join(dir, "kernel.txt")
	require.NoError(t, os.WriteFile(text, []byte("not a kernel\n"), 0o644))
	_, err := New(Config{Kernel: text, Memory: memory.MinSize})
	require.ErrorIs(t, err, boot.ErrNotKernel)

	_, err = New(Config{Kernel: filepath.Join(dir, "missing")})
	require.True(t, errors.Is(err, os.ErrNotExist), "%v", err)

	_, err = New(Config{Kernel: text, Disks: []Disk{{Path: filepath.Join(dir, "no-disk.img")}}})
	require.True(t, errors.Is(err, os.ErrNotExist), "%v", err)
}
