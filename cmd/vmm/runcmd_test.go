package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vmm-dev/vmm/guestinit"
	"github.com/vmm-dev/vmm/initramfs"
	"github.com/vmm-dev/vmm/machine"
)

func TestCommandExit(t *testing.T) {
	exit := func(n int) *guestinit.Status { return &guestinit.Status{Kind: guestinit.StatusExit, Code: n} }
	panicErr := errors.Join(machine.ErrGuestPanic, errors.New("Kernel panic - not syncing: sysrq"))
	for _, tc := range []struct {
		name string
		o    cmdOutcome
		want int
	}{
		{"exit 0", cmdOutcome{started: true, final: exit(0)}, 0},
		{"exit 7", cmdOutcome{started: true, final: exit(7)}, 7},
		{"not found", cmdOutcome{started: true, final: exit(127)}, 127},
		{"killed by 9", cmdOutcome{started: true, final: &guestinit.Status{Kind: guestinit.StatusSignal, Code: 9}}, 137},
		{"panic while running", cmdOutcome{started: true, runErr: panicErr}, statusPanic},
		{"panic before init", cmdOutcome{runErr: panicErr}, statusPanic},
		{"init failed", cmdOutcome{guestErr: "share vmm-root: no virtiofs"}, statusNoCommand},
		{"powered off early", cmdOutcome{}, statusNoCommand},
		{"triple fault mid-command", cmdOutcome{started: true, runErr: errors.New("triple fault")}, statusNoCommand},
		{"timeout", cmdOutcome{started: true, timedOut: true}, statusTimeout},
		{"timeout wins over a late status", cmdOutcome{timedOut: true, final: exit(0)}, statusTimeout},
		{"signal to vmm", cmdOutcome{signal: syscall.SIGTERM, timedOut: true}, 128 + 15},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, reason := commandExit(tc.o)
			assert.Equal(t, tc.want, code)
			if tc.o.final != nil && !tc.o.timedOut && tc.o.signal == 0 {
				assert.Empty(t, reason, "the command's own status needs no explanation")
			} else {
				assert.NotEmpty(t, reason)
			}
		})
	}
	// vmm's own statuses are distinct from each other.
	assert.Len(t, map[int]bool{statusPanic: true, statusNoCommand: true, statusTimeout: true, statusVMMError: true}, 4)
}

func TestCommandEnv(t *testing.T) {
	t.Setenv("HOME", "/home/dev")
	t.Setenv("TERM", "xterm")
	env, err := commandEnv([]string{"A=1", "HOME=/override", "EMPTY="})
	require.NoError(t, err)
	assert.Contains(t, env, "A=1")
	assert.Contains(t, env, "HOME=/override")
	assert.Contains(t, env, "TERM=xterm")
	assert.Contains(t, env, "EMPTY=")
	_, err = commandEnv([]string{"noequals"})
	assert.ErrorIs(t, err, errBadFlag)
}

