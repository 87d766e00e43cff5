package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/vmm-dev/vmm/tests/bench/internal/results"
)

// apiBoot boots the guest through Firecracker's API, as an orchestrator
// does: `vmm firecracker --api-sock S`, GET / until the socket answers
// (firecracker-go-sdk's readiness probe is GET /machine-config; either
// answers at the same moment), then PUT /machine-config, /boot-source
// and InstanceStart. It measures the fork to the first answer and
// InstanceStart to the guest's init line, and stops the VMM there.
func (r *runner) apiBoot(k results.KernelSpec, round int) *results.Sample {
	s := &results.Sample{Kernel: k.Name, VMM: results.VMM, Kind: results.KindAPI, Round: round}
	timeout := time.Duration(r.cfg.BootTimeoutSeconds * float64(time.Second))
	sock := r.scratch("api.sock")
	defer os.Remove(sock)
	p, err := start([]string{r.cfg.VMM, "firecracker", "--api-sock", sock, "--id", "bench"}, false)
	if err != nil {
		s.Error = fmt.Sprintf("start %s: %v", r.cfg.VMM, err)
		return s
	}
	defer func() {
		p.kill()
		p.wait(5 * time.Second)
		if s.Error != "" {
			s.ConsoleTail = append(p.tailLines(), strings.Split(tailText(p.otherOutput(), 20), "\n")...)
		}
	}()
	c := unixClient(sock)
	deadline := time.Now().Add(timeout)
	if err := waitAPI(c, deadline); err != nil {
		s.Error = err.Error()
		return s
	}
	s.SetMetric(results.APIReady, ms(time.Since(p.fork)))
	calls := []struct {
		method, path string
		body         any
	}{
		{"PUT", "/machine-config", map[string]any{"vcpu_count": r.cfg.CPUs, "mem_size_mib": r.cfg.MemoryMiB}},
		// No disk or NIC: the sample ends at init, before the I/O tests.
		{"PUT", "/boot-source", map[string]any{"kernel_image_path": k.BzImage, "initrd_path": r.cfg.Initrd,
			"boot_args": r.cmdline(results.KernelSpec{Name: k.Name, Cmdline: k.Cmdline}, results.VMM)}},
	}
	for _, cl := range calls {
		if code, body, err := apiCall(c, cl.method, cl.path, cl.body); err != nil || code != http.StatusNoContent {
			s.Error = fmt.Sprintf("%s %s: HTTP %d %s %v", cl.method, cl.path, code, body, err)
			return s
		}
	}
	started := time.Now()
	if code, body, err := apiCall(c, "PUT", "/actions", map[string]string{"action_type": "InstanceStart"}); err != nil || code != http.StatusNoContent {
		s.Error = fmt.Sprintf("InstanceStart: HTTP %d %s %v", code, body, err)
		return s
	}
	at, err := waitLine(p, markInit, deadline)
	if err != nil {
		s.Error = err.Error()
		return s
	}
	s.SetMetric(results.APIStartToInit, ms(at-started.Sub(p.fork)))
	s.SetMetric(results.APIBootConsole, ms(at))
	return s
}

// waitAPI polls GET / until the socket answers 200 or the deadline passes.
func waitAPI(c *http.Client, deadline time.Time) error {
	for {
		if code, _, err := apiCall(c, "GET", "/", nil); err == nil && code == http.StatusOK {
			return nil
		}
		if time.Now().After(deadline) {
			return errors.New("the API socket never answered GET /")
		}
		time.Sleep(200 * time.Microsecond)
	}
}

func unixClient(sock string) *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		}}}
}

func apiCall(c *http.Client, method, path string, body any) (int, string, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, "", err
		}
		rd = strings.NewReader(string(b))
	}
	req, err := http.NewRequest(method, "http://localhost"+path, rd)
	if err != nil {
		return 0, "", err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}
