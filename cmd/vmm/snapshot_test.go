package main

import (
	"encoding/binary"
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
)

// counterAddr is where the counting guest keeps its count (32 MiB).
const counterAddr = 0x200_0000

// counterGuest: inc qword [0x2000000]; jmp back to the inc.
var counterGuest = []byte{0x48, 0xff, 0x04, 0x25, 0x00, 0x00, 0x00, 0x02, 0xeb, 0xf6}

func memCount(t *testing.T, path string) uint64 {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	var b [8]byte
	_, err = f.ReadAt(b[:], counterAddr)
	require.NoError(t, err)
	return binary.LittleEndian.Uint64(b[:])
}

// startVMM starts bin with args and waits for its API socket.
func startVMM(t *testing.T, sock string, args ...string) (*exec.Cmd, time.Duration) {
	t.Helper()
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = append(os.Environ(), allowEmulatedEnv+"=1")
	cmd.Stderr = os.Stderr
	start := time.Now()
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	})
	require.Eventually(t, func() bool { _, err := os.Stat(sock); return err == nil }, 10*time.Second, time.Millisecond)
	return cmd, time.Since(start)
}

func snap(t *testing.T, bin, sock, state, mem string, extra ...string) {
	t.Helper()
	out, err := exec.Command(bin, append([]string{"snapshot", "create", "--api-sock", sock,
		"--snapshot-path", state, "--mem-file-path", mem}, extra...)...).CombinedOutput()
	require.NoError(t, err, "%s", out)
}

// snapUntil snapshots (leaving the VM paused) until the count is above
// floor: a loaded host may not have run the guest much yet.
func snapUntil(t *testing.T, bin, sock, state, mem string, floor uint64) uint64 {
	t.Helper()
	for range 50 {
		time.Sleep(100 * time.Millisecond)
		snap(t, bin, sock, state, mem, "--leave-paused")
		if c := memCount(t, mem); c > floor {
			return c
		}
		out, err := exec.Command(bin, "snapshot", "resume", "--api-sock", sock).CombinedOutput()
		require.NoError(t, err, "%s", out)
	}
	t.Fatalf("the guest never counted past %d", floor)
	return 0
}

// A counting guest is snapshotted from one vmm process and restored in
// two new ones at once (clones of one memory file): each counts on from
// the snapshot's count, not from zero.
func TestSnapshotRestoreInNewProcesses(t *testing.T) {
	if _, err := os.Stat("/dev/kvm"); err != nil {
		t.Skip("no /dev/kvm")
	}
	bin := buildVMM(t)
	dir := t.TempDir()
	kernel := codeELF(t, counterGuest)
	cfg := filepath.Join(dir, "vm.json")
	require.NoError(t, os.WriteFile(cfg, []byte(fmt.Sprintf(
		`{"boot-source":{"kernel_image_path":%q},"machine-config":{"vcpu_count":1,"mem_size_mib":64}}`, kernel)), 0o600))
	sock := filepath.Join(dir, "first.sock")
	first, _ := startVMM(t, sock, bin, "firecracker", "--api-sock", sock, "--config-file", cfg)
	state, mem := filepath.Join(dir, "vm.snap"), filepath.Join(dir, "vm.mem")
	c1 := snapUntil(t, bin, sock, state, mem, 0)
	require.NoError(t, first.Process.Signal(syscall.SIGTERM))
	_ = first.Wait()

	for i := range 2 {
		s := filepath.Join(dir, fmt.Sprintf("clone%d.sock", i))
		_, took := startVMM(t, s, bin, "restore", "--snapshot-path", state, "--mem-file-path", mem,
			"--api-sock", s, "--console", "none", "--allow-emulated")
		t.Logf("clone %d: process start to API socket %v", i, took)
	}
	for i := range 2 {
		s := filepath.Join(dir, fmt.Sprintf("clone%d.sock", i))
		m2 := filepath.Join(dir, fmt.Sprintf("clone%d.mem", i))
		c2 := snapUntil(t, bin, s, filepath.Join(dir, fmt.Sprintf("clone%d.snap", i)), m2, c1)
		assert.Greater(t, c2, c1, "clone %d counted on from %d", i, c1)
		t.Logf("clone %d: count %d at the snapshot, %d later", i, c1, c2)
	}
	assert.Equal(t, c1, memCount(t, mem), "clones never write the snapshot's memory file")

	// A restore says when the guest ran again: the time of a restore to
	// the guest's next instruction, which make bench reports.
	errPath := filepath.Join(dir, "restore.err")
	errFile, err := os.Create(errPath)
	require.NoError(t, err)
	defer errFile.Close()
	r := exec.Command(bin, "restore", "--snapshot-path", state, "--mem-file-path", mem, "--console", "none", "--allow-emulated")
	r.Stderr = errFile
	require.NoError(t, r.Start())
	t.Cleanup(func() {
		_ = r.Process.Signal(syscall.SIGTERM)
		_ = r.Wait()
	})
	require.Eventually(t, func() bool {
		b, err := os.ReadFile(errPath)
		return err == nil && strings.Contains(string(b), "the guest runs again") && strings.Contains(string(b), "unix-ns=")
	}, 10*time.Second, 10*time.Millisecond, "restore's stderr names the guest's first run")

	// Bad input fails at once with the reason.
	bad := filepath.Join(dir, "bad.snap")
	require.NoError(t, os.WriteFile(bad, []byte("VMMSNAP\x00short"), 0o600))
	out, err := exec.Command(bin, "restore", "--snapshot-path", bad, "--mem-file-path", mem, "--console", "none", "--allow-emulated").CombinedOutput()
	require.Error(t, err)
	assert.Contains(t, string(out), "truncated")
}

// Firecracker's --enable-pci: a VM whose disk is a virtio-pci function
// is snapshotted and restored in a new process, which counts on.
func TestSnapshotRestoreWithEnablePCI(t *testing.T) {
	if _, err := os.Stat("/dev/kvm"); err != nil {
		t.Skip("no /dev/kvm")
	}
	bin := buildVMM(t)
	dir := t.TempDir()
	disk := filepath.Join(dir, "disk.img")
	require.NoError(t, os.WriteFile(disk, make([]byte, 1<<20), 0o600))
	cfg := filepath.Join(dir, "vm.json")
	require.NoError(t, os.WriteFile(cfg, []byte(fmt.Sprintf(`{"boot-source":{"kernel_image_path":%q},
		"machine-config":{"vcpu_count":1,"mem_size_mib":64},
		"drives":[{"drive_id":"data","path_on_host":%q,"is_root_device":false,"is_read_only":true}]}`,
		codeELF(t, counterGuest), disk)), 0o600))
	sock := filepath.Join(dir, "first.sock")
	first, _ := startVMM(t, sock, bin, "firecracker", "--enable-pci", "--api-sock", sock, "--config-file", cfg)
	state, mem := filepath.Join(dir, "vm.snap"), filepath.Join(dir, "vm.mem")
	c1 := snapUntil(t, bin, sock, state, mem, 0)
	require.NoError(t, first.Process.Signal(syscall.SIGTERM))
	_ = first.Wait()

	s := filepath.Join(dir, "clone.sock")
	startVMM(t, s, bin, "restore", "--snapshot-path", state, "--mem-file-path", mem,
		"--api-sock", s, "--console", "none", "--allow-emulated")
	c2 := snapUntil(t, bin, s, filepath.Join(dir, "clone.snap"), filepath.Join(dir, "clone.mem"), c1)
	assert.Greater(t, c2, c1)
}
