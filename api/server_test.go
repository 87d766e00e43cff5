package api

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vmm-dev/vmm/devices"
)

// apiVM is a real server on a real unix socket, and a client for it.
type apiVM struct {
	t      *testing.T
	sock   string
	ctl    *Controller
	srv    *Server
	client *http.Client
}

func startServer(t *testing.T, maxPayload int64) *apiVM {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "fc.sock")
	ln, err := Listen(sock)
	require.NoError(t, err)
	ctl := NewController(Options{ID: "test-vm", Version: "1.7.0", AllowEmulated: true})
	srv := NewServer(ctl, ln, maxPayload)
	served := make(chan error, 1)
	go func() { served <- srv.Serve() }()
	v := &apiVM{t: t, sock: sock, ctl: ctl, srv: srv, client: &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		}},
	}}
	t.Cleanup(func() {
		ctl.Stop()
		if st := ctl.State(); st == StateRunning || st == StatePaused {
			select {
			case <-ctl.Done():
			case <-time.After(10 * time.Second):
				t.Error("the VM did not stop")
			}
		}
		require.NoError(t, srv.Close())
		require.NoError(t, <-served)
		_, err := os.Stat(sock)
		assert.True(t, os.IsNotExist(err), "the socket is removed")
	})
	return v
}

// call sends one request and returns the status and body.
func (v *apiVM) call(method, path, body string) (int, string) {
	v.t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, "http://localhost"+path, r)
	require.NoError(v.t, err)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := v.client.Do(req)
	require.NoError(v.t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(v.t, err)
	return resp.StatusCode, string(b)
}

// ok expects a 204 with no body (firecracker-go-sdk fails on a 200).
func (v *apiVM) ok(method, path, body string) {
	v.t.Helper()
	code, got := v.call(method, path, body)
	require.Equal(v.t, http.StatusNoContent, code, "%s %s: %s", method, path, got)
	require.Empty(v.t, got)
}

// fails expects a 400 whose fault_message contains want.
func (v *apiVM) fails(method, path, body, want string) {
	v.t.Helper()
	code, got := v.call(method, path, body)
	require.Equal(v.t, http.StatusBadRequest, code, "%s %s: %s", method, path, got)
	var f Fault
	require.NoError(v.t, json.Unmarshal([]byte(got), &f), "a JSON fault: %s", got)
	assert.Contains(v.t, f.FaultMessage, want)
}

// get expects a 200 and returns its body.
func (v *apiVM) get(path string) string {
	v.t.Helper()
	code, body := v.call("GET", path, "")
	require.Equal(v.t, http.StatusOK, code, "GET %s: %s", path, body)
	return body
}

func (v *apiVM) state() string {
	v.t.Helper()
	code, body := v.call("GET", "/", "")
	require.Equal(v.t, http.StatusOK, code)
	var info InstanceInfo
	require.NoError(v.t, json.Unmarshal([]byte(body), &info))
	assert.Equal(v.t, "test-vm", info.ID)
	assert.Equal(v.t, "Firecracker", info.AppName)
	return info.State
}

func needKVM(t *testing.T) {
	if _, err := os.Stat("/dev/kvm"); err != nil {
		t.Skip("no /dev/kvm")
	}
}

