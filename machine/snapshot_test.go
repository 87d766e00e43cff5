package machine

import (
	"encoding/binary"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	pcibus "github.com/vmm-dev/vmm/devices/pci"
	"github.com/vmm-dev/vmm/devices/ratelimit"
	"github.com/vmm-dev/vmm/devices/vmgenid"
	"github.com/vmm-dev/vmm/internal/testguest"
	"github.com/vmm-dev/vmm/snapshot"
)

// counterAddr is where the counting guest keeps its counter (32 MiB).
const counterAddr = 0x200_0000

// counterGuest counts in memory forever:
// inc qword [0x2000000]; jmp back to the inc.
var counterGuest = []byte{0x48, 0xff, 0x04, 0x25, 0x00, 0x00, 0x00, 0x02, 0xeb, 0xf6}

func skipWithoutKVM(t *testing.T) {
	t.Helper()
	if _, err := os.Stat("/dev/kvm"); err != nil {
		t.Skip("no /dev/kvm on this host: KVM tests skipped")
	}
}

func counter(t *testing.T, m *Machine) uint64 {
	t.Helper()
	b, err := m.mem.Slice(counterAddr, 8)
	require.NoError(t, err)
	return binary.LittleEndian.Uint64(b)
}

// genID reads the VM generation ID where the guest finds it.
func genID(t *testing.T, m *Machine) vmgenid.ID {
	t.Helper()
	var id vmgenid.ID
	require.NoError(t, m.mem.ReadAt(id[:], vmgenIDAddr))
	return id
}

// startCounter builds cfg with the counting guest as its kernel, runs it
// and waits for it to count; it returns the machine, Run's result and
// the test's directory.
func startCounter(t *testing.T, cfg Config) (*Machine, chan error, string) {
	t.Helper()
	skipWithoutKVM(t)
	dir := t.TempDir()
	cfg.Kernel = filepath.Join(dir, "counter.elf")
	require.NoError(t, os.WriteFile(cfg.Kernel, testguest.ELF(counterGuest), 0o644))
	m, err := New(cfg)
	require.NoError(t, err)
	done := runAsync(m)
	require.Eventually(t, func() bool { return counter(t, m) > 10 }, 10*time.Second, time.Millisecond)
	return m, done, dir
}

// runAsync runs m and returns a channel with Run's error.
func runAsync(m *Machine) chan error {
	done := make(chan error, 1)
	go func() { _, err := m.Run(); done <- err }()
	return done
}

func stop(t *testing.T, m *Machine, done chan error) {
	t.Helper()
	m.Stop()
	select {
	case err := <-done:
		assert.ErrorIs(t, err, ErrStopped)
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not end after Stop")
	}
	require.NoError(t, m.Close())
}

