package main

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"time"
)

// dial connects to addr, retrying for about two seconds: the host side
// listens before the VM starts, but the guest's link may need a moment
// after `ip link set up`.
func dial(addr string) (net.Conn, error) {
	var conn net.Conn
	var err error
	for attempt := 0; attempt < 20; attempt++ {
		conn, err = net.DialTimeout("tcp", addr, 2*time.Second)
		if err == nil {
			return conn, nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return nil, fmt.Errorf("connect %s: %w", addr, err)
}

// recvResult is what the guest received from the host.
type recvResult struct {
	bytes   int64
	elapsed time.Duration
	sha256  string
}

// recv connects to addr and reads to EOF (at most limit): host-to-guest
// TCP throughput, with the SHA-256 of the bytes for the host to compare.
func recv(addr string, limit time.Duration) (recvResult, error) {
	conn, err := dial(addr)
	if err != nil {
		return recvResult{}, err
	}
	defer conn.Close()
	start := time.Now()
	if err := conn.SetReadDeadline(start.Add(limit)); err != nil {
		return recvResult{}, err
	}
	h := sha256.New()
	n, err := io.CopyBuffer(h, conn, make([]byte, 256<<10))
	res := recvResult{bytes: n, elapsed: time.Since(start), sha256: hex.EncodeToString(h.Sum(nil))}
	if err != nil {
		return res, fmt.Errorf("receive from %s after %d bytes: %w", addr, n, err)
	}
	return res, nil
}

// send connects to addr and writes n zero bytes (or as many as fit in
// limit), then closes the connection: guest-to-host TCP throughput. The
// receiver in level 1 measures too; this is the sender's view.
func send(addr string, n int64, limit time.Duration) (int64, time.Duration, error) {
	conn, err := dial(addr)
	if err != nil {
		return 0, 0, err
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