// The request sequence of firecracker-go-sdk's handlers.go, then GET /.
func TestSDKSequenceBootsTheVM(t *testing.T) {
	needKVM(t)
	tap := testTAP(t) // first: its check runs after the VM is gone
	v := startServer(t, 0)
	dir := t.TempDir()
	logPath, metricsPath := filepath.Join(dir, "fc.log"), filepath.Join(dir, "fc.metrics")
	rootfs := tempFile(t, "rootfs.ext4", 1<<20)

	// The SDK polls GET /machine-config until the socket answers.
	code, body := v.call("GET", "/machine-config", "")
	require.Equal(t, http.StatusOK, code)
	assert.JSONEq(t, `{"vcpu_count":1,"mem_size_mib":128,"smt":false,"track_dirty_pages":false,"huge_pages":"None"}`, body)
	v.ok("PUT", "/logger", fmt.Sprintf(`{"log_path":%q,"level":"Debug","show_level":true,"show_log_origin":true}`, logPath))
	v.ok("PUT", "/metrics", fmt.Sprintf(`{"metrics_path":%q}`, metricsPath))
	v.ok("PUT", "/machine-config", `{"vcpu_count":2,"mem_size_mib":64,"smt":false}`)
	v.ok("PUT", "/boot-source", fmt.Sprintf(`{"kernel_image_path":%q,"boot_args":"console=ttyS0 reboot=k panic=1"}`, haltELF(t)))
	v.ok("PUT", "/drives/rootfs", fmt.Sprintf(`{"drive_id":"rootfs","path_on_host":%q,"is_root_device":true,"is_read_only":false}`, rootfs))
	v.ok("PUT", "/entropy", `{"rate_limiter":{"bandwidth":{"size":65536,"refill_time":100}}}`)
	vsockPath := filepath.Join(dir, "v.sock")
	v.ok("PUT", "/vsock", fmt.Sprintf(`{"guest_cid":3,"uds_path":%q}`, vsockPath))
	v.fails("PUT", "/balloon", `{"amount_mib":65,"deflate_on_oom":true}`, "greater than the guest memory")
	v.ok("PUT", "/balloon", `{"amount_mib":16,"deflate_on_oom":true,"stats_polling_interval_s":1}`)
	v.fails("GET", "/balloon/statistics", "", msgPreBoot)
	if tap != "" {
		v.ok("PUT", "/network-interfaces/eth0", fmt.Sprintf(`{"iface_id":"eth0","host_dev_name":%q,"guest_mac":"06:00:AC:10:00:02"}`, tap))
	}
	assert.Equal(t, StateNotStarted, v.state())
	v.ok("PUT", "/actions", `{"action_type":"InstanceStart"}`)
	assert.Equal(t, StateRunning, v.state())

	// After boot: the pre-boot calls are refused with Firecracker's text,
	// the GETs still answer, metrics flush.
	v.fails("PUT", "/actions", `{"action_type":"InstanceStart"}`, msgPostBoot)
	v.fails("PUT", "/entropy", `{}`, msgPostBoot)
	v.fails("PUT", "/machine-config", `{"vcpu_count":1,"mem_size_mib":64}`, msgPostBoot)
	v.fails("PUT", "/drives/rootfs", fmt.Sprintf(`{"drive_id":"rootfs","path_on_host":%q,"is_root_device":true}`, rootfs), msgPostBoot)
	v.fails("PATCH", "/drives/rootfs", `{"drive_id":"rootfs","path_on_host":"/nonexistent/x.img"}`, "no such file")
	swapped := tempFile(t, "rootfs2.ext4", 2<<20)
	v.ok("PATCH", "/drives/rootfs", fmt.Sprintf(`{"drive_id":"rootfs","path_on_host":%q}`, swapped))
	v.ctl.mu.Lock()
	backing, err := v.ctl.m.DiskPath(0)
	v.ctl.mu.Unlock()
	require.NoError(t, err)
	assert.Equal(t, swapped, backing, "the running disk reads the new file")
	code, body = v.call("GET", "/vm/config", "")
	require.Equal(t, http.StatusOK, code)
	assert.Contains(t, body, swapped, "GET /vm/config shows the new path")
	v.fails("PATCH", "/drives/other", `{"drive_id":"other","rate_limiter":{"ops":{"size":1,"refill_time":1}}}`, "no drive")
	v.ok("PATCH", "/drives/rootfs", `{"drive_id":"rootfs","rate_limiter":{"bandwidth":{"size":1048576,"refill_time":1000}}}`)
	v.ok("PATCH", "/drives/rootfs", `{"drive_id":"rootfs","rate_limiter":{"ops":{"size":100,"refill_time":1000}}}`)
	v.ctl.mu.Lock()
	inForce, err := v.ctl.m.DiskRateLimit(0)
	v.ctl.mu.Unlock()
	require.NoError(t, err)
	assert.Equal(t, uint64(1<<20), inForce.Bandwidth.Size, "the PATCH reached the running disk")
	assert.Equal(t, time.Second, inForce.Bandwidth.RefillTime)
	assert.Equal(t, uint64(100), inForce.Ops.Size)
	if tap != "" {
		v.ok("PATCH", "/network-interfaces/eth0", `{"iface_id":"eth0","tx_rate_limiter":{"bandwidth":{"size":1048576,"refill_time":1000}}}`)
	}
	v.ok("PATCH", "/balloon", `{"amount_mib":32}`)
	v.fails("PATCH", "/balloon", `{"amount_mib":65}`, "greater than the guest memory")
	code, body = v.call("GET", "/balloon", "")
	require.Equal(t, http.StatusOK, code)
	assert.JSONEq(t, `{"amount_mib":32,"deflate_on_oom":true,"stats_polling_interval_s":1}`, body)
	code, body = v.call("GET", "/balloon/statistics", "")
	require.Equal(t, http.StatusOK, code, body)
	assert.JSONEq(t, `{"target_pages":8192,"actual_pages":0,"target_mib":32,"actual_mib":0}`, body, "the tiny guest reports nothing")
	v.ok("PATCH", "/balloon/statistics", `{"stats_polling_interval_s":5}`)
	v.fails("PATCH", "/balloon/statistics", `{"stats_polling_interval_s":0}`, "cannot turn them off")
	v.fails("PATCH", "/network-interfaces/eth9", `{"iface_id":"eth9","tx_rate_limiter":{"ops":{"size":1,"refill_time":1}}}`, "no interface")
	// The tiny guest reads no keyboard: the keys wait in the keyboard's
	// buffer, and a second press finds it full.
	v.ok("PUT", "/actions", `{"action_type":"SendCtrlAltDel"}`)
	v.fails("PUT", "/actions", `{"action_type":"SendCtrlAltDel"}`, "not reading its keyboard")
	v.ok("PUT", "/actions", `{"action_type":"FlushMetrics"}`)
	code, body = v.call("GET", "/vm/config", "")
	require.Equal(t, http.StatusOK, code)
	var full FullVMConfig
	require.NoError(t, json.Unmarshal([]byte(body), &full))
	assert.Equal(t, uint8(2), full.MachineConfig.VCPUCount)
	require.Len(t, full.Drives, 1)
	assert.Equal(t, swapped, full.Drives[0].PathOnHost, "the PATCHed path")
	require.NotNil(t, full.Entropy, "the entropy device is in /vm/config")
	require.NotNil(t, full.Vsock)
	assert.Equal(t, uint32(3), full.Vsock.GuestCID)
	st, err := os.Stat(vsockPath)
	require.NoError(t, err, "the vsock socket exists once the VM runs")
	assert.Equal(t, os.ModeSocket, st.Mode().Type())
	// Both PATCHes apply: the second kept the first's bandwidth bucket.
	rl := full.Drives[0].RateLimiter
	require.NotNil(t, rl)
	require.NotNil(t, rl.Bandwidth)
	require.NotNil(t, rl.Ops)
	assert.Equal(t, uint64(1<<20), *rl.Bandwidth.Size)
	assert.Equal(t, uint64(100), *rl.Ops.Size)
	assert.Equal(t, metricsPath, full.Metrics.MetricsPath)

	metrics, err := os.ReadFile(metricsPath)
	require.NoError(t, err)
	lines := strings.Split(strings.TrimSpace(string(metrics)), "\n")
	require.Len(t, lines, 1, "one JSON line per flush")
	var m map[string]any
	require.NoError(t, json.Unmarshal([]byte(lines[0]), &m))
	assert.Contains(t, m, "utc_timestamp_ms")
	assert.Contains(t, m, "put_api_requests")
	assert.Contains(t, m, "block", "Firecracker's block group")
	require.Contains(t, m, "block_rootfs", "the drive's own group")
	assert.Contains(t, m["block_rootfs"], "read_bytes")
	if tap != "" {
		assert.Contains(t, m, "net_eth0")
	}
	logText, err := os.ReadFile(logPath)
	require.NoError(t, err)
	assert.Contains(t, string(logText), "[test-vm:main:INFO:")
	assert.Contains(t, string(logText), "Successfully started microvm")
}

