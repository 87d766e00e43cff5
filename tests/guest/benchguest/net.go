package main

import (
	"fmt"
	"net"
	"time"
)

// send connects to addr and writes n zero bytes (or as many as fit in
// limit), then closes the connection: guest-to-host TCP throughput. The
// receiver in level 1 measures too; this is the sender's view.
func send(addr string, n int64, limit time.Duration) (int64, time.Duration, error) {
	var conn net.Conn
	var err error
	// The host side listens before the VM starts, but the guest's link may
	// need a moment after `ip link set up`.
	for attempt := 0; attempt < 20; attempt++ {
		conn, err = net.DialTimeout("tcp", addr, 2*time.Second)
		if err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		return 0, 0, fmt.Errorf("connect %s: %w", addr, err)
	}
	defer conn.Close()
	start := time.Now()
	if err := conn.SetWriteDeadline(start.Add(limit)); err != nil {
		return 0, 0, err
	}
	buf := make([]byte, 256<<10)
	var sent int64
	for sent < n {
		chunk := buf
		if rest := n - sent; rest < int64(len(chunk)) {
			chunk = chunk[:rest]
		}
		w, err := conn.Write(chunk)
		sent += int64(w)
		if err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				break // the time limit: report what went through
			}
			return sent, time.Since(start), fmt.Errorf("send to %s: %w", addr, err)
		}
	}
	if tcp, ok := conn.(*net.TCPConn); ok {
		// Wait for the receiver's EOF acknowledgement: the data is then
		// delivered, not only buffered in the guest.
		if err := tcp.CloseWrite(); err != nil {
			return sent, time.Since(start), fmt.Errorf("close %s: %w", addr, err)
		}
		if err := conn.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
			return sent, time.Since(start), err
		}
		var one [1]byte
		_, _ = conn.Read(one[:]) // EOF (or the deadline) either way
	}
	return sent, time.Since(start), nil
}
