package api

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vmm-dev/vmm/devices/ratelimit"
	"github.com/vmm-dev/vmm/machine"
)

func TestParseRequest(t *testing.T) {
	u8 := func(v uint8) *uint8 { return &v }
	for _, tc := range []struct {
		name, method, path, body string
		want                     Request
		err                      string // substring of the fault message
	}{
		{"instance info", "GET", "/", "", GetInstanceInfo{}, ""},
		{"version", "GET", "/version", "", GetVersion{}, ""},
		{"get machine config", "GET", "/machine-config", "", GetMachineConfig{}, ""},
		{"vm config", "GET", "/vm/config", "", GetVMConfig{}, ""},
		{"GET with body", "GET", "/", "{}", nil, "GET request cannot have a body."},
		{"empty PUT", "PUT", "/machine-config", "", nil, "Empty PUT request."},
		{"empty PATCH", "PATCH", "/machine-config", "", nil, "Empty PATCH request."},
		{"unknown path", "GET", "/nope", "", nil, "Invalid request method and/or path: GET /nope."},
		{"unknown method", "DELETE", "/drives/a", "", nil, "Invalid request method and/or path: DELETE /drives/a."},
		{"too deep", "PUT", "/drives/a/b", `{}`, nil, "Invalid request method and/or path"},
		{"machine config", "PUT", "/machine-config", `{"vcpu_count": 2, "mem_size_mib": 256, "smt": true}`,
			PutMachineConfig{MachineConfig{VCPUCount: 2, MemSizeMiB: 256, SMT: true}}, ""},
		{"machine config missing mem", "PUT", "/machine-config", `{"vcpu_count": 2}`, nil, "missing field `mem_size_mib`"},
		{"machine config wrong type", "PUT", "/machine-config", `{"vcpu_count": "2", "mem_size_mib": 256}`, nil, "deserializing the json body"},
		{"machine config vcpus over u8", "PUT", "/machine-config", `{"vcpu_count": 256, "mem_size_mib": 256}`, nil, "deserializing"},
		{"machine config unknown field", "PUT", "/machine-config", `{"vcpu_count": 1, "mem_size_mib": 256, "cpus": 1}`, nil, `unknown field "cpus"`},
		{"machine config trailing", "PUT", "/machine-config", `{"vcpu_count": 1, "mem_size_mib": 256} {}`, nil, "trailing data"},
		{"machine config not json", "PUT", "/machine-config", `vcpu_count=1`, nil, "deserializing"},
		{"patch machine config", "PATCH", "/machine-config", `{"vcpu_count": 4}`, PatchMachineConfig{MachineConfigUpdate{VCPUCount: u8(4)}}, ""},
		{"patch machine config empty", "PATCH", "/machine-config", `{}`, nil, "Empty PATCH request."},
		{"boot source", "PUT", "/boot-source", `{"kernel_image_path": "/k"}`, PutBootSource{BootSource{KernelImagePath: "/k"}}, ""},
		{"drive", "PUT", "/drives/rootfs", `{"drive_id": "rootfs", "path_on_host": "/d", "is_root_device": true, "is_read_only": false}`,
			PutDrive{Drive{DriveID: "rootfs", PathOnHost: "/d", IsRootDevice: true, CacheType: "Unsafe", IOEngine: "Sync"}}, ""},
		{"drive id mismatch", "PUT", "/drives/a", `{"drive_id": "b", "path_on_host": "/d", "is_root_device": false}`, nil, msgIDMismatch},
		{"drive empty id", "PUT", "/drives/", `{"drive_id": "", "path_on_host": "/d", "is_root_device": false}`, nil, msgEmptyID},
		{"drive bad id", "PUT", "/drives/a-b", `{"drive_id": "a-b", "path_on_host": "/d", "is_root_device": false}`, nil, msgInvalidID},
		{"drive missing root flag", "PUT", "/drives/a", `{"drive_id": "a", "path_on_host": "/d"}`, nil, "missing field `is_root_device`"},
		{"drive bad cache", "PUT", "/drives/a", `{"drive_id": "a", "path_on_host": "/d", "is_root_device": false, "cache_type": "Fast"}`, nil, "unknown variant `Fast`"},
		{"drive unlimited limiter", "PUT", "/drives/a", `{"drive_id": "a", "path_on_host": "/d", "is_root_device": false, "rate_limiter": {"bandwidth": {"size": 0, "refill_time": 100}}}`,
			PutDrive{Drive{DriveID: "a", PathOnHost: "/d", CacheType: "Unsafe", IOEngine: "Sync",
				RateLimiter: &RateLimiter{Bandwidth: &TokenBucket{Size: new(uint64), RefillTime: ptr(uint64(100))}}}}, ""},
		{"drive limiting limiter", "PUT", "/drives/a", `{"drive_id": "a", "path_on_host": "/d", "is_root_device": false, "rate_limiter": {"ops": {"size": 100, "refill_time": 1000, "one_time_burst": 5}}}`,
			PutDrive{Drive{DriveID: "a", PathOnHost: "/d", CacheType: "Unsafe", IOEngine: "Sync",
				RateLimiter: &RateLimiter{Ops: &TokenBucket{Size: ptr(uint64(100)), RefillTime: ptr(uint64(1000)), OneTimeBurst: ptr(uint64(5))}}}}, ""},
		{"drive limiter too big", "PUT", "/drives/a", `{"drive_id": "a", "path_on_host": "/d", "is_root_device": false, "rate_limiter": {"bandwidth": {"size": 18446744073709551615, "refill_time": 1000}}}`, nil, "rate_limiter: invalid rate limiter"},
		{"patch drive limiter", "PATCH", "/drives/a", `{"drive_id": "a", "rate_limiter": {"bandwidth": {"size": 1048576, "refill_time": 1000}}}`,
			PatchDrive{DriveUpdate{DriveID: "a", RateLimiter: &RateLimiter{Bandwidth: &TokenBucket{Size: ptr(uint64(1 << 20)), RefillTime: ptr(uint64(1000))}}}}, ""},
		{"patch drive limiter missing refill", "PATCH", "/drives/a", `{"drive_id": "a", "rate_limiter": {"bandwidth": {"size": 1048576}}}`, nil, "missing field `refill_time`"},
		{"drive limiter missing size", "PUT", "/drives/a", `{"drive_id": "a", "path_on_host": "/d", "is_root_device": false, "rate_limiter": {"ops": {"refill_time": 1000}}}`, nil, "missing field `size`"},
		{"patch drive", "PATCH", "/drives/a", `{"drive_id": "a", "path_on_host": "/e"}`, PatchDrive{DriveUpdate{DriveID: "a", PathOnHost: ptr("/e")}}, ""},
		{"patch drive other field", "PATCH", "/drives/a", `{"drive_id": "a", "is_read_only": true}`, nil, `unknown field "is_read_only"`},
		{"net", "PUT", "/network-interfaces/eth0", `{"iface_id": "eth0", "host_dev_name": "tap0", "guest_mac": "06:00:AC:10:00:02"}`,
			PutNetworkInterface{NetworkInterface{IfaceID: "eth0", HostDevName: "tap0", GuestMAC: "06:00:AC:10:00:02"}}, ""},
		{"net id mismatch", "PUT", "/network-interfaces/eth0", `{"iface_id": "eth1", "host_dev_name": "tap0"}`, nil, msgIDMismatch},
		{"net no tap", "PUT", "/network-interfaces/eth0", `{"iface_id": "eth0"}`, nil, "missing field `host_dev_name`"},
		{"net limiter", "PUT", "/network-interfaces/eth0", `{"iface_id": "eth0", "host_dev_name": "tap0", "tx_rate_limiter": {"bandwidth": {"size": 1000, "refill_time": 10}}}`,
			PutNetworkInterface{NetworkInterface{IfaceID: "eth0", HostDevName: "tap0",
				TxRateLimiter: &RateLimiter{Bandwidth: &TokenBucket{Size: ptr(uint64(1000)), RefillTime: ptr(uint64(10))}}}}, ""},
		{"net limiter too big", "PUT", "/network-interfaces/eth0", `{"iface_id": "eth0", "host_dev_name": "tap0", "rx_rate_limiter": {"ops": {"size": 1, "refill_time": 10, "one_time_burst": 18446744073709551615}}}`, nil, "rx_rate_limiter: invalid rate limiter"},
		{"logger", "PUT", "/logger", `{"log_path": "/l", "level": "debug", "show_level": true}`, PutLogger{Logger{LogPath: ptr("/l"), Level: ptr("debug"), ShowLevel: ptr(true)}}, ""},
		{"logger bad level", "PUT", "/logger", `{"level": "loud"}`, nil, "Invalid value for logger level"},
		{"metrics", "PUT", "/metrics", `{"metrics_path": "/m"}`, PutMetrics{Metrics{MetricsPath: "/m"}}, ""},
		{"metrics missing path", "PUT", "/metrics", `{}`, nil, "missing field `metrics_path`"},
		{"start", "PUT", "/actions", `{"action_type": "InstanceStart"}`, InstanceStart{}, ""},
		{"flush", "PUT", "/actions", `{"action_type": "FlushMetrics"}`, FlushMetrics{}, ""},
		{"ctrl-alt-del", "PUT", "/actions", `{"action_type": "SendCtrlAltDel"}`, SendCtrlAltDel{}, ""},
		{"unknown action", "PUT", "/actions", `{"action_type": "Reboot"}`, nil, "unknown variant `Reboot`"},
		{"action wrong type", "PUT", "/actions", `{"action_type": 1}`, nil, "deserializing"},
		{"vsock", "PUT", "/vsock", `{"guest_cid": 3, "uds_path": "/v"}`, PutVsock{Vsock{GuestCID: 3, UDSPath: "/v"}}, ""},
		{"vsock with old id", "PUT", "/vsock", `{"vsock_id": "vsock0", "guest_cid": 52, "uds_path": "/v"}`, PutVsock{Vsock{VsockID: "vsock0", GuestCID: 52, UDSPath: "/v"}}, ""},
		{"vsock no cid", "PUT", "/vsock", `{"uds_path": "/v"}`, nil, "missing field `guest_cid`"},
		{"vsock no path", "PUT", "/vsock", `{"guest_cid": 3}`, nil, "missing field `uds_path`"},
		{"vsock cid too big", "PUT", "/vsock", `{"guest_cid": 4294967296, "uds_path": "/v"}`, nil, "deserializing"},
		{"vsock unknown field", "PUT", "/vsock", `{"guest_cid": 3, "uds_path": "/v", "port": 1}`, nil, `unknown field "port"`},
		{"entropy", "PUT", "/entropy", `{}`, PutEntropy{}, ""},
		{"entropy limited", "PUT", "/entropy", `{"rate_limiter": {"bandwidth": {"size": 1024, "refill_time": 100}}}`,
			PutEntropy{Entropy{RateLimiter: &RateLimiter{Bandwidth: &TokenBucket{Size: ptr(uint64(1024)), RefillTime: ptr(uint64(100))}}}}, ""},
		{"entropy unknown field", "PUT", "/entropy", `{"rate": 1}`, nil, `unknown field "rate"`},
		{"entropy with id", "PUT", "/entropy/x", `{}`, nil, "Invalid request method and/or path"},
		{"balloon stats", "GET", "/balloon/statistics", "", GetBalloonStats{}, ""},
		{"balloon get", "GET", "/balloon", "", GetBalloon{}, ""},
		{"balloon put", "PUT", "/balloon", `{"amount_mib": 64, "deflate_on_oom": true, "stats_polling_interval_s": 1}`,
			PutBalloon{Balloon{AmountMiB: 64, DeflateOnOOM: true, StatsPollingIntervalS: 1}}, ""},
		{"balloon put minimal", "PUT", "/balloon", `{"amount_mib": 0, "deflate_on_oom": false}`, PutBalloon{Balloon{}}, ""},
		{"balloon put no amount", "PUT", "/balloon", `{"deflate_on_oom": false}`, nil, "missing field `amount_mib`"},
		{"balloon put no oom", "PUT", "/balloon", `{"amount_mib": 1}`, nil, "missing field `deflate_on_oom`"},
		{"balloon patch", "PATCH", "/balloon", `{"amount_mib": 256}`, PatchBalloon{BalloonUpdate{AmountMiB: 256}}, ""},
		{"balloon patch other field", "PATCH", "/balloon", `{"amount_mib": 256, "deflate_on_oom": true}`, nil, `unknown field "deflate_on_oom"`},
		{"balloon patch stats", "PATCH", "/balloon/statistics", `{"stats_polling_interval_s": 5}`, PatchBalloonStats{BalloonStatsUpdate{StatsPollingIntervalS: 5}}, ""},
		{"balloon bad path", "GET", "/balloon/other", "", nil, "Invalid request method and/or path"},
		{"balloon put with id", "PUT", "/balloon/statistics", `{"amount_mib": 1, "deflate_on_oom": false}`, nil, "Invalid request method and/or path"},
		{"pause", "PATCH", "/vm", `{"state": "Paused"}`, PatchVM{VMState{"Paused"}}, ""},
		{"resume", "PATCH", "/vm", `{"state": "Resumed"}`, PatchVM{VMState{"Resumed"}}, ""},
		{"bad vm state", "PATCH", "/vm", `{"state": "Running"}`, nil, "unknown variant `Running`"},
		{"vm with id", "PATCH", "/vm/x", `{"state": "Paused"}`, nil, "Invalid request method and/or path"},
		{"snapshot create", "PUT", "/snapshot/create", `{"snapshot_path": "/s", "mem_file_path": "/m", "snapshot_type": "Diff"}`,
			SnapshotCreate{SnapshotCreateParams{SnapshotPath: "/s", MemFilePath: "/m", SnapshotType: "Diff"}}, ""},
		{"snapshot create no path", "PUT", "/snapshot/create", `{"mem_file_path": "/m"}`, nil, "missing field `snapshot_path`"},
		{"snapshot create no mem", "PUT", "/snapshot/create", `{"snapshot_path": "/s"}`, nil, "missing field `mem_file_path`"},
		{"snapshot create bad type", "PUT", "/snapshot/create", `{"snapshot_path": "/s", "mem_file_path": "/m", "snapshot_type": "Half"}`, nil, "unknown variant `Half`"},
		{"snapshot load", "PUT", "/snapshot/load", `{"snapshot_path": "/s", "mem_backend": {"backend_type": "File", "backend_path": "/m"}, "resume_vm": true, "track_dirty_pages": true}`,
			SnapshotLoad{SnapshotLoadParams{SnapshotPath: "/s", MemBackend: &MemoryBackend{"File", "/m"}, ResumeVM: true, TrackDirtyPages: true}}, ""},
		{"snapshot load old mem path", "PUT", "/snapshot/load", `{"snapshot_path": "/s", "mem_file_path": "/m"}`,
			SnapshotLoad{SnapshotLoadParams{SnapshotPath: "/s", MemBackend: &MemoryBackend{"File", "/m"}}}, ""},
		{"snapshot load both mems", "PUT", "/snapshot/load", `{"snapshot_path": "/s", "mem_file_path": "/m", "mem_backend": {"backend_type": "File", "backend_path": "/m"}}`, nil, "Only one of"},
		{"snapshot load no mem", "PUT", "/snapshot/load", `{"snapshot_path": "/s"}`, nil, "One of mem_file_path or mem_backend"},
		{"snapshot load uffd", "PUT", "/snapshot/load", `{"snapshot_path": "/s", "mem_backend": {"backend_type": "Uffd", "backend_path": "/u"}}`, nil, "Uffd is not supported"},
		{"snapshot load overrides", "PUT", "/snapshot/load", `{"snapshot_path": "/s", "mem_file_path": "/m", "network_overrides": [{"iface_id": "eth0", "host_dev_name": "tap1"}], "vsock_override": {"uds_path": "/v"}}`,
			SnapshotLoad{SnapshotLoadParams{SnapshotPath: "/s", MemBackend: &MemoryBackend{"File", "/m"},
				NetworkOverrides: []NetworkOverride{{"eth0", "tap1"}}, VsockOverride: &VsockOverride{"/v"}}}, ""},
		{"snapshot other", "PUT", "/snapshot/other", `{}`, nil, "Invalid request method and/or path"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var body []byte
			if tc.body != "" {
				body = []byte(tc.body)
			}
			got, err := ParseRequest(tc.method, tc.path, body)
			if tc.err != "" {
				require.Error(t, err)
				assert.True(t, errors.Is(err, ErrBadRequest), "a client error: %v", err)
				assert.Contains(t, err.Error(), tc.err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
		})
	}
}

func ptr[T any](v T) *T { return &v }

func TestMachineConfigValidation(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  MachineConfig
		err  string
	}{
		{"default", MachineConfig{VCPUCount: 1, MemSizeMiB: 128}, ""},
		{"zero vcpus", MachineConfig{VCPUCount: 0, MemSizeMiB: 128}, "number of vCPUs"},
		{"33 vcpus", MachineConfig{VCPUCount: 33, MemSizeMiB: 128}, "number of vCPUs"},
		{"32 vcpus", MachineConfig{VCPUCount: 32, MemSizeMiB: 128}, ""},
		{"smt odd", MachineConfig{VCPUCount: 3, MemSizeMiB: 128, SMT: true}, "1 or an even number"},
		{"smt even", MachineConfig{VCPUCount: 4, MemSizeMiB: 128, SMT: true}, ""},
		{"smt one", MachineConfig{VCPUCount: 1, MemSizeMiB: 128, SMT: true}, ""},
		{"zero memory", MachineConfig{VCPUCount: 1, MemSizeMiB: 0}, "memory size (MiB) is either 0"},
		{"tiny memory", MachineConfig{VCPUCount: 1, MemSizeMiB: 8}, "vmm supports 16 MiB"},
		{"huge pages 2M", MachineConfig{VCPUCount: 1, MemSizeMiB: 128, HugePages: "2M"}, "not supported yet"},
		{"huge pages bad", MachineConfig{VCPUCount: 1, MemSizeMiB: 128, HugePages: "1G"}, "unknown variant `1G`"},
		{"cpu template", MachineConfig{VCPUCount: 1, MemSizeMiB: 128, CPUTemplate: "T2"}, "CPU templates"},
		{"dirty pages", MachineConfig{VCPUCount: 1, MemSizeMiB: 128, TrackDirtyPages: true}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := NewVMResources()
			before := r.Machine
			err := r.SetMachineConfig(tc.cfg)
			if tc.err != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tc.err)
				assert.Equal(t, before, r.Machine, "unchanged on error")
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.cfg.VCPUCount, r.Machine.VCPUCount)
			assert.Equal(t, "None", r.Machine.HugePages)
		})
	}
	// PATCH checks the combination with what is already set.
	r := NewVMResources()
	require.NoError(t, r.SetMachineConfig(MachineConfig{VCPUCount: 3, MemSizeMiB: 128}))
	assert.ErrorContains(t, r.UpdateMachineConfig(MachineConfigUpdate{SMT: ptr(true)}), "1 or an even number")
	require.NoError(t, r.UpdateMachineConfig(MachineConfigUpdate{MemSizeMiB: ptr(uint64(256))}))
	assert.Equal(t, MachineConfig{VCPUCount: 3, MemSizeMiB: 256, HugePages: "None"}, r.Machine)
}