func TestFindKernelInBuildTree(t *testing.T) {
	tree := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(tree, "arch/x86/boot"), 0o755))
	require.NoError(t, os.MkdirAll(filepath.Join(tree, "drivers/char"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(tree, "arch/x86/boot/bzImage"), []byte("x"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(tree, "Kbuild"), nil, 0o644))
	t.Chdir(filepath.Join(tree, "drivers/char"))
	k, d, err := findKernel("")
	require.NoError(t, err)
	assert.Equal(t, filepath.Join(tree, "arch/x86/boot/bzImage"), k)
	assert.Equal(t, tree, d)
	k, d, err = findKernel("/my/bzImage")
	require.NoError(t, err)
	assert.Equal(t, "/my/bzImage", k)
	assert.Empty(t, d)
	t.Chdir(t.TempDir())
	_, _, err = findKernel("")
	assert.ErrorIs(t, err, errBadFlag)
}

func TestTailBuffer(t *testing.T) {
	tb := &tailBuffer{max: 16}
	_, _ = tb.Write([]byte("first line\r\nsecond\r\n"))
	_, _ = tb.Write([]byte("third\n"))
	assert.Equal(t, []string{"", "second", "third"}, tb.lastLines(5), "only the last 16 bytes stay")
	assert.Equal(t, []string{"third"}, tb.lastLines(1))
	assert.Nil(t, (&tailBuffer{max: 4}).lastLines(3))

	// A panic: its banner and what led to it, not the backtrace's end.
	p := &tailBuffer{max: 1 << 16}
	_, _ = p.Write([]byte("boot\na\nb\nsysrq: Trigger a crash\nKernel panic - not syncing: sysrq triggered crash\n"))
	for i := range 40 {
		_, _ = fmt.Fprintf(p, "trace %d\n", i)
	}
	got := p.lastLines(5)
	assert.Equal(t, []string{"a", "b", "sysrq: Trigger a crash", "Kernel panic - not syncing: sysrq triggered crash", "trace 0"}, got)
}

func TestInitramfsArchive(t *testing.T) {
	mod := filepath.Join(t.TempDir(), "virtio.ko")
	require.NoError(t, os.WriteFile(mod, []byte("\x7fELF module"), 0o644))
	extra := filepath.Join(t.TempDir(), "tool")
	require.NoError(t, os.WriteFile(extra, []byte("#!/bin/true\n"), 0o755))
	gc := guestinit.Config{Args: []string{"true"}, Dir: "/"}
	b, err := initramfsArchive([]byte("ELF init"), gc, []initramfs.Module{{Name: "virtio", Path: mod}}, []string{extra + ":/usr/bin/tool"})
	require.NoError(t, err)
	if _, err := exec.LookPath("cpio"); err != nil || os.Geteuid() != 0 {
		t.Skip("unpacking the archive (device nodes) needs cpio and root")
	}
	dir := t.TempDir()
	cmd := exec.Command("cpio", "-id", "--quiet")
	cmd.Dir, cmd.Stdin = dir, bytes.NewReader(b)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)
	init, err := os.ReadFile(filepath.Join(dir, "init"))
	require.NoError(t, err)
	assert.Equal(t, "ELF init", string(init))
	raw, err := os.ReadFile(filepath.Join(dir, guestinit.ConfigPath))
	require.NoError(t, err)
	got, err := guestinit.UnmarshalConfig(raw)
	require.NoError(t, err)
	require.Len(t, got.Modules, 1)
	assert.True(t, strings.HasPrefix(got.Modules[0], guestinit.ModuleDir+"/"), got.Modules[0])
	m, err := os.ReadFile(filepath.Join(dir, got.Modules[0]))
	require.NoError(t, err)
	assert.Equal(t, "\x7fELF module", string(m))
	st, err := os.Stat(filepath.Join(dir, "usr/bin/tool"))
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o755), st.Mode().Perm())
	fi, err := os.Stat(filepath.Join(dir, "dev/console"))
	require.NoError(t, err)
	assert.Equal(t, os.ModeDevice|os.ModeCharDevice, fi.Mode().Type(), "/dev/console for init's stdio")
	for _, d := range []string{"dev", "proc", "sys", "tmp"} {
		fi, err := os.Stat(filepath.Join(dir, d))
		require.NoError(t, err)
		assert.True(t, fi.IsDir())
	}
	_, err = initramfsArchive(nil, gc, nil, []string{extra + ":relative"})
	assert.ErrorIs(t, err, errBadFlag)
}

// A guest kernel without epoll kills the guest's init in Go's runtime,
// before it can say anything: the console says why, and vmm names the
// option.
func TestInitFailure(t *testing.T) {
	tb := &tailBuffer{max: 1 << 10}
	_, _ = tb.Write([]byte("[    1.2] Run /init as init process\nruntime: epollcreate failed with 38\nfatal error: runtime: netpollinit failed\n"))
	why := tb.initFailure()
	assert.Contains(t, why, "CONFIG_EPOLL")
	assert.NotContains(t, why, "CONFIG_EVENTFD")
	assert.Empty(t, (&tailBuffer{max: 64}).initFailure(), "nothing to explain")
}

