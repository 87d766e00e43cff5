package api

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// counterAddr is where counterELF's guest keeps its count (32 MiB).
const counterAddr = 0x200_0000

// counterELF counts in memory forever: inc qword [0x2000000]; jmp back.
func counterELF(t *testing.T) string {
	return codeELF(t, []byte{0x48, 0xff, 0x04, 0x25, 0x00, 0x00, 0x00, 0x02, 0xeb, 0xf6})
}

// memCounter reads the count from a snapshot's memory file.
func memCounter(t *testing.T, path string) uint64 {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	var b [8]byte
	_, err = f.ReadAt(b[:], counterAddr)
	require.NoError(t, err)
	return binary.LittleEndian.Uint64(b[:])
}

// snapshotWhen pauses and snapshots the VM until its count satisfies
// ok (a loaded host may not have run the guest yet), resuming in between;
// it returns the count, with the VM left paused.
func snapshotWhen(t *testing.T, v *apiVM, create, mem string, ok func(uint64) bool) uint64 {
	t.Helper()
	for range 100 {
		time.Sleep(50 * time.Millisecond)
		v.ok("PATCH", "/vm", `{"state":"Paused"}`)
		v.ok("PUT", "/snapshot/create", create)
		if c := memCounter(t, mem); ok(c) {
			return c
		}
		v.ok("PATCH", "/vm", `{"state":"Resumed"}`)
	}
	t.Fatal("the guest never counted far enough")
	return 0
}

// firecracker-go-sdk's snapshot sequence: PATCH /vm Paused, PUT
// /snapshot/create, and in a fresh VMM PUT /snapshot/load with
// resume_vm: the restored guest counts on from the snapshot's count.
func TestSnapshotCreateAndLoad(t *testing.T) {
	needKVM(t)
	dir := t.TempDir()
	snap, mem := filepath.Join(dir, "vm.snap"), filepath.Join(dir, "vm.mem")
	create := fmt.Sprintf(`{"snapshot_path":%q,"mem_file_path":%q,"snapshot_type":"Full"}`, snap, mem)

	v := startServer(t, 0)
	v.fails("PATCH", "/vm", `{"state":"Paused"}`, msgPreBoot)
	v.fails("PUT", "/snapshot/create", create, msgPreBoot)
	v.ok("PUT", "/boot-source", fmt.Sprintf(`{"kernel_image_path":%q}`, counterELF(t)))
	v.ok("PUT", "/machine-config", `{"vcpu_count":1,"mem_size_mib":64,"track_dirty_pages":true}`)
	v.ok("PUT", "/actions", `{"action_type":"InstanceStart"}`)
	v.fails("PUT", "/snapshot/create", create, "running microVM")
	c1 := snapshotWhen(t, v, create, mem, func(c uint64) bool { return c > 0 })
	assert.Equal(t, StatePaused, v.state())
	v.ok("PATCH", "/vm", `{"state":"Resumed"}`)
	assert.Equal(t, StateRunning, v.state())
	v.fails("PUT", "/snapshot/load", fmt.Sprintf(`{"snapshot_path":%q,"mem_file_path":%q}`, snap, mem), "after the microVM started")

	// A fresh VMM: a bad load leaves nothing behind, a good one resumes.
	w := startServer(t, 0)
	load := fmt.Sprintf(`{"snapshot_path":%q,"mem_backend":{"backend_type":"File","backend_path":%q},"resume_vm":true}`, snap, mem)
	w.fails("PUT", "/snapshot/load", fmt.Sprintf(`{"snapshot_path":%q,"mem_file_path":%q}`, filepath.Join(dir, "none"), mem), "Failed to load the snapshot")
	w.fails("PUT", "/snapshot/load", fmt.Sprintf(`{"snapshot_path":%q,"mem_file_path":%q}`, mem, mem), "not a vmm snapshot file")
	w.fails("PUT", "/snapshot/load", fmt.Sprintf(`{"snapshot_path":%q,"mem_file_path":%q,"network_overrides":[{"iface_id":"eth0","host_dev_name":"tap9"}]}`, snap, mem), `network override for "eth0"`)
	assert.Equal(t, StateNotStarted, w.state(), "a failed load leaves no VM")
	w.ok("PUT", "/snapshot/load", load)
	assert.Equal(t, StateRunning, w.state())
	snap2, mem2 := filepath.Join(dir, "vm2.snap"), filepath.Join(dir, "vm2.mem")
	c2 := snapshotWhen(t, w, fmt.Sprintf(`{"snapshot_path":%q,"mem_file_path":%q}`, snap2, mem2), mem2,
		func(c uint64) bool { return c > c1 })
	assert.Greater(t, c2, c1, "the restored guest counted on from %d", c1)
	w.fails("PUT", "/snapshot/create", fmt.Sprintf(`{"snapshot_path":%q,"mem_file_path":%q,"snapshot_type":"Diff"}`, snap2, mem2), "dirty page tracking is off")

	// Configuring a VM first rules a load out, as in Firecracker.
	x := startServer(t, 0)
	x.ok("PUT", "/machine-config", `{"vcpu_count":1,"mem_size_mib":64}`)
	x.fails("PUT", "/snapshot/load", load, "not allowed after configuring boot-specific resources")
}