// testTAP names a TAP for the test if this process may create one (vmm
// creates a missing TAP and removes it at exit), else "" with the reason
// logged.
func testTAP(t *testing.T) string {
	if os.Geteuid() != 0 {
		t.Log("not root: no TAP, the network interface is left out")
		return ""
	}
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		t.Log("no /dev/net/tun: the network interface is left out")
		return ""
	}
	name := fmt.Sprintf("fcapi%d", os.Getpid()%100000)
	t.Cleanup(func() {
		// vmm removes the TAP it created; if that failed, do not leak it.
		if out, err := exec.Command("ip", "link", "show", name).CombinedOutput(); err == nil {
			t.Errorf("TAP %s left behind: %s", name, out)
			_ = exec.Command("ip", "link", "del", name).Run()
		}
	})
	return name
}

// A guest that powers off ends the run with PowerOff: the process can
// exit 0.
func TestGuestPowerOffEndsTheRun(t *testing.T) {
	needKVM(t)
	v := startServer(t, 0)
	v.ok("PUT", "/machine-config", `{"vcpu_count":1,"mem_size_mib":32}`)
	v.ok("PUT", "/boot-source", fmt.Sprintf(`{"kernel_image_path":%q}`, powerOffELF(t)))
	v.ok("PUT", "/actions", `{"action_type":"InstanceStart"}`)
	select {
	case <-v.ctl.Done():
		out := v.ctl.Outcome()
		require.NoError(t, out.Err)
		assert.Equal(t, devices.PowerOff, out.Action)
	case <-time.After(20 * time.Second):
		t.Fatal("the guest did not power off")
	}
}

