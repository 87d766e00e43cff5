package main

import (
	"fmt"
	"net"
	"os"
	"sync"
	"time"

	"github.com/vmm-dev/vmm/tests/bench/internal/results"
)

// port80Listener is the server end of QEMU's isa-debugcon chardev on port
// 0x80: every byte the guest writes to the port arrives here, and the
// first PortMarker is timestamped from the VMM's fork.
type port80Listener struct {
	path string
	l    *net.UnixListener

	mu    sync.Mutex
	at    time.Duration
	found bool
}

func listenPort80(path string) (*port80Listener, error) {
	if err := os.Remove(path); err != nil && !os.IsNotExist(err) {
		return nil, fmt.Errorf("port 0x80 socket: %w", err)
	}
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("port 0x80 socket: %w", err)
	}
	return &port80Listener{path: path, l: l}, nil
}

// serve accepts QEMU's connection and reads it in the background.
func (p *port80Listener) serve(fork time.Time) {
	go func() {
		conn, err := p.l.Accept()
		if err != nil {
			return // closed: the run is over
		}
		defer conn.Close()
		buf := make([]byte, 256)
		for {
			n, err := conn.Read(buf)
			for _, b := range buf[:n] {
				if b == results.PortMarker {
					p.mu.Lock()
					if !p.found {
						p.found, p.at = true, time.Since(fork)
					}
					p.mu.Unlock()
				}
			}
			if err != nil {
				return
			}
		}
	}()
}

func (p *port80Listener) marker() (time.Duration, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.at, p.found
}

func (p *port80Listener) close() {
	// The run is over; a close error changes nothing.
	_ = p.l.Close()
	_ = os.Remove(p.path)
}