// The counting guest is paused (the counter stops), snapshotted, resumed,
// and restored in a new machine, where it counts on from the snapshot's
// value, with a new VM generation ID. A Diff snapshot after more counting
// is a few pages, and full plus diff restores the later count.
func TestSnapshotRestoreCounter(t *testing.T) {
	skipWithoutKVM(t)
	dir := t.TempDir()
	kernel := filepath.Join(dir, "counter.elf")
	require.NoError(t, os.WriteFile(kernel, testguest.ELF(counterGuest), 0o644))
	const version = "test-1"
	m, err := New(Config{Kernel: kernel, Memory: 64 << 20, CPUs: 2, TrackDirtyPages: true})
	require.NoError(t, err)
	id := genID(t, m)
	require.NotEqual(t, vmgenid.ID{}, id, "a new VM has a generation ID")
	done := runAsync(m)

	_, err = m.Snapshot(SnapshotParams{StatePath: filepath.Join(dir, "x"), MemPath: filepath.Join(dir, "y")})
	require.ErrorIs(t, err, ErrNotPaused, "a running VM is not snapshotted")
	require.Eventually(t, func() bool { return counter(t, m) > 100 }, 10*time.Second, time.Millisecond)
	m.Pause()
	require.True(t, m.Paused())
	c1 := counter(t, m)
	time.Sleep(50 * time.Millisecond)
	require.Equal(t, c1, counter(t, m), "the counter stops while paused")

	_, err = m.Snapshot(SnapshotParams{StatePath: filepath.Join(dir, "x"), MemPath: filepath.Join(dir, "y"), Type: SnapshotDiff, VMMVersion: version})
	require.ErrorIs(t, err, ErrNoDirtyBase, "no Diff before a Full snapshot")
	// What a guest leaves in the legacy devices: a byte in CMOS RAM, the
	// keyboard controller's configuration byte, SYS_RST in 0xcf9.
	m.rtc.Write(0, []byte{0x40})
	m.rtc.Write(1, []byte{0x77})
	m.kbd.Write(4, []byte{0x60})
	m.kbd.Write(0, []byte{0x45})
	m.resetCtl.Write(0, []byte{0x02})
	full := SnapshotParams{StatePath: filepath.Join(dir, "full.snap"), MemPath: filepath.Join(dir, "full.mem"), Type: SnapshotFull, VMMVersion: version}
	fst, err := m.Snapshot(full)
	require.NoError(t, err)
	t.Logf("full snapshot: %d bytes of RAM written, state %d bytes, %v", fst.MemBytesWritten, fst.StateBytes, fst.Duration)

	m.Resume()
	require.Eventually(t, func() bool { return counter(t, m) > c1+100 }, 10*time.Second, time.Millisecond)
	m.Pause()
	c2 := counter(t, m)
	diff := SnapshotParams{StatePath: filepath.Join(dir, "diff.snap"), MemPath: filepath.Join(dir, "diff.mem"), Type: SnapshotDiff, VMMVersion: version}
	dst, err := m.Snapshot(diff)
	require.NoError(t, err)
	t.Logf("diff snapshot: %d bytes of RAM written, %v", dst.MemBytesWritten, dst.Duration)
	assert.Less(t, dst.MemBytesWritten, fst.MemBytesWritten/10, "a diff holds only the dirtied pages")
	assert.Positive(t, dst.MemBytesWritten, "the counter's page is in the diff")
	stop(t, m, done)

	// Restore the full snapshot: the counter is c1 and goes on from there.
	start := time.Now()
	r, err := Restore(RestoreParams{StatePath: full.StatePath, MemPath: full.MemPath, VMMVersion: version, Console: io.Discard})
	require.NoError(t, err)
	built := time.Since(start)
	assert.True(t, r.Paused(), "a restored VM comes back paused")
	assert.Equal(t, c1, counter(t, r))
	assert.Equal(t, m.rtc.Save(), r.rtc.Save(), "CMOS RAM")
	assert.Equal(t, byte(0x45), r.kbd.Save().CTR, "the i8042's configuration byte")
	assert.Equal(t, m.resetCtl.Save(), r.resetCtl.Save(), "the reset control register")
	rid := genID(t, r)
	assert.NotEqual(t, id, rid, "a restored VM has a new generation ID")
	assert.Equal(t, r.genID.ID(), rid)
	rdone := runAsync(r)
	time.Sleep(20 * time.Millisecond)
	assert.Equal(t, c1, counter(t, r), "paused until Resume")
	resumeAt := time.Now()
	r.Resume()
	require.Eventually(t, func() bool { return counter(t, r) > c1 }, 10*time.Second, time.Millisecond)
	t.Logf("restore: %v to build the VM from the snapshot, first guest instruction %v after Resume (%v after Restore began)",
		built, r.FirstRun().Sub(resumeAt), r.FirstRun().Sub(start))
	for _, p := range r.Phases() {
		t.Logf("  restore phase %s: %v", p.Name, p.Duration)
	}
	stop(t, r, rdone)

	// Full plus diff is the later state.
	require.NoError(t, snapshot.MergeDiff(full.MemPath, diff.MemPath))
	r2, err := Restore(RestoreParams{StatePath: diff.StatePath, MemPath: full.MemPath, VMMVersion: version})
	require.NoError(t, err)
	assert.Equal(t, c2, counter(t, r2), "full plus diff restores the count of the diff")
	assert.NotContains(t, []vmgenid.ID{id, rid}, genID(t, r2), "each restore has its own generation ID")
	r2done := runAsync(r2)
	r2.Resume()
	require.Eventually(t, func() bool { return counter(t, r2) > c2 }, 10*time.Second, time.Millisecond)
	stop(t, r2, r2done)
}

