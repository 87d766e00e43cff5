package net_test

import (
	"errors"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vmm-dev/vmm/devices/ratelimit"
	"github.com/vmm-dev/vmm/devices/virtio"
	vnet "github.com/vmm-dev/vmm/devices/virtio/net"
	"github.com/vmm-dev/vmm/devices/virtio/virtiotest"
)

// mibPerSecond is 1 MiB/s: a 64 KiB bucket refilled every 62.5 ms.
var mibPerSecond = ratelimit.Config{Bandwidth: ratelimit.Bucket{Size: 64 << 10, RefillTime: 62500 * time.Microsecond}}

// plainFrame is what a driver without offloads sends: a header and an
// MTU-sized frame; the limiter counts both, as Firecracker does.
const plainFrame = vnet.HeaderSize + 1514

const minimal = virtio.TransportFeatures | vnet.FeatureMAC

// checkRate asserts that bytes moved over elapsed, less the bucket's
// initial 64 KiB, is 1 MiB/s within 10%.
func checkRate(t *testing.T, what string, bytes uint64, elapsed time.Duration) {
	t.Helper()
	rate := float64(bytes-64<<10) / elapsed.Seconds()
	t.Logf("%s: %d KiB in %v: %.0f KiB/s", what, bytes>>10, elapsed.Round(time.Millisecond), rate/1024)
	assert.InEpsilon(t, float64(1<<20), rate, 0.10, what)
}

func TestTXRateLimit(t *testing.T) {
	if testing.Short() {
		t.Skip("takes 2 s")
	}
	r := newRig(t, 4<<20)
	require.NoError(t, r.net.TXLimiter().Update(mibPerSecond))
	_, tx := r.start(t, minimal, 0, 0)
	frame := withHeader(vnet.Header{}, ethFrame(1514, 1))
	addr := r.alloc(t, len(frame), frame)

	var got atomic.Uint64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		buf := make([]byte, 1<<16)
		for {
			select {
			case <-stop:
				return
			default:
			}
			_ = r.peer.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
			n, err := r.peer.Read(buf)
			if err == nil {
				got.Add(uint64(n))
			}
		}
	})
	start := time.Now()
	for time.Since(start) < 2*time.Second {
		_, err := tx.Add([]virtiotest.Buf{{Addr: addr, Len: uint32(len(frame))}})
		require.NoError(t, err)
		tx.Kick()
		_, err = tx.WaitUsed(virtiotest.DefaultTimeout)
		require.NoError(t, err)
	}
	elapsed := time.Since(start)
	time.Sleep(100 * time.Millisecond) // the reader drains the last frame
	close(stop)
	wg.Wait()
	checkRate(t, "transmit", got.Load(), elapsed)
	assert.Equal(t, got.Load()/plainFrame, r.net.Stats().TXFrames, "no frame dropped")
}

func TestRXRateLimit(t *testing.T) {
	if testing.Short() {
		t.Skip("takes 2 s")
	}
	r := newRig(t, 4<<20)
	require.NoError(t, r.net.RXLimiter().Update(mibPerSecond))
	rx, _ := r.start(t, minimal, 0, 0)
	bufs := rxPost(t, r, rx, 64, plainFrame)

	// The peer keeps the socket full; the device reads it at the limit.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var sent atomic.Uint64
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			_ = r.peer.SetWriteDeadline(time.Now().Add(50 * time.Millisecond))
			f := withHeader(vnet.Header{}, ethFrame(1514, byte(i)))
			if _, err := r.peer.Write(f); err == nil {
				sent.Add(1)
			} else if !errors.Is(err, os.ErrDeadlineExceeded) {
				return
			}
		}
	})
	var frames uint64
	start := time.Now()
	for time.Since(start) < 2*time.Second {
		u, err := rx.WaitUsed(virtiotest.DefaultTimeout)
		require.NoError(t, err)
		require.Equal(t, uint32(plainFrame), u.Len)
		frame := r.guest(t, bufs[u.ID]+vnet.HeaderSize, 1514)
		require.Equal(t, ethFrame(1514, byte(frames)), frame, "frame %d in order", frames)
		frames++
		addr := bufs[u.ID]
		head, err := rx.Add([]virtiotest.Buf{{Addr: addr, Len: plainFrame, Writable: true}})
		require.NoError(t, err)
		bufs[head] = addr
		rx.Kick()
	}
	elapsed := time.Since(start)
	close(stop)
	wg.Wait()
	checkRate(t, "receive", frames*plainFrame, elapsed)
	assert.Greater(t, sent.Load(), frames, "the peer offered more than the limit")
	assert.Positive(t, r.net.RXLimiter().Throttled())
}

// TestTXRateLimitUpdate: a frame held by an exhausted limiter leaves as
// soon as the limiter is made unlimited.
func TestTXRateLimitUpdate(t *testing.T) {
	r := newRig(t, 1<<20)
	l := r.net.TXLimiter()
	require.NoError(t, l.Update(ratelimit.Config{Ops: ratelimit.Bucket{Size: 1, RefillTime: time.Hour}}))
	_, tx := r.start(t, minimal, 0, 0)
	r.transmitAndExpect(t, tx, withHeader(vnet.Header{}, ethFrame(100, 1)))
	second := withHeader(vnet.Header{}, ethFrame(100, 2))
	addr := r.alloc(t, len(second), second)
	_, err := tx.Add([]virtiotest.Buf{{Addr: addr, Len: uint32(len(second))}})
	require.NoError(t, err)
	tx.Kick()
	assert.True(t, r.peerEmpty(t), "the limiter holds the second frame")
	start := time.Now()
	require.NoError(t, l.Update(ratelimit.Config{}))
	got, err := r.recvPeer(t, virtiotest.DefaultTimeout)
	require.NoError(t, err)
	assert.Equal(t, second, got)
	assert.Less(t, time.Since(start), time.Second)
	_, err = tx.WaitUsed(virtiotest.DefaultTimeout)
	require.NoError(t, err)
}

// TestRateLimitResetEndsWait: a driver reset does not wait for tokens on
// either queue.
func TestRateLimitResetEndsWait(t *testing.T) {
	r := newRig(t, 1<<20)
	hold := ratelimit.Config{Ops: ratelimit.Bucket{Size: 1, RefillTime: time.Hour}}
	require.NoError(t, r.net.TXLimiter().Update(hold))
	require.NoError(t, r.net.RXLimiter().Update(hold))
	rx, tx := r.start(t, minimal, 0, 0)
	bufs := rxPost(t, r, rx, 4, plainFrame)
	r.receiveAndExpect(t, rx, bufs, ethFrame(100, 1))
	r.sendPeer(t, withHeader(vnet.Header{}, ethFrame(100, 2)))
	r.transmitAndExpect(t, tx, withHeader(vnet.Header{}, ethFrame(100, 3)))
	f := withHeader(vnet.Header{}, ethFrame(100, 4))
	_, err := tx.Add([]virtiotest.Buf{{Addr: r.alloc(t, len(f), f), Len: uint32(len(f))}})
	require.NoError(t, err)
	tx.Kick()
	time.Sleep(50 * time.Millisecond)
	start := time.Now()
	r.drv.Reset()
	assert.Less(t, time.Since(start), time.Second)
}
