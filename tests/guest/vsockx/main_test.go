package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"testing"
	"testing/iotest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestStreamIsDeterministic(t *testing.T) {
	a, err := io.ReadAll(newStream(7, 100003))
	require.NoError(t, err)
	b, err := io.ReadAll(iotest.OneByteReader(newStream(7, 100003)))
	require.NoError(t, err)
	assert.Equal(t, a, b, "the same bytes whatever the read sizes")
	assert.Len(t, a, 100003)
	c, _ := io.ReadAll(newStream(8, 100003))
	assert.NotEqual(t, a, c)
}

// TestHostServeAndConnect runs the host-side modes against each other
// over unix sockets, the second through a fake device that answers the
// CONNECT handshake.
func TestHostServeAndConnect(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s")
	// Listen here, not in the goroutine: the socket file appears at
	// bind(2), and a dial between bind and listen(2) is refused. Waiting
	// for the file raced that window, and lost once on a loaded host (the
	// serving side then waited for a connection that never came).
	l0, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	require.NoError(t, err)
	defer l0.Close()
	done := make(chan []result, 1)
	go func() {
		r, err := serve(l0, 2, 1<<20, 1, 2)
		assert.NoError(t, err)
		done <- r
	}()
	// The fake device: take CONNECT, answer OK, then splice to path.
	uds := filepath.Join(t.TempDir(), "uds")
	l, err := net.Listen("unix", uds)
	require.NoError(t, err)
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				line, err := bufio.NewReader(io.LimitReader(c, 13)).ReadString('\n')
				if err != nil || line != "CONNECT 5000\n" {
					c.Close()
					return
				}
				fmt.Fprintf(c, "OK 1073741824\n")
				s, err := net.Dial("unix", path)
				if err != nil {
					c.Close()
					return
				}
				go func() { io.Copy(s, c); s.(*net.UnixConn).CloseWrite() }()
				io.Copy(c, s)
				c.(*net.UnixConn).CloseWrite()
			}()
		}
	}()
	results, err := hostConnect(uds, 5000, 2, 1<<20, 2, 1)
	require.NoError(t, err)
	var served []result
	select {
	case served = <-done:
	case <-time.After(time.Minute):
		// Fail with what the connecting side saw, not hang.
		t.Fatalf("the serving side did not finish within a minute; the connecting side got %+v", results)
	}
	for _, r := range append(results, served...) {
		assert.True(t, r.ok, "%+v", r)
		assert.Equal(t, int64(1<<20), r.in)
	}
}