// A restore refuses bad input before it runs anything.
func TestRestoreRefuses(t *testing.T) {
	skipWithoutKVM(t)
	dir := t.TempDir()
	kernel := filepath.Join(dir, "counter.elf")
	require.NoError(t, os.WriteFile(kernel, testguest.ELF(counterGuest), 0o644))
	m, err := New(Config{Kernel: kernel, Memory: 32 << 20})
	require.NoError(t, err)
	m.Pause()
	p := SnapshotParams{StatePath: filepath.Join(dir, "vm.snap"), MemPath: filepath.Join(dir, "vm.mem"), VMMVersion: "v1"}
	_, err = m.Snapshot(p)
	require.NoError(t, err)
	require.NoError(t, m.Close())

	good := RestoreParams{StatePath: p.StatePath, MemPath: p.MemPath, VMMVersion: "v1"}
	state, err := os.ReadFile(p.StatePath)
	require.NoError(t, err)
	write := func(name string, b []byte) string {
		path := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(path, b, 0o600))
		return path
	}
	corrupt := append([]byte(nil), state...)
	corrupt[len(corrupt)/2] ^= 1
	short := write("short.mem", make([]byte, 16<<20))
	for _, tc := range []struct {
		name string
		mod  func(*RestoreParams)
		want error
	}{
		{"other vmm version", func(r *RestoreParams) { r.VMMVersion = "v2" }, snapshot.ErrVMMVersion},
		{"truncated state", func(r *RestoreParams) { r.StatePath = write("trunc.snap", state[:len(state)-10]) }, snapshot.ErrTruncated},
		{"corrupt state", func(r *RestoreParams) { r.StatePath = write("corrupt.snap", corrupt) }, snapshot.ErrCorrupt},
		{"memory file of the wrong size", func(r *RestoreParams) { r.MemPath = short }, snapshot.ErrMemoryFile},
		{"missing memory file", func(r *RestoreParams) { r.MemPath = filepath.Join(dir, "nope") }, os.ErrNotExist},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rp := good
			tc.mod(&rp)
			_, err := Restore(rp)
			require.Error(t, err)
			assert.True(t, errors.Is(err, tc.want), "%v", err)
		})
	}
	r, err := Restore(good)
	require.NoError(t, err)
	require.NoError(t, r.Close())
}