func tempFile(t *testing.T, name string, size int) string {
	t.Helper()
	p := t.TempDir() + "/" + name
	require.NoError(t, writeFile(p, size))
	return p
}

func TestDrivesAndCommandLine(t *testing.T) {
	a, b, root := tempFile(t, "a.img", 4096), tempFile(t, "b.img", 4096), tempFile(t, "root.img", 4096)
	kernel := tempFile(t, "vmlinux", 64)
	r := NewVMResources()
	require.NoError(t, r.SetBootSource(BootSource{KernelImagePath: kernel, BootArgs: ptr("console=ttyS0")}))
	require.NoError(t, r.InsertDrive(Drive{DriveID: "a", PathOnHost: a}))
	require.NoError(t, r.InsertDrive(Drive{DriveID: "b", PathOnHost: b, IsReadOnly: true}))
	require.NoError(t, r.InsertDrive(Drive{DriveID: "root", PathOnHost: root, IsRootDevice: true, IsReadOnly: true}))
	assert.ErrorContains(t, r.InsertDrive(Drive{DriveID: "c", PathOnHost: a, IsRootDevice: true}), "A root block device already exists!")
	assert.ErrorContains(t, r.InsertDrive(Drive{DriveID: "d", PathOnHost: "/nonexistent/d.img"}), "no such file")

	cfg, err := r.MachineConfig()
	require.NoError(t, err)
	require.Len(t, cfg.Disks, 3)
	assert.Equal(t, root, cfg.Disks[0].Path, "the root drive is /dev/vda")
	assert.True(t, cfg.Disks[0].ReadOnly)
	assert.Equal(t, a, cfg.Disks[1].Path)
	assert.Equal(t, b, cfg.Disks[2].Path)
	assert.Equal(t, "console=ttyS0 root=/dev/vda ro", cfg.Cmdline)
	assert.Equal(t, 1, cfg.CPUs)
	assert.Equal(t, uint64(128<<20), cfg.Memory)

	// Replacing a drive keeps its place; a partuuid names the root.
	require.NoError(t, r.InsertDrive(Drive{DriveID: "root", PathOnHost: root, IsRootDevice: true, PartUUID: "1234-01"}))
	cfg, err = r.MachineConfig()
	require.NoError(t, err)
	assert.Equal(t, "console=ttyS0 root=PARTUUID=1234-01 rw", cfg.Cmdline)
	assert.Len(t, cfg.Disks, 3)

	// A drive that becomes root moves to the front.
	r2 := NewVMResources()
	require.NoError(t, r2.SetBootSource(BootSource{KernelImagePath: kernel}))
	require.NoError(t, r2.InsertDrive(Drive{DriveID: "a", PathOnHost: a}))
	require.NoError(t, r2.InsertDrive(Drive{DriveID: "b", PathOnHost: b}))
	require.NoError(t, r2.InsertDrive(Drive{DriveID: "b", PathOnHost: b, IsRootDevice: true}))
	cfg, err = r2.MachineConfig()
	require.NoError(t, err)
	assert.Equal(t, b, cfg.Disks[0].Path)
	assert.Equal(t, DefaultBootArgs+" root=/dev/vda rw", cfg.Cmdline, "Firecracker's default boot args")
}

