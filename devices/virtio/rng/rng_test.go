package rng_test

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vmm-dev/vmm/devices/ratelimit"
	"github.com/vmm-dev/vmm/devices/virtio"
	"github.com/vmm-dev/vmm/devices/virtio/rng"
	"github.com/vmm-dev/vmm/devices/virtio/virtiotest"
	"github.com/vmm-dev/vmm/memory"
)

type rig struct {
	dev *rng.RNG
	drv *virtiotest.Driver
	q   *virtiotest.Queue
}

func newRig(t *testing.T, opts rng.Options) *rig {
	t.Helper()
	d := rng.New(opts)
	drv, _ := virtiotest.Attach(t, d, 1<<20)
	t.Cleanup(d.Reset)
	require.NoError(t, drv.Init(virtio.TransportFeatures, 0))
	return &rig{dev: d, drv: drv, q: drv.Queue(0)}
}

func (r *rig) alloc(t *testing.T, n int) memory.GuestAddr {
	t.Helper()
	a, err := r.drv.Alloc(uint64(n), 64)
	require.NoError(t, err)
	return a
}

func (r *rig) read(t *testing.T, a memory.GuestAddr, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	require.NoError(t, r.drv.Mem.ReadAt(b, a))
	return b
}

// request posts bufs as one chain and returns the used length.
func (r *rig) request(t *testing.T, bufs []virtiotest.Buf) uint32 {
	t.Helper()
	h, err := r.q.Add(bufs)
	require.NoError(t, err)
	r.q.Kick()
	u, err := r.q.WaitUsed(virtiotest.DefaultTimeout)
	require.NoError(t, err)
	require.Equal(t, h, u.ID)
	return u.Len
}

func TestIdentity(t *testing.T) {
	r := newRig(t, rng.Options{})
	assert.Equal(t, uint32(virtio.DeviceEntropy), r.drv.Read32(virtio.RegDeviceID))
	assert.Equal(t, virtio.TransportFeatures, r.drv.DeviceFeatures(), "no device features (§5.4.3)")
	assert.Equal(t, []byte{0, 0, 0, 0}, r.drv.ReadConfig(0, 4), "no configuration space")
}

func TestFillsWritableBuffers(t *testing.T) {
	r := newRig(t, rng.Options{})
	sizes := []int{100, 4096, 10}
	var bufs []virtiotest.Buf
	for _, n := range sizes {
		bufs = append(bufs, virtiotest.Buf{Addr: r.alloc(t, n), Len: uint32(n), Writable: true})
	}
	require.Equal(t, uint32(4206), r.request(t, bufs))
	big := r.read(t, bufs[1].Addr, 4096)
	assert.False(t, bytes.Equal(big, make([]byte, 4096)), "random bytes, not zeros")
	first := append([]byte(nil), big...)
	require.Equal(t, uint32(4206), r.request(t, bufs))
	assert.NotEqual(t, first, r.read(t, bufs[1].Addr, 4096), "every request gets fresh bytes")
}

// counter is a deterministic source: 0, 1, 2, ... at most max per call.
type counter struct {
	next byte
	max  int
}

func (c *counter) read(b []byte) (int, error) {
	n := min(len(b), c.max)
	for i := range n {
		b[i] = c.next
		c.next++
	}
	return n, nil
}

func TestPlacementAndCap(t *testing.T) {
	src := &counter{max: 7} // short reads: the device keeps asking
	r := newRig(t, rng.Options{Source: src.read})
	in := r.alloc(t, 16)
	require.NoError(t, r.drv.Mem.WriteAt(bytes.Repeat([]byte{0xee}, 16), in))
	a, b := r.alloc(t, 5), r.alloc(t, 20)
	n := r.request(t, []virtiotest.Buf{{Addr: in, Len: 16}, {Addr: a, Len: 5, Writable: true}, {Addr: b, Len: 20, Writable: true}})
	require.Equal(t, uint32(25), n)
	assert.Equal(t, []byte{0, 1, 2, 3, 4}, r.read(t, a, 5))
	assert.Equal(t, byte(5), r.read(t, b, 1)[0])
	assert.Equal(t, bytes.Repeat([]byte{0xee}, 16), r.read(t, in, 16), "readable buffers are left alone")

	huge := r.alloc(t, 3*rng.MaxRequest)
	assert.Equal(t, uint32(rng.MaxRequest), r.request(t, []virtiotest.Buf{{Addr: huge, Len: 3 * rng.MaxRequest, Writable: true}}))
	assert.Equal(t, make([]byte, 16), r.read(t, huge+rng.MaxRequest, 16), "nothing past MaxRequest")
}

func TestOddChains(t *testing.T) {
	failing := func([]byte) (int, error) { return 0, errors.New("no entropy") }
	r := newRig(t, rng.Options{Source: failing})
	in := r.alloc(t, 64)
	assert.Zero(t, r.request(t, []virtiotest.Buf{{Addr: in, Len: 64}}), "nothing writable: nothing written")
	assert.Zero(t, r.request(t, []virtiotest.Buf{{Addr: in, Len: 64, Writable: true}}), "a failing source gives nothing")
	assert.False(t, r.drv.NeedsReset())
}

func TestRateLimit(t *testing.T) {
	l, err := ratelimit.New(ratelimit.Config{Bandwidth: ratelimit.Bucket{Size: 1000, RefillTime: time.Hour}}, nil)
	require.NoError(t, err)
	r := newRig(t, rng.Options{RateLimiter: l})
	require.Same(t, l, r.dev.Limiter())
	a := r.alloc(t, 1000)
	require.Equal(t, uint32(1000), r.request(t, []virtiotest.Buf{{Addr: a, Len: 1000, Writable: true}}))
	_, err = r.q.Add([]virtiotest.Buf{{Addr: a, Len: 1000, Writable: true}})
	require.NoError(t, err)
	r.q.Kick()
	_, err = r.q.WaitUsed(100 * time.Millisecond)
	require.ErrorIs(t, err, virtiotest.ErrTimeout, "the bucket is empty for an hour")
	require.NoError(t, l.Update(ratelimit.Config{}))
	u, err := r.q.WaitUsed(time.Second)
	require.NoError(t, err)
	assert.Equal(t, uint32(1000), u.Len)

	// A reset does not wait for tokens.
	require.NoError(t, l.Update(ratelimit.Config{Ops: ratelimit.Bucket{Size: 1, RefillTime: time.Hour}}))
	require.Equal(t, uint32(10), r.request(t, []virtiotest.Buf{{Addr: a, Len: 10, Writable: true}}))
	_, err = r.q.Add([]virtiotest.Buf{{Addr: a, Len: 10, Writable: true}})
	require.NoError(t, err)
	r.q.Kick()
	time.Sleep(20 * time.Millisecond)
	start := time.Now()
	r.drv.Reset()
	assert.Less(t, time.Since(start), time.Second)
}