// A VM with a disk and an entropy device is snapshotted and restored
// with them, rebuilt at the same slots; a Diff after it carries what the
// VMM wrote into guest memory (as its devices do, which KVM's dirty log
// never sees), and a missing disk image fails the restore before
// anything runs.
func TestSnapshotWithVirtioDevices(t *testing.T) {
	skipWithoutKVM(t)
	dir := t.TempDir()
	kernel := filepath.Join(dir, "counter.elf")
	require.NoError(t, os.WriteFile(kernel, testguest.ELF(counterGuest), 0o644))
	disk := filepath.Join(dir, "disk.img")
	require.NoError(t, os.WriteFile(disk, make([]byte, 1<<20), 0o644))
	m, err := New(Config{Kernel: kernel, Memory: 64 << 20, TrackDirtyPages: true,
		Disks: []Disk{{Path: disk, ReadOnly: true}}, Entropy: &Entropy{}})
	require.NoError(t, err)
	done := runAsync(m)
	require.Eventually(t, func() bool { return counter(t, m) > 10 }, 10*time.Second, time.Millisecond)
	// What changed at run time is what the snapshot keeps: the disk's
	// new file (PATCH /drives path_on_host) and its new limit.
	swapped := filepath.Join(dir, "swapped.img")
	require.NoError(t, os.WriteFile(swapped, make([]byte, 1<<20), 0o644))
	require.NoError(t, m.SwapDisk(0, swapped))
	limit := ratelimit.Config{Ops: ratelimit.Bucket{Size: 100, RefillTime: time.Second}}
	require.NoError(t, m.SetDiskRateLimit(0, limit))
	m.Pause()
	p := SnapshotParams{StatePath: filepath.Join(dir, "vm.snap"), MemPath: filepath.Join(dir, "vm.mem"), VMMVersion: "v"}
	_, err = m.Snapshot(p)
	require.NoError(t, err)
	// A device's write between the two snapshots (the VM stays paused,
	// so the guest writes nothing).
	const mark = 40 << 20
	require.NoError(t, m.mem.WriteAt([]byte("written by a device"), mark))
	diff := SnapshotParams{StatePath: filepath.Join(dir, "d.snap"), MemPath: filepath.Join(dir, "d.mem"), Type: SnapshotDiff, VMMVersion: "v"}
	dst, err := m.Snapshot(diff)
	require.NoError(t, err)
	assert.Positive(t, dst.MemBytesWritten)
	assert.Less(t, dst.MemBytesWritten, int64(64<<10), "the diff is the written page and little else")
	c1 := counter(t, m)
	stop(t, m, done)
	merged := filepath.Join(dir, "merged.mem")
	full, err := os.ReadFile(p.MemPath)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(merged, full, 0o644))
	require.NoError(t, snapshot.MergeDiff(merged, diff.MemPath))
	rd, err := Restore(RestoreParams{StatePath: diff.StatePath, MemPath: merged, VMMVersion: "v"})
	require.NoError(t, err)
	got := make([]byte, len("written by a device"))
	require.NoError(t, rd.mem.ReadAt(got, mark))
	assert.Equal(t, "written by a device", string(got), "full plus diff has the device's write")
	require.NoError(t, rd.Close())

	r, err := Restore(RestoreParams{StatePath: p.StatePath, MemPath: p.MemPath, VMMVersion: "v"})
	require.NoError(t, err)
	require.Len(t, r.disks, 1)
	require.NotNil(t, r.entropy)
	assert.Equal(t, []Disk{{Path: swapped, ReadOnly: true, RateLimit: limit}}, r.Config().Disks)
	rdone := runAsync(r)
	r.Resume()
	require.Eventually(t, func() bool { return counter(t, r) > c1 }, 10*time.Second, time.Millisecond)
	stop(t, r, rdone)

	require.NoError(t, os.Rename(swapped, swapped+".moved"))
	_, err = Restore(RestoreParams{StatePath: p.StatePath, MemPath: p.MemPath, VMMVersion: "v"})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "swapped.img")
	_, err = Restore(RestoreParams{StatePath: p.StatePath, MemPath: p.MemPath, VMMVersion: "v",
		NetworkOverrides: map[string]string{"eth0": "tap9"}})
	assert.ErrorIs(t, err, ErrSnapshotState, "an override for an interface the snapshot lacks")
	_, err = Restore(RestoreParams{StatePath: p.StatePath, MemPath: p.MemPath, VMMVersion: "v",
		VsockUDSPath: filepath.Join(dir, "v.sock")})
	assert.ErrorIs(t, err, ErrSnapshotState, "a vsock override for a snapshot without vsock")
}

