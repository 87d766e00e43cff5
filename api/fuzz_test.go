package api

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
)

// FuzzParseRequest: any method, path and body either parses or is a
// client error; it never panics.
func FuzzParseRequest(f *testing.F) {
	for _, s := range []struct{ m, p, b string }{
		{"GET", "/", ""},
		{"PUT", "/machine-config", `{"vcpu_count":2,"mem_size_mib":256,"smt":false,"track_dirty_pages":false,"huge_pages":"None"}`},
		{"PATCH", "/machine-config", `{"mem_size_mib":512}`},
		{"PUT", "/boot-source", `{"kernel_image_path":"/k","initrd_path":"/i","boot_args":"console=ttyS0"}`},
		{"PUT", "/drives/rootfs", `{"drive_id":"rootfs","path_on_host":"/d","is_root_device":true,"is_read_only":false,"partuuid":"x","cache_type":"Writeback","io_engine":"Async","rate_limiter":{"bandwidth":{"size":0,"refill_time":0,"one_time_burst":1}}}`},
		{"PATCH", "/drives/rootfs", `{"drive_id":"rootfs","path_on_host":"/e"}`},
		{"PUT", "/network-interfaces/eth0", `{"iface_id":"eth0","host_dev_name":"tap0","guest_mac":"06:00:AC:10:00:02","rx_rate_limiter":{"ops":{"size":1,"refill_time":0}}}`},
		{"PATCH", "/network-interfaces/eth0", `{"iface_id":"eth0"}`},
		{"PUT", "/logger", `{"log_path":"/l","level":"Info","show_level":true,"show_log_origin":false}`},
		{"PUT", "/metrics", `{"metrics_path":"/m"}`},
		{"PUT", "/actions", `{"action_type":"InstanceStart"}`},
		{"GET", "/vm/config", ""},
		{"PATCH", "/vm", `{"state":"Paused"}`},
		{"PUT", "/snapshot/create", `{}`},
		{"PUT", "/drives/%00", `null`},
	} {
		f.Add(s.m, s.p, []byte(s.b))
	}
	f.Fuzz(func(t *testing.T, method, path string, body []byte) {
		r, err := ParseRequest(method, path, body)
		if err != nil {
			if !errors.Is(err, ErrBadRequest) {
				t.Fatalf("%s %s: error %v is not a client error", method, path, err)
			}
			if r != nil {
				t.Fatalf("%s %s: a request and an error", method, path)
			}
			return
		}
		if r == nil {
			t.Fatalf("%s %s: neither a request nor an error", method, path)
		}
	})
}

// FuzzServeHTTP feeds raw bytes to the HTTP layer: what Go's parser
// accepts goes through the server's handler, which answers 200, 204 or
// 400 with a JSON fault, and never panics. Requests that would open host
// files (drives, boot source, logger, metrics) are parsed but not
// applied, so the fuzzer cannot open devices read-write.
func FuzzServeHTTP(f *testing.F) {
	f.Add([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
	f.Add([]byte("PUT /machine-config HTTP/1.1\r\nHost: x\r\nContent-Length: 37\r\n\r\n{\"vcpu_count\": 2, \"mem_size_mib\": 64}"))
	f.Add([]byte("PATCH /machine-config HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{\"smt\r\n0\r\n\r\n"))
	f.Add([]byte("PUT /actions HTTP/1.1\r\nHost: x\r\nContent-Length: 30\r\n\r\n{\"action_type\":\"FlushMetrics\"}"))
	f.Add([]byte("PUT /drives/a HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nnull"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(raw)))
		if err != nil {
			return // Go's server answers these itself, before any handler
		}
		body, _ := io.ReadAll(io.LimitReader(req.Body, DefaultMaxPayload+1))
		if parsed, err := ParseRequest(req.Method, req.URL.Path, body); err == nil {
			switch parsed.(type) {
			case PutDrive, PutBootSource, PutLogger, PutMetrics, InstanceStart:
				return
			}
		}
		req.Body = io.NopCloser(bytes.NewReader(body))
		s := &Server{ctl: NewController(Options{ID: "fuzz"}), maxPayload: DefaultMaxPayload}
		w := httptest.NewRecorder()
		s.ServeHTTP(w, req)
		switch w.Code {
		case http.StatusOK, http.StatusNoContent:
		case http.StatusBadRequest:
			if !bytes.HasPrefix(w.Body.Bytes(), []byte(`{"fault_message":`)) {
				t.Fatalf("400 without a JSON fault: %q", w.Body.Bytes())
			}
		default:
			t.Fatalf("status %d for %q", w.Code, raw)
		}
		if w.Code == http.StatusNoContent && w.Body.Len() != 0 {
			t.Fatalf("204 with a body %q", w.Body.Bytes())
		}
	})
}