// A command run takes virtio-mmio where the kernel has it and virtio-pci
// where it does not (a defconfig kvm_guest.config kernel), unless told.
func TestCommandTransport(t *testing.T) {
	pci, mmio := machine.TransportPCI, machine.TransportMMIO
	assert.Equal(t, mmio, commandTransport(false, mmio, false, true), "Debian's kernel: virtio_mmio.ko")
	assert.Equal(t, pci, commandTransport(false, mmio, false, false), "no virtio-mmio anywhere")
	assert.Equal(t, mmio, commandTransport(false, mmio, true, false), "--no-acpi: PCI cannot be described")
	assert.Equal(t, mmio, commandTransport(true, mmio, false, false), "--transport mmio is the user's choice")
	assert.Equal(t, pci, commandTransport(true, pci, false, true))
}

// Where the module tree or the build tree says so, the kernel has
// virtio-mmio: a module file, modules.builtin, or the tree's .config.
func TestSelectModulesFindsMMIO(t *testing.T) {
	kernel := filepath.Join(t.TempDir(), "bzImage") // no release string: --modules decides
	require.NoError(t, os.WriteFile(kernel, []byte("not a kernel"), 0o644))
	for name, files := range map[string]map[string]string{
		"module":  {"kernel/drivers/virtio/virtio_mmio.ko": "", "modules.dep": "kernel/drivers/virtio/virtio_mmio.ko:\n"},
		"builtin": {"modules.builtin": "kernel/drivers/virtio/virtio_mmio.ko\n", "modules.dep": ""},
		"none":    {"modules.builtin": "kernel/drivers/virtio/virtio_pci.ko\n", "modules.dep": ""},
	} {
		dir := t.TempDir()
		for rel, content := range files {
			require.NoError(t, os.MkdirAll(filepath.Dir(filepath.Join(dir, rel)), 0o755))
			require.NoError(t, os.WriteFile(filepath.Join(dir, rel), []byte(content), 0o644))
		}
		_, has, err := selectModules(kernel, "", dir)
		require.NoError(t, err, name)
		assert.Equal(t, name != "none", has, name)
	}
	tree := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(tree, ".config"), []byte("CONFIG_VIRTIO_PCI=y\nCONFIG_VIRTIO_MMIO=y\n"), 0o644))
	_, has, err := selectModules(kernel, tree, "")
	require.NoError(t, err)
	assert.True(t, has, "a build tree's .config")
	assert.True(t, kconfigHas(filepath.Join(tree, ".config"), "CONFIG_VIRTIO_PCI"))
	assert.False(t, kconfigHas(filepath.Join(tree, ".config"), "CONFIG_VIRTIO_BLK"))
}

// The guest's phase lines reach --stats with the steps between them, and
// a guest that sends too many cannot make the host keep them all.
func TestStatusWatchPhases(t *testing.T) {
	var w statusWatch
	r := &guestinit.StatusReader{Handle: w.handle}
	_, err := r.Write([]byte("phase init 2000000\nphase modules 2850000\nphase root 3100000\nstarted\n"))
	require.NoError(t, err)
	assert.True(t, w.started)
	var b strings.Builder
	w.printPhases(&b, time.Now().Add(-5*time.Second))
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	require.Len(t, lines, 3, b.String())
	assert.True(t, strings.HasPrefix(lines[0], "vmm: guest phase init:    at 2s of guest time; host heard 5s after vmm started"), lines[0])
	assert.Contains(t, lines[1], "modules: at 2.85s of guest time (+850ms)")
	assert.Contains(t, lines[2], "root:    at 3.1s of guest time (+250ms)")

	_, err = r.Write([]byte(strings.Repeat("phase x 1\n", 100)))
	require.NoError(t, err)
	assert.Len(t, w.phases, maxPhases)
}