// A VM with a vsock device is snapshotted and restored: the clone
// listens on the snapshot's socket, or on its vsock_override while
// another VM holds that one.
func TestSnapshotWithVsock(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "v.sock")
	m, done, dir := startCounter(t, Config{Memory: 64 << 20, Vsock: &Vsock{GuestCID: 7, UDSPath: sock}})
	m.Pause()
	p := SnapshotParams{StatePath: filepath.Join(dir, "vm.snap"), MemPath: filepath.Join(dir, "vm.mem"), VMMVersion: "v"}
	_, err := m.Snapshot(p)
	require.NoError(t, err)
	m.Resume()
	c1 := counter(t, m)

	// The original still holds its socket: a clone needs another.
	_, err = Restore(RestoreParams{StatePath: p.StatePath, MemPath: p.MemPath, VMMVersion: "v"})
	require.Error(t, err)
	assert.Contains(t, err.Error(), sock)
	other := filepath.Join(dir, "clone.sock")
	r, err := Restore(RestoreParams{StatePath: p.StatePath, MemPath: p.MemPath, VMMVersion: "v", VsockUDSPath: other})
	require.NoError(t, err)
	require.NotNil(t, r.vsock)
	assert.Equal(t, other, r.vsock.Path())
	assert.Equal(t, uint64(7), r.vsock.GuestCID())
	_, err = os.Stat(other)
	require.NoError(t, err, "the clone listens on its override")
	rdone := runAsync(r)
	r.Resume()
	require.Eventually(t, func() bool { return counter(t, r) > c1 }, 10*time.Second, time.Millisecond)
	stop(t, r, rdone)
	stop(t, m, done)

	// With the original gone, the snapshot's own socket is free again.
	r2, err := Restore(RestoreParams{StatePath: p.StatePath, MemPath: p.MemPath, VMMVersion: "v"})
	require.NoError(t, err)
	assert.Equal(t, sock, r2.vsock.Path())
	require.NoError(t, r2.Close())
}

