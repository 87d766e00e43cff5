package main

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vmm-dev/vmm/internal/testguest"
)

// buildVMM builds this command into a temporary directory.
func buildVMM(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "vmm")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	require.NoError(t, err, "go build: %s", out)
	return bin
}

// haltELF is a 64-bit ELF kernel whose entry halts forever: enough for
// vmm to build a VM and run it on any /dev/kvm, even an emulated one.
func haltELF(t *testing.T) string {
	t.Helper()
	return codeELF(t, []byte{0xfa, 0xf4, 0xeb, 0xfd}) // cli; hlt; jmp hlt
}

// codeELF writes a 64-bit ELF whose one segment, code, loads and starts at
// 16 MiB.
func codeELF(t *testing.T, code []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "halt.elf")
	require.NoError(t, os.WriteFile(p, testguest.ELF(code), 0o644))
	return p
}

// Bad arguments and images fail at once with a one-line reason, on any host.
func TestRunRejectsBadInput(t *testing.T) {
	bin := buildVMM(t)
	text := filepath.Join(t.TempDir(), "notes.txt")
	require.NoError(t, os.WriteFile(text, []byte(strings.Repeat("not a kernel\n", 100)), 0o644))
	kernel := haltELF(t)
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"missing kernel", []string{"--kernel", "/nonexistent/bzImage"}, "no such file"},
		{"text kernel", []string{"--kernel", text}, "not a Linux kernel"},
		{"zero memory", []string{"--kernel", kernel, "--memory", "0"}, "memory"},
		{"too many cpus", []string{"--kernel", kernel, "--cpus", "1000"}, "cpus"},
		{"missing initrd", []string{"--kernel", kernel, "--initrd", "/nonexistent/initrd"}, "no such file"},
		{"bad disk", []string{"--kernel", kernel, "--disk", "/nonexistent/disk.img"}, "no such file"},
		{"bad transport", []string{"--kernel", kernel, "--transport", "ccw"}, "mmio or pci"},
		{"pci without acpi", []string{"--kernel", kernel, "--transport", "pci", "--no-acpi"}, "needs ACPI"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command(bin, append([]string{"run", "--console", "none"}, tc.args...)...)
			start := time.Now()
			out, err := cmd.CombinedOutput()
			var exit *exec.ExitError
			require.True(t, errors.As(err, &exit), "vmm should fail: %v\n%s", err, out)
			assert.NotZero(t, exit.ExitCode())
			assert.Contains(t, strings.ToLower(string(out)), strings.ToLower(tc.want))
			assert.Less(t, time.Since(start), 10*time.Second, "fails at once")
		})
	}
}

// SIGTERM ends a running VM with the shell's status for it, 128+15, so a
// killed VM is never mistaken for a guest that powered off.
func TestSignalEndsRunWithItsStatus(t *testing.T) {
	if _, err := os.Stat("/dev/kvm"); err != nil {
		t.Skip("no /dev/kvm")
	}
	bin := buildVMM(t)
	cmd := exec.Command(bin, "run", "--allow-emulated", "--console", "none", "--memory", "64M", "--kernel", haltELF(t))
	var stderr strings.Builder
	cmd.Stderr = &stderr
	require.NoError(t, cmd.Start())
	time.Sleep(300 * time.Millisecond) // anywhere in set-up or in the run
	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	err := cmd.Wait()
	var exit *exec.ExitError
	require.True(t, errors.As(err, &exit), "vmm should fail: %v\n%s", err, stderr.String())
	assert.Equal(t, 128+int(syscall.SIGTERM), exit.ExitCode(), stderr.String())
	assert.Contains(t, stderr.String(), "stopped by signal")
}

// A VM stopped by a signal says where each vCPU was: a guest spinning with
// interrupts off is reported in the guest, at its loop, not in the VMM.
func TestSignalReportsWhereTheVCPUWas(t *testing.T) {
	if _, err := os.Stat("/dev/kvm"); err != nil {
		t.Skip("no /dev/kvm")
	}
	bin := buildVMM(t)
	spin := codeELF(t, []byte{0xfa, 0xeb, 0xfe}) // cli; jmp .
	disk := filepath.Join(t.TempDir(), "disk.img")
	require.NoError(t, os.WriteFile(disk, make([]byte, 1<<20), 0o644))
	cmd := exec.Command(bin, "run", "--allow-emulated", "--console", "none", "--memory", "64M", "--kernel", spin, "--disk", disk)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	require.NoError(t, cmd.Start())
	time.Sleep(1500 * time.Millisecond) // well past set-up: the guest spins
	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	require.Error(t, cmd.Wait())
	out := stderr.String()
	assert.Contains(t, out, "vmm: stopped: vCPU 0: in the guest for", out)
	assert.Contains(t, out, "RIP 0x1000001 ", "the jmp after the cli\n%s", out)
	assert.Contains(t, out, "(interrupts off)", out)
	// And each device's queues: this guest never drove its disk.
	assert.Contains(t, out, "vmm: stopped: virtio-block #0 (mmio, interrupt status 0x0): not running (no DRIVER_OK yet, or reset)", out)
}
