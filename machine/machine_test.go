package machine

import (
	"bytes"
	"errors"
	"github.com/vmm-dev/vmm/devices/ratelimit"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vmm-dev/vmm/boot"
	"github.com/vmm-dev/vmm/devices"
	"github.com/vmm-dev/vmm/devices/pvpanic"
	"github.com/vmm-dev/vmm/firmware"
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
		{"too many PCI devices", func(c *Config) { c.Transport = TransportPCI; c.Disks = make([]Disk, MaxPCIDevices+1) }, "over virtio-pci"},
		{"PCI without ACPI", func(c *Config) { c.Transport = TransportPCI; c.NoACPI = true }, "needs ACPI"},
		{"unknown transport", func(c *Config) { c.Transport = "ccw" }, "unknown virtio transport"},
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

func TestPCIAllowsMoreDevicesThanPins(t *testing.T) {
	c := Config{Kernel: "k", Transport: TransportPCI, Disks: make([]Disk, 16), NICs: make([]NIC, 8)}.withDefaults()
	require.NoError(t, c.validate(1024))
	assert.Equal(t, TransportMMIO, Config{}.withDefaults().Transport)
	// INTx stays on the IOAPIC pins no virtio-mmio or platform device
	// uses.
	for slot := 1; slot < 32; slot++ {
		for pin := 0; pin < 4; pin++ {
			assert.GreaterOrEqual(t, intxGSI(slot, pin), uint32(16))
			assert.Less(t, intxGSI(slot, pin), uint32(24))
		}
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

	assert.Equal(t, "Kernel panic - not syncing: Fatal exception", w.bannerLine())

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

// The reset vector is the top of the BIOS area: the ACPI tables end below
// it, and the guest's e820 map reserves it, so Linux never takes it for RAM.
func TestResetVectorIsReservedAndClearOfACPI(t *testing.T) {
	assert.LessOrEqual(t, uint64(acpiTableEnd), uint64(firmware.ResetVectorAddr))
	mem, err := memory.New(memory.MinSize)
	require.NoError(t, err)
	defer mem.Close()
	start, end := firmware.ResetVectorAddr, firmware.ResetVectorAddr+firmware.ResetVectorSize
	reserved := false
	for _, e := range boot.E820Map(mem) {
		if e.Addr < end && start < e.End() {
			require.Equal(t, boot.E820Reserved, e.Type, "e820 entry %+v covers the reset vector", e)
			reserved = reserved || (e.Addr <= start && end <= e.End())
		}
	}
	assert.True(t, reserved, "no e820 entry covers the reset vector")
}

func TestPanicWatchKeepsOneBoundedLine(t *testing.T) {
	w := newPanicWatch(io.Discard)
	calls := 0
	w.onBanner = func() { calls++ }
	_, _ = w.Write([]byte("Kernel panic - not syncing: " + strings.Repeat("x", 500)))
	_, _ = w.Write([]byte("more\nCPU: 0 PID: 1\nKernel panic - not syncing: again\n"))
	assert.Equal(t, 1, calls, "onBanner runs once")
	assert.Len(t, w.bannerLine(), maxPanicLine)
	assert.True(t, strings.HasPrefix(w.bannerLine(), "Kernel panic - not syncing: xxx"))

	bad := newPanicWatch(io.Discard)
	_, _ = bad.Write([]byte("Kernel panic - not syncing: \xff\xfe\r\n"))
	assert.Equal(t, "Kernel panic - not syncing: ?", bad.bannerLine())
}

// A pvpanic "panicked" ends the run at once, with the console's panic line;
// "crash kernel loaded" lets the guest run on and makes its end a panic.
func TestPVPanicEvents(t *testing.T) {
	m := &Machine{panics: newPanicWatch(io.Discard)}
	_, _ = m.panics.Write([]byte("[    1.0] Kernel panic - not syncing: sysrq triggered crash\n"))
	m.onPVPanic(pvpanic.Panicked)
	require.ErrorIs(t, m.end.err, ErrGuestPanic)
	assert.Equal(t, "guest kernel panicked (pvpanic: the guest reported a panic): Kernel panic - not syncing: sysrq triggered crash", m.end.err.Error())

	m = &Machine{panics: newPanicWatch(io.Discard)}
	m.onPVPanic(pvpanic.CrashLoaded)
	require.NoError(t, m.end.err, "the crash kernel runs")
	err := m.panicAfter("power off")
	require.ErrorIs(t, err, ErrGuestPanic)
	assert.Contains(t, err.Error(), "ran its crash kernel, then asked to power off): no panic message on the console")
}

// Without pvpanic, a guest that shows the banner and then neither resets
// nor powers off (panic=0) ends the run after panicGrace.
func TestConsolePanicEndsTheRun(t *testing.T) {
	m := &Machine{panics: newPanicWatch(io.Discard)}
	m.panics.onBanner = m.onConsolePanic
	defer m.stopPanicTimer()
	start := time.Now()
	_, _ = m.panics.Write([]byte("Kernel panic - not syncing: Attempted to kill init!\r\n"))
	time.Sleep(panicGrace + time.Second)
	// Once the timer's finish has run, this Do does nothing and makes its
	// writes visible here.
	m.endOnce.Do(func() {})
	assert.GreaterOrEqual(t, time.Since(start), panicGrace)
	require.ErrorIs(t, m.end.err, ErrGuestPanic)
	assert.Contains(t, m.end.err.Error(), "did not reset within 2s of its last output): Kernel panic - not syncing: Attempted to kill init!")

	// Output after the banner (panic()'s stack dump) moves the deadline:
	// the run ends 2 s after the console's last line, not the banner.
	p := &Machine{panics: newPanicWatch(io.Discard)}
	p.panics.onBanner = p.onConsolePanic
	p.panics.onOutput = p.onConsoleAfterPanic
	defer p.stopPanicTimer()
	start = time.Now()
	_, _ = p.panics.Write([]byte("Kernel panic - not syncing: sysrq triggered crash\n"))
	for range 3 {
		time.Sleep(panicGrace / 2)
		_, _ = p.panics.Write([]byte(" ? srso_return_thunk+0x5/0x10\n"))
	}
	time.Sleep(panicGrace + time.Second)
	p.endOnce.Do(func() {})
	require.ErrorIs(t, p.end.err, ErrGuestPanic)

	banner := time.Unix(1000, 0)
	assert.Equal(t, panicGrace, panicWait(banner.Add(time.Second), banner), "2 s after each output")
	assert.Equal(t, time.Second, panicWait(banner.Add(panicMaxWait-time.Second), banner), "but no later than panicMaxWait after the banner")
	assert.Zero(t, panicWait(banner.Add(panicMaxWait+time.Second), banner))

	// A reset first: Run reports the panic with the guest's request.
	r := &Machine{panics: newPanicWatch(io.Discard)}
	_, _ = r.panics.Write([]byte("Kernel panic - not syncing: x\n"))
	assert.Equal(t, "guest kernel panicked (its console showed a panic, then it asked to reset): Kernel panic - not syncing: x",
		r.panicAfter(devices.Reset.String()).Error())
	assert.NoError(t, (&Machine{panics: newPanicWatch(io.Discard)}).panicAfter("reset"))
}