// BenchmarkRestore measures a restore of the counting guest, from the
// call to the guest's first instruction (Restore, Run, Resume, first
// KVM_RUN), 64 MiB of RAM, one vCPU.
func BenchmarkRestore(b *testing.B) {
	if _, err := os.Stat("/dev/kvm"); err != nil {
		b.Skip("no /dev/kvm")
	}
	dir := b.TempDir()
	kernel := filepath.Join(dir, "counter.elf")
	if err := os.WriteFile(kernel, testguest.ELF(counterGuest), 0o644); err != nil {
		b.Fatal(err)
	}
	m, err := New(Config{Kernel: kernel, Memory: 64 << 20})
	if err != nil {
		b.Fatal(err)
	}
	m.Pause()
	p := SnapshotParams{StatePath: filepath.Join(dir, "vm.snap"), MemPath: filepath.Join(dir, "vm.mem"), VMMVersion: "b"}
	if _, err := m.Snapshot(p); err != nil {
		b.Fatal(err)
	}
	if err := m.Close(); err != nil {
		b.Fatal(err)
	}
	var total time.Duration
	for b.Loop() {
		start := time.Now()
		r, err := Restore(RestoreParams{StatePath: p.StatePath, MemPath: p.MemPath, VMMVersion: "b"})
		if err != nil {
			b.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { _, err := r.Run(); done <- err }()
		r.Resume()
		for r.FirstRun().IsZero() {
			time.Sleep(10 * time.Microsecond)
		}
		total += r.FirstRun().Sub(start)
		r.Stop()
		<-done
		if err := r.Close(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(total.Microseconds())/float64(b.N)/1000, "ms-to-first-instruction")
}

// Pause and Resume in quick succession, with the vCPUs in the guest,
// never lose a pause: each Pause returns with every vCPU parked and the
// counter still. (A Resume racing the next Pause once cleared the
// Pause's immediate_exit, and a vCPU ran on in the guest.)
func TestPauseResumeRepeatedly(t *testing.T) {
	skipWithoutKVM(t)
	dir := t.TempDir()
	kernel := filepath.Join(dir, "counter.elf")
	require.NoError(t, os.WriteFile(kernel, testguest.ELF(counterGuest), 0o644))
	m, err := New(Config{Kernel: kernel, Memory: 64 << 20, CPUs: 4})
	require.NoError(t, err)
	done := runAsync(m)
	for range 200 {
		paused := make(chan struct{})
		go func() { m.Pause(); close(paused) }()
		select {
		case <-paused:
		case <-time.After(10 * time.Second):
			t.Fatal("Pause did not return: a vCPU stayed in the guest")
		}
		require.True(t, m.Paused())
		c := counter(t, m)
		_, err := m.saveState("x")
		require.NoError(t, err)
		require.Equal(t, c, counter(t, m))
		m.Resume()
	}
	stop(t, m, done)
}

// A VM with a balloon is snapshotted and restored with its target.
func TestSnapshotWithBalloon(t *testing.T) {
	m, done, dir := startCounter(t, Config{Memory: 64 << 20, Balloon: &Balloon{AmountMiB: 16, StatsInterval: time.Second}})
	m.balloon.SetTarget(1234)
	m.Pause()
	p := SnapshotParams{StatePath: filepath.Join(dir, "vm.snap"), MemPath: filepath.Join(dir, "vm.mem"), VMMVersion: "v"}
	_, err := m.Snapshot(p)
	require.NoError(t, err)
	stop(t, m, done)

	r, err := Restore(RestoreParams{StatePath: p.StatePath, MemPath: p.MemPath, VMMVersion: "v"})
	require.NoError(t, err)
	require.NotNil(t, r.balloon)
	assert.Equal(t, uint32(1234), r.balloon.Target(), "the target set after boot")
	assert.Equal(t, time.Second, r.balloon.StatsInterval())
	require.NoError(t, r.Close())
}

// A VM on the virtio-pci transport is snapshotted and restored: the
// functions' configuration spaces (as the guest's driver would have
// programmed them: memory decoding and bus mastering on, MSI-X enabled)
// come back in the same slots, and the restored guest runs on.
func TestSnapshotWithVirtioPCI(t *testing.T) {
	skipWithoutKVM(t)
	dir := t.TempDir()
	disk := filepath.Join(dir, "disk.img")
	require.NoError(t, os.WriteFile(disk, make([]byte, 1<<20), 0o644))
	m, done, cdir := startCounter(t, Config{Memory: 64 << 20, Transport: TransportPCI,
		Disks: []Disk{{Path: disk}}, Entropy: &Entropy{}})
	require.Len(t, m.pciTransports, 2)
	for slot := uint8(1); slot <= 2; slot++ {
		m.pci.bus.ConfigWrite(0, slot, 0, pcibus.RegCommand, []byte{byte(pcibus.CommandMemory | pcibus.CommandBusMaster), 0})
		msix := msixCap(t, m.pciTransports[slot-1].Config().Bytes())
		m.pci.bus.ConfigWrite(0, slot, 0, msix+2, []byte{0, 0x80})
	}
	m.Pause()
	p := SnapshotParams{StatePath: filepath.Join(cdir, "vm.snap"), MemPath: filepath.Join(cdir, "vm.mem"), VMMVersion: "v"}
	_, err := m.Snapshot(p)
	require.NoError(t, err)
	c1 := counter(t, m)
	var before [][]byte
	for _, tr := range m.pciTransports {
		before = append(before, tr.Config().Bytes())
	}
	stop(t, m, done)

	r, err := Restore(RestoreParams{StatePath: p.StatePath, MemPath: p.MemPath, VMMVersion: "v"})
	require.NoError(t, err)
	assert.Equal(t, TransportPCI, r.Config().Transport)
	require.Len(t, r.pciTransports, 2)
	for i, tr := range r.pciTransports {
		assert.Equal(t, before[i], tr.Config().Bytes(), "function %d's configuration space", i+1)
	}
	rdone := runAsync(r)
	r.Resume()
	require.Eventually(t, func() bool { return counter(t, r) > c1 }, 10*time.Second, time.Millisecond)
	stop(t, r, rdone)
}

// msixCap finds the MSI-X capability in a configuration space.
func msixCap(t *testing.T, cfg []byte) uint16 {
	t.Helper()
	for p := uint16(cfg[pcibus.RegCapPointer]); p != 0; p = uint16(cfg[p+1]) {
		if cfg[p] == pcibus.CapMSIX {
			return p
		}
	}
	t.Fatal("no MSI-X capability")
	return 0
}