// --enable-pci: the devices go on virtio-pci, Firecracker's default
// command line loses its pci=off, and a client's boot_args that still
// say pci=off are refused, since they would hide every device.
func TestEnablePCI(t *testing.T) {
	kernel := tempFile(t, "vmlinux", 64)
	r := NewVMResources()
	r.PCI = true
	require.NoError(t, r.SetBootSource(BootSource{KernelImagePath: kernel}))
	cfg, err := r.MachineConfig()
	require.NoError(t, err)
	assert.Equal(t, machine.TransportPCI, cfg.Transport)
	assert.NotContains(t, strings.Fields(cfg.Cmdline), "pci=off")
	assert.Contains(t, cfg.Cmdline, "reboot=k panic=1 nomodule")

	require.NoError(t, r.SetBootSource(BootSource{KernelImagePath: kernel, BootArgs: ptr("console=ttyS0 pci=off")}))
	_, err = r.MachineConfig()
	assert.ErrorContains(t, err, "pci=off")

	r.PCI = false
	cfg, err = r.MachineConfig()
	require.NoError(t, err)
	assert.Equal(t, machine.Transport(""), cfg.Transport, "virtio-mmio, the default")
	assert.Equal(t, "console=ttyS0 pci=off", cfg.Cmdline)
}

func TestBootSourceOpensFiles(t *testing.T) {
	r := NewVMResources()
	err := r.SetBootSource(BootSource{KernelImagePath: "/nonexistent/vmlinux"})
	assert.ErrorContains(t, err, "The kernel file cannot be opened")
	kernel := tempFile(t, "vmlinux", 64)
	err = r.SetBootSource(BootSource{KernelImagePath: kernel, InitrdPath: ptr("/nonexistent/initrd")})
	assert.ErrorContains(t, err, "The initrd file cannot be opened")
	assert.Nil(t, r.Boot)
	_, err = r.MachineConfig()
	assert.ErrorContains(t, err, "without kernel configuration")
}

