package blk_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vmm-dev/vmm/devices/ratelimit"
	"github.com/vmm-dev/vmm/devices/virtio"
	"github.com/vmm-dev/vmm/devices/virtio/blk"
	"github.com/vmm-dev/vmm/devices/virtio/virtiotest"
	"github.com/vmm-dev/vmm/memory"
)

// mibPerSecond is 1 MiB/s as Firecracker users write it: a 64 KiB
// bucket refilled every 62.5 ms.
var mibPerSecond = ratelimit.Config{Bandwidth: ratelimit.Bucket{Size: 64 << 10, RefillTime: 62500 * time.Microsecond}}

// TestRateLimitHoldsBandwidth reads 64 KiB at a time, as fast as the
// device answers, for two seconds through a 1 MiB/s limiter.
func TestRateLimitHoldsBandwidth(t *testing.T) {
	if testing.Short() {
		t.Skip("takes 2 s")
	}
	l, err := ratelimit.New(mibPerSecond, nil)
	require.NoError(t, err)
	r := newRig(t, 1024, blk.Options{RateLimiter: l}, virtio.TransportFeatures)
	var moved uint64
	start := time.Now()
	for time.Since(start) < 2*time.Second {
		st, n := r.request(t, blk.TypeIn, 0, 64<<10, false)
		require.Equal(t, blk.StatusOK, st)
		require.Equal(t, uint32(64<<10+1), n)
		moved += 64 << 10
	}
	// The bucket starts full: its 64 KiB came for free.
	rate := float64(moved-64<<10) / time.Since(start).Seconds()
	t.Logf("%d KiB in %v: %.0f KiB/s", moved>>10, time.Since(start).Round(time.Millisecond), rate/1024)
	assert.InEpsilon(t, float64(1<<20), rate, 0.10)
	assert.Positive(t, l.Throttled())
}

// TestRateLimitUpdateToUnlimited: a limiter that allows almost nothing holds
// the second request; making it unlimited releases it at once, and the
// requests complete in order.
func TestRateLimitUpdateToUnlimited(t *testing.T) {
	l, err := ratelimit.New(ratelimit.Config{Ops: ratelimit.Bucket{Size: 1, RefillTime: time.Hour}}, nil)
	require.NoError(t, err)
	r := newRig(t, sectors, blk.Options{RateLimiter: l}, virtio.TransportFeatures)
	require.Same(t, l, r.blk.Limiter())
	st, _ := r.request(t, blk.TypeIn, 0, 4096, false)
	require.Equal(t, blk.StatusOK, st)

	var heads []uint16
	for i := range 3 {
		stat := r.stat + 64*memory.GuestAddr(i)
		r.header(t, r.hdr+64*memory.GuestAddr(i), blk.TypeIn, uint64(i))
		h, err := r.q.Add([]virtiotest.Buf{
			{Addr: r.hdr + 64*memory.GuestAddr(i), Len: blk.HeaderSize},
			{Addr: r.data + 4096*memory.GuestAddr(i), Len: 512, Writable: true},
			{Addr: stat, Len: 1, Writable: true},
		})
		require.NoError(t, err)
		heads = append(heads, h)
	}
	r.q.Kick()
	_, err = r.q.WaitUsed(200 * time.Millisecond)
	require.ErrorIs(t, err, virtiotest.ErrTimeout, "the limiter must hold the requests")

	start := time.Now()
	require.NoError(t, l.Update(ratelimit.Config{}))
	for i, h := range heads {
		u, err := r.q.WaitUsed(virtiotest.DefaultTimeout)
		require.NoError(t, err)
		assert.Equal(t, h, u.ID, "request %d completes in order", i)
		assert.Equal(t, r.image[i*512:(i+1)*512], r.guest(t, r.data+4096*memory.GuestAddr(i), 512))
	}
	assert.Less(t, time.Since(start), time.Second, "the update took effect at once")
}

// TestRateLimitResetEndsWait: a driver reset does not wait for tokens.
func TestRateLimitResetEndsWait(t *testing.T) {
	l, err := ratelimit.New(ratelimit.Config{Ops: ratelimit.Bucket{Size: 1, RefillTime: time.Hour}}, nil)
	require.NoError(t, err)
	r := newRig(t, sectors, blk.Options{RateLimiter: l}, virtio.TransportFeatures)
	st, _ := r.request(t, blk.TypeIn, 0, 512, false)
	require.Equal(t, blk.StatusOK, st)
	r.header(t, r.hdr, blk.TypeIn, 0)
	_, err = r.q.Add([]virtiotest.Buf{{Addr: r.hdr, Len: blk.HeaderSize}, {Addr: r.data, Len: 512, Writable: true}, {Addr: r.stat, Len: 1, Writable: true}})
	require.NoError(t, err)
	r.q.Kick()
	time.Sleep(50 * time.Millisecond)
	start := time.Now()
	r.drv.Reset()
	assert.Less(t, time.Since(start), time.Second)
	assert.False(t, r.drv.NeedsReset())
	// The device works again after a new initialization.
	require.NoError(t, l.Update(ratelimit.Config{}))
	require.NoError(t, r.drv.Init(virtio.TransportFeatures, 0))
	r.q = r.drv.Queue(0)
	st, _ = r.request(t, blk.TypeIn, 0, 512, false)
	require.Equal(t, blk.StatusOK, st)
}