func TestBadRequestsKeepTheServerServing(t *testing.T) {
	v := startServer(t, 1024)
	kernel := haltELF(t)
	v.fails("PUT", "/boot-source", `{"kernel_image_path":"/nonexistent/vmlinux"}`, "The kernel file cannot be opened")
	v.fails("PUT", "/drives/a", `{"drive_id":"a","path_on_host":"/nonexistent/a.img","is_root_device":false}`, "no such file")
	v.fails("PUT", "/machine-config", `{"vcpu_count":"two","mem_size_mib":64}`, "deserializing the json body")
	v.fails("PUT", "/machine-config", `{"vcpu_count":1,"mem_size_mib":64,"extra":1}`, `unknown field "extra"`)
	v.fails("PUT", "/actions", `{"action_type":"Explode"}`, "unknown variant `Explode`")
	v.fails("PUT", "/actions", `{"action_type":"InstanceStart"}`, "without kernel configuration")
	v.fails("PUT", "/actions", `{"action_type":"SendCtrlAltDel"}`, msgPreBoot)
	v.fails("PATCH", "/drives/a", `{"drive_id":"a","path_on_host":"/x"}`, msgPreBoot)
	v.fails("PUT", "/vsock", `{"guest_cid":2,"uds_path":"/tmp/v.sock"}`, "Invalid guest CID 2")
	v.fails("GET", "/nothing", "", "Invalid request method and/or path")
	v.fails("PUT", "/metrics", `{"metrics_path":"/nonexistent/dir/m"}`, "metrics")
	// Over the payload limit: refused before it is parsed.
	v.fails("PUT", "/boot-source", fmt.Sprintf(`{"kernel_image_path":%q,"boot_args":%q}`, kernel, strings.Repeat("x", 2000)),
		"is larger than the limit of 1024")

	// Malformed HTTP on a raw connection: Go's server answers 400 and
	// closes that connection only.
	for raw, want := range map[string]int{
		"NOT HTTP AT ALL\r\n\r\n": http.StatusBadRequest,
		"PUT /actions HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n": http.StatusBadRequest,
		"GET / HTTP/9.9\r\nHost: x\r\n\r\n":                                http.StatusHTTPVersionNotSupported,
	} {
		conn, err := net.Dial("unix", v.sock)
		require.NoError(t, err)
		_, err = conn.Write([]byte(raw))
		require.NoError(t, err)
		require.NoError(t, conn.SetReadDeadline(time.Now().Add(5*time.Second)))
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		require.NoError(t, err, "%q", raw)
		assert.Equal(t, want, resp.StatusCode, "%q", raw)
		require.NoError(t, conn.Close())
	}

	// A client that goes away mid-body: nothing applied.
	conn, err := net.Dial("unix", v.sock)
	require.NoError(t, err)
	_, err = conn.Write([]byte("PUT /machine-config HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"vcpu_count\": 4,"))
	require.NoError(t, err)
	require.NoError(t, conn.Close())

	// Still serving, configuration untouched by all of the above.
	code, body := v.call("GET", "/machine-config", "")
	require.Equal(t, http.StatusOK, code)
	assert.Contains(t, body, `"vcpu_count":1,`)
	assert.Equal(t, StateNotStarted, v.state())
}

func TestSecondInstanceStartIsRefused(t *testing.T) {
	needKVM(t)
	v := startServer(t, 0)
	v.ok("PUT", "/machine-config", `{"vcpu_count":1,"mem_size_mib":32}`)
	v.ok("PUT", "/boot-source", fmt.Sprintf(`{"kernel_image_path":%q}`, haltELF(t)))
	v.ok("PUT", "/actions", `{"action_type":"InstanceStart"}`)
	v.fails("PUT", "/actions", `{"action_type":"InstanceStart"}`, msgPostBoot)
	v.fails("PUT", "/entropy", `{}`, msgPostBoot)
	v.fails("PUT", "/boot-source", fmt.Sprintf(`{"kernel_image_path":%q}`, haltELF(t)), msgPostBoot)
	assert.Equal(t, StateRunning, v.state())
}