func TestNetworkInterfaces(t *testing.T) {
	r := NewVMResources()
	require.NoError(t, r.InsertNetworkInterface(NetworkInterface{IfaceID: "eth0", HostDevName: "tap0", GuestMAC: "06:00:ac:10:00:02"}))
	assert.ErrorContains(t, r.InsertNetworkInterface(NetworkInterface{IfaceID: "eth1", HostDevName: "tap0"}), "The host device name tap0 is already in use.")
	assert.ErrorContains(t, r.InsertNetworkInterface(NetworkInterface{IfaceID: "eth1", HostDevName: "tap1", GuestMAC: "06:00:AC:10:00:02"}), "The MAC address is already in use")
	assert.ErrorContains(t, r.InsertNetworkInterface(NetworkInterface{IfaceID: "eth1", HostDevName: "tap1", GuestMAC: "01:00:00:00:00:01"}), "multicast")
	assert.ErrorContains(t, r.InsertNetworkInterface(NetworkInterface{IfaceID: "eth1", HostDevName: "tap1", GuestMAC: "nope"}), "invalid MAC")
	assert.ErrorContains(t, r.InsertNetworkInterface(NetworkInterface{IfaceID: "eth1", HostDevName: strings.Repeat("t", 16)}), "1 to 15 characters")
	require.NoError(t, r.InsertNetworkInterface(NetworkInterface{IfaceID: "eth0", HostDevName: "tap9"}), "replace by ID")
	assert.Len(t, r.NICs, 1)
}