// A loaded VM's devices are the API's again: GET /vm/config shows the
// drive by its drive_id, and the balloon answers GET and PATCH with the
// target the snapshot had, as a clone's owner reclaims memory with them.
func TestLoadedVMResources(t *testing.T) {
	needKVM(t)
	dir := t.TempDir()
	snap, mem := filepath.Join(dir, "vm.snap"), filepath.Join(dir, "vm.mem")
	disk := filepath.Join(dir, "data.img")
	require.NoError(t, os.WriteFile(disk, make([]byte, 1<<20), 0o644))
	v := startServer(t, 0)
	v.ok("PUT", "/boot-source", fmt.Sprintf(`{"kernel_image_path":%q}`, counterELF(t)))
	v.ok("PUT", "/machine-config", `{"vcpu_count":1,"mem_size_mib":64}`)
	v.ok("PUT", "/drives/data", fmt.Sprintf(`{"drive_id":"data","path_on_host":%q,"is_root_device":false,"is_read_only":true,
		"rate_limiter":{"ops":{"size":100,"refill_time":1000}}}`, disk))
	v.ok("PUT", "/balloon", `{"amount_mib":8,"deflate_on_oom":false}`)
	v.ok("PUT", "/actions", `{"action_type":"InstanceStart"}`)
	v.ok("PATCH", "/balloon", `{"amount_mib":12}`)
	snapshotWhen(t, v, fmt.Sprintf(`{"snapshot_path":%q,"mem_file_path":%q}`, snap, mem), mem, func(c uint64) bool { return c > 0 })

	w := startServer(t, 0)
	w.ok("PUT", "/snapshot/load", fmt.Sprintf(`{"snapshot_path":%q,"mem_backend":{"backend_type":"File","backend_path":%q}}`, snap, mem))
	cfg := w.get("/vm/config")
	assert.Contains(t, cfg, `"drive_id":"data"`)
	assert.Contains(t, cfg, `"ops":{"size":100,"refill_time":1000}`)
	assert.Contains(t, w.get("/balloon"), `"amount_mib":12`)
	w.ok("PATCH", "/balloon", `{"amount_mib":4}`)
	assert.Contains(t, w.get("/balloon"), `"amount_mib":4`)
	w.ok("PATCH", "/drives/data", `{"drive_id":"data","rate_limiter":{"bandwidth":{"size":1000,"refill_time":100}}}`)
	cfg = w.get("/vm/config")
	assert.Contains(t, cfg, `"ops":{"size":100,"refill_time":1000}`, "a PATCH of one bucket keeps the other")
	assert.Contains(t, cfg, `"bandwidth":{"size":1000,"refill_time":100}`)
}