// 100 clients at once, each on its own connection: every one is answered.
func TestManyClients(t *testing.T) {
	v := startServer(t, 0)
	const clients = 100
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{
				DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
					return (&net.Dialer{}).DialContext(ctx, "unix", v.sock)
				}}}
			var req *http.Request
			if i%2 == 0 {
				req, _ = http.NewRequest("GET", "http://localhost/machine-config", nil)
			} else {
				req, _ = http.NewRequest("PATCH", "http://localhost/machine-config", strings.NewReader(`{"mem_size_mib": 64}`))
			}
			resp, err := c.Do(req)
			if err != nil {
				errs <- err
				return
			}
			defer resp.Body.Close()
			_, _ = io.Copy(io.Discard, resp.Body)
			if want := map[bool]int{true: 200, false: 204}[i%2 == 0]; resp.StatusCode != want {
				errs <- fmt.Errorf("client %d: status %d, want %d", i, resp.StatusCode, want)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	code, body := v.call("GET", "/machine-config", "")
	require.Equal(t, http.StatusOK, code)
	assert.Contains(t, body, `"mem_size_mib":64`)
}

func TestSocketThatExistsIsRefused(t *testing.T) {
	p := filepath.Join(t.TempDir(), "taken.sock")
	require.NoError(t, os.WriteFile(p, nil, 0o600))
	_, err := Listen(p)
	assert.ErrorIs(t, err, ErrSocketExists)
}

func TestConfigFile(t *testing.T) {
	kernel, disk := haltELF(t), tempFile(t, "d.img", 4096)
	good := fmt.Sprintf(`{
		"boot-source": {"kernel_image_path": %q, "boot_args": "console=ttyS0"},
		"drives": [{"drive_id": "rootfs", "path_on_host": %q, "is_root_device": true, "is_read_only": true}],
		"machine-config": {"vcpu_count": 2, "mem_size_mib": 64},
		"network-interfaces": [],
		"entropy": {"rate_limiter": {"bandwidth": {"size": 4096, "refill_time": 1000}}}
	}`, kernel, disk)
	ctl := NewController(Options{ID: "cfg"})
	require.NoError(t, ctl.LoadConfig([]byte(good)))
	cfg, err := ctl.Resources().MachineConfig()
	require.NoError(t, err)
	assert.Equal(t, 2, cfg.CPUs)
	require.NotNil(t, cfg.Entropy)
	assert.Equal(t, uint64(4096), cfg.Entropy.RateLimit.Bandwidth.Size)
	assert.Equal(t, time.Second, cfg.Entropy.RateLimit.Bandwidth.RefillTime)
	assert.Equal(t, "console=ttyS0 root=/dev/vda ro", cfg.Cmdline)

	for _, tc := range []struct{ name, json, want string }{
		{"not json", `boot`, "invalid configuration file"},
		{"array", `[]`, "invalid configuration file"},
		{"no boot source", `{"machine-config": {"vcpu_count": 1, "mem_size_mib": 64}}`, `no "boot-source"`},
		{"vsock", fmt.Sprintf(`{"boot-source": {"kernel_image_path": %q}, "vsock": {}}`, kernel), "missing field `guest_cid`"},
		{"unknown", fmt.Sprintf(`{"boot-source": {"kernel_image_path": %q}, "gpu": {}}`, kernel), `unknown section "gpu"`},
		{"bad entropy", fmt.Sprintf(`{"boot-source": {"kernel_image_path": %q}, "entropy": {"rate_limiter": {"ops": {"size": 1}}}}`, kernel), "entropy"},
		{"bad drive", fmt.Sprintf(`{"boot-source": {"kernel_image_path": %q}, "drives": [{"drive_id": "a"}]}`, kernel), "drives[0]"},
		{"bad id", fmt.Sprintf(`{"boot-source": {"kernel_image_path": %q}, "drives": [{"drive_id": "a/b", "path_on_host": %q, "is_root_device": false}]}`, kernel, disk), msgInvalidID},
		{"missing kernel", `{"boot-source": {"kernel_image_path": "/nonexistent/k"}}`, "The kernel file cannot be opened"},
		{"bad machine", fmt.Sprintf(`{"boot-source": {"kernel_image_path": %q}, "machine-config": {"vcpu_count": 0, "mem_size_mib": 64}}`, kernel), "number of vCPUs"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := NewController(Options{}).LoadConfig([]byte(tc.json))
			require.Error(t, err)
			assert.ErrorIs(t, err, ErrConfigFile)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}