func TestLimiterConfigAndPatch(t *testing.T) {
	bucket := func(size, refill, burst uint64) *TokenBucket {
		return &TokenBucket{Size: ptr(size), RefillTime: ptr(refill), OneTimeBurst: ptr(burst)}
	}
	old := &RateLimiter{Bandwidth: bucket(1000, 100, 5), Ops: bucket(10, 1000, 0)}
	for _, tc := range []struct {
		name  string
		patch *RateLimiter
		want  ratelimit.Config
	}{
		{"no patch keeps both", nil, ratelimit.Config{
			Bandwidth: ratelimit.Bucket{Size: 1000, RefillTime: 100 * time.Millisecond, OneTimeBurst: 5},
			Ops:       ratelimit.Bucket{Size: 10, RefillTime: time.Second}}},
		{"bandwidth replaced, ops kept", &RateLimiter{Bandwidth: bucket(1, 2, 0)}, ratelimit.Config{
			Bandwidth: ratelimit.Bucket{Size: 1, RefillTime: 2 * time.Millisecond},
			Ops:       ratelimit.Bucket{Size: 10, RefillTime: time.Second}}},
		{"size 0 turns a bucket off", &RateLimiter{Ops: bucket(0, 0, 0)}, ratelimit.Config{
			Bandwidth: ratelimit.Bucket{Size: 1000, RefillTime: 100 * time.Millisecond, OneTimeBurst: 5}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := limiterConfig(patchLimiter(old, tc.patch))
			assert.Equal(t, tc.want.Bandwidth, got.Bandwidth)
			assert.Equal(t, tc.want.Ops.Unlimited(), got.Ops.Unlimited())
			if !tc.want.Ops.Unlimited() {
				assert.Equal(t, tc.want.Ops, got.Ops)
			}
		})
	}
	assert.True(t, limiterConfig(nil).Unlimited())
	assert.True(t, limiterConfig(patchLimiter(nil, &RateLimiter{Ops: bucket(0, 5, 0)})).Unlimited())
	huge := limiterConfig(&RateLimiter{Ops: bucket(1, 1<<63, 0)})
	assert.Positive(t, huge.Ops.RefillTime, "a refill time past a Duration saturates")
}
