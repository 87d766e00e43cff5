package api

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"time"
)

// DefaultMaxPayload is Firecracker's HTTP_MAX_PAYLOAD_SIZE, the default
// of --http-api-max-payload-size.
const DefaultMaxPayload = 51200

// ErrSocketExists: the API socket's path is taken. Firecracker refuses to
// start then (its bind fails with AddrInUse) rather than remove a file it
// did not create.
var ErrSocketExists = errors.New("the API socket path already exists")

// Server serves the API over HTTP/1.1 on a unix socket. It is a thin
// layer: read the body (bounded), ParseRequest, Controller.Handle, write
// the Response.
type Server struct {
	ctl        *Controller
	maxPayload int64
	http       *http.Server
	ln         net.Listener
	path       string
}

// Listen creates the API socket at path.
func Listen(path string) (net.Listener, error) {
	if _, err := os.Lstat(path); err == nil {
		return nil, fmt.Errorf("Failed to open the API socket at %s: %w", path, ErrSocketExists)
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("Failed to open the API socket at %s: %w", path, err)
	}
	return ln, nil
}

// NewServer serves ctl on ln; maxPayload <= 0 means DefaultMaxPayload.
func NewServer(ctl *Controller, ln net.Listener, maxPayload int64) *Server {
	if maxPayload <= 0 {
		maxPayload = DefaultMaxPayload
	}
	s := &Server{ctl: ctl, maxPayload: maxPayload, ln: ln}
	if u, ok := ln.Addr().(*net.UnixAddr); ok {
		s.path = u.Name
	}
	s.http = &http.Server{
		Handler: s,
		// A client that never finishes its headers holds only its own
		// connection; this bounds even that.
		ReadHeaderTimeout: 30 * time.Second,
		ErrorLog:          nil,
	}
	return s
}

// Serve answers requests until Close; it returns nil after Close.
func (s *Server) Serve() error {
	err := s.http.Serve(s.ln)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// Close stops serving and removes the socket file.
func (s *Server) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	err := s.http.Shutdown(ctx)
	if errors.Is(err, context.DeadlineExceeded) {
		err = s.http.Close()
	}
	if s.path != "" {
		if rerr := os.Remove(s.path); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
			err = errors.Join(err, rerr)
		}
	}
	return err
}

// ServeHTTP answers one request.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Server", "Firecracker API")
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.maxPayload))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			size := r.ContentLength
			s.write(w, s.fault(fmt.Sprintf("Request payload with size %s is larger than the limit of %d allowed by server.",
				sizeText(size), s.maxPayload)))
			return
		}
		// The client went away mid-body (or sent a broken chunked
		// body): nobody to answer, and nothing was applied.
		s.ctl.log.Warnf("API request %s %s: reading the body: %v", r.Method, r.URL.Path, err)
		return
	}
	s.ctl.log.Infof("The API server received a %s request on %q.", r.Method, r.URL.Path)
	s.ctl.metrics.Inc(strings.ToLower(r.Method)+"_api_requests", endpoint(r.URL.Path))
	req, err := ParseRequest(r.Method, r.URL.Path, body)
	if err != nil {
		s.ctl.metrics.Inc(strings.ToLower(r.Method)+"_api_requests", endpoint(r.URL.Path)+"_fails")
		s.ctl.log.Errorf("Received Error. Status code: 400 Bad Request. Message: %v", err)
		s.write(w, s.fault(err.Error()))
		return
	}
	s.write(w, s.ctl.Handle(req))
}

func sizeText(n int64) string {
	if n < 0 {
		return "unknown"
	}
	return fmt.Sprint(n)
}

// endpoint names a path's metrics counter: its first segment.
func endpoint(path string) string {
	head, _, _ := strings.Cut(strings.Trim(path, "/"), "/")
	if head == "" {
		return "instance_info"
	}
	return strings.ReplaceAll(head, "-", "_")
}

func (s *Server) fault(msg string) Response {
	return Response{Status: http.StatusBadRequest, Body: mustJSON(Fault{FaultMessage: msg})}
}

func (s *Server) write(w http.ResponseWriter, resp Response) {
	if resp.Body != nil {
		w.Header().Set("Content-Type", "application/json")
	}
	w.WriteHeader(resp.Status)
	if resp.Body != nil {
		_, _ = w.Write(resp.Body) // a client gone away is not the server's error
	}
}
