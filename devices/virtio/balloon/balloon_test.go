package balloon_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vmm-dev/vmm/devices/virtio"
	"github.com/vmm-dev/vmm/devices/virtio/balloon"
	"github.com/vmm-dev/vmm/devices/virtio/virtiotest"
	"github.com/vmm-dev/vmm/memory"
)

const ram = 8 << 20

func attach(t *testing.T, cfg balloon.Config, features uint64) (*balloon.Balloon, *virtiotest.Driver) {
	t.Helper()
	b := balloon.New(cfg)
	drv, _ := virtiotest.Attach(t, b, ram)
	sizes := []uint16{0, 0}
	if cfg.StatsInterval > 0 && features&balloon.FeatureStatsVQ != 0 {
		sizes = append(sizes, 0)
	}
	require.NoError(t, drv.Init(features, sizes...))
	return b, drv
}

func pfnList(pfns ...uint32) []byte {
	b := make([]byte, 4*len(pfns))
	for i, p := range pfns {
		binary.LittleEndian.PutUint32(b[4*i:], p)
	}
	return b
}

// send puts data in one readable buffer on queue q and waits for it.
func send(t *testing.T, drv *virtiotest.Driver, q uint16, data []byte) {
	t.Helper()
	a, err := drv.Alloc(uint64(len(data)), 8)
	require.NoError(t, err)
	require.NoError(t, drv.Mem.WriteAt(data, a))
	vq := drv.Queue(q)
	_, err = vq.Add([]virtiotest.Buf{{Addr: a, Len: uint32(len(data))}})
	require.NoError(t, err)
	vq.Kick()
	_, err = vq.WaitUsed(virtiotest.DefaultTimeout)
	require.NoError(t, err)
}

func TestIdentityAndConfig(t *testing.T) {
	b, drv := attach(t, balloon.Config{TargetPages: 1000}, virtio.TransportFeatures)
	assert.Equal(t, uint32(virtio.DeviceBalloon), drv.Read32(virtio.RegDeviceID))
	assert.Equal(t, virtio.TransportFeatures, drv.DeviceFeatures(), "no stats, no deflate-on-OOM")
	assert.Equal(t, uint32(1000), binary.LittleEndian.Uint32(drv.ReadConfig(0, 4)), "num_pages")
	b.SetTarget(65536)
	assert.Equal(t, uint32(65536), binary.LittleEndian.Uint32(drv.ReadConfig(0, 4)))
	// The driver writes actual; num_pages is not its to write.
	drv.Dev.Write(virtio.RegConfig+4, []byte{0x10, 0x27, 0, 0})
	drv.Dev.Write(virtio.RegConfig, []byte{1, 0, 0, 0})
	assert.Equal(t, uint32(10000), b.Actual())
	assert.Equal(t, uint32(65536), b.Target())
	assert.Equal(t, []byte{0x10, 0x27, 0, 0}, drv.ReadConfig(4, 4))

	b2 := balloon.New(balloon.Config{DeflateOnOOM: true, StatsInterval: time.Second})
	assert.Equal(t, uint64(balloon.FeatureDeflateOnOOM|balloon.FeatureStatsVQ), b2.Features())
	assert.Len(t, b2.QueueMaxSizes(), 3)
	assert.Error(t, b2.SetStatsInterval(0), "statistics cannot be turned off after start")
	assert.Error(t, b.SetStatsInterval(time.Second), "nor on")
}

func TestInflateGivesPagesBack(t *testing.T) {
	b, drv := attach(t, balloon.Config{}, virtio.TransportFeatures)
	fill := bytes.Repeat([]byte{0xab}, balloon.PageSize)
	for _, pfn := range []uint32{1000, 1001, 1002, 1003, 1004, 1500} {
		require.NoError(t, drv.Mem.WriteAt(fill, memory.GuestAddr(pfn)*balloon.PageSize))
	}
	// Four neighbours, one alone, one past guest RAM, split across two
	// buffers in the middle of a PFN.
	list := pfnList(1000, 1001, 1002, 1003, 1500, 1<<30)
	a, err := drv.Alloc(uint64(len(list)), 8)
	require.NoError(t, err)
	require.NoError(t, drv.Mem.WriteAt(list, a))
	q := drv.Queue(balloon.InflateQueue)
	_, err = q.Add([]virtiotest.Buf{{Addr: a, Len: 6}, {Addr: a + 6, Len: uint32(len(list) - 6)}})
	require.NoError(t, err)
	q.Kick()
	_, err = q.WaitUsed(virtiotest.DefaultTimeout)
	require.NoError(t, err)

	page := make([]byte, balloon.PageSize)
	for _, pfn := range []uint32{1000, 1001, 1002, 1003, 1500} {
		require.NoError(t, drv.Mem.ReadAt(page, memory.GuestAddr(pfn)*balloon.PageSize))
		assert.Equal(t, make([]byte, balloon.PageSize), page, "page %d went back to the host", pfn)
	}
	require.NoError(t, drv.Mem.ReadAt(page, 1004*balloon.PageSize))
	assert.Equal(t, fill, page, "its neighbour was not in the list")
	assert.Equal(t, balloon.Counters{InflatedPages: 5, BadPFNs: 1}, b.Counters())
	assert.False(t, drv.NeedsReset())

	send(t, drv, balloon.DeflateQueue, pfnList(1000, 1001))
	assert.Equal(t, uint64(2), b.Counters().DeflatedPages)
}

func stat(tag uint16, v uint64) []byte {
	b := make([]byte, 10)
	binary.LittleEndian.PutUint16(b, tag)
	binary.LittleEndian.PutUint64(b[2:], v)
	return b
}

func TestStatistics(t *testing.T) {
	b, drv := attach(t, balloon.Config{StatsInterval: 50 * time.Millisecond}, virtio.TransportFeatures|balloon.FeatureStatsVQ)
	q := drv.Queue(balloon.StatsQueue)
	require.NotNil(t, q)
	a, err := drv.Alloc(64, 8)
	require.NoError(t, err)
	report := func(free uint64) {
		data := append(append(stat(balloon.TagMemFree, free), stat(balloon.TagMemTot, 1<<30)...), stat(77, 1)...)
		require.NoError(t, drv.Mem.WriteAt(append(data, 1, 2, 3), a))
		_, err := q.Add([]virtiotest.Buf{{Addr: a, Len: uint32(len(data) + 3)}})
		require.NoError(t, err)
		q.Kick()
	}
	report(123)
	require.Eventually(t, func() bool { return b.Stats().Valid[balloon.TagMemFree] }, 5*time.Second, time.Millisecond)
	st := b.Stats()
	assert.Equal(t, uint64(123), st.Values[balloon.TagMemFree])
	assert.Equal(t, uint64(1<<30), st.Values[balloon.TagMemTot])
	assert.False(t, st.Valid[balloon.TagSwapIn])
	// The device returns the buffer when it wants the next report.
	start := time.Now()
	_, err = q.WaitUsed(virtiotest.DefaultTimeout)
	require.NoError(t, err)
	assert.GreaterOrEqual(t, time.Since(start), 30*time.Millisecond)
	report(456)
	require.Eventually(t, func() bool { return b.Stats().Values[balloon.TagMemFree] == 456 }, 5*time.Second, time.Millisecond)
	require.NoError(t, b.SetStatsInterval(time.Hour))
	// A reset does not wait for the hour.
	start = time.Now()
	drv.Reset()
	assert.Less(t, time.Since(start), time.Second)
}

// TestSnapshotCycle: a quiesce for a snapshot keeps the target and the
// driver's count, and gives the statistics buffer the device held back to
// its ring, so the device started again (the VM that goes on) or a new one
// restored on the same rings (a clone) takes it anew.
func TestSnapshotCycle(t *testing.T) {
	cfg := balloon.Config{TargetPages: 4096, StatsInterval: time.Hour}
	b := balloon.New(cfg)
	drv, mmio := virtiotest.Attach(t, b, ram)
	require.NoError(t, drv.Init(virtio.TransportFeatures|balloon.FeatureStatsVQ, 0, 0, 0))
	drv.Dev.Write(virtio.RegConfig+4, []byte{0, 0x10, 0, 0}) // actual = 4096
	q := drv.Queue(balloon.StatsQueue)
	a, err := drv.Alloc(64, 8)
	require.NoError(t, err)
	report := func(free uint64) {
		require.NoError(t, drv.Mem.WriteAt(stat(balloon.TagMemFree, free), a))
		_, err := q.Add([]virtiotest.Buf{{Addr: a, Len: 10}})
		require.NoError(t, err)
		q.Kick()
	}
	report(7)
	require.Eventually(t, func() bool { return b.Stats().Values[balloon.TagMemFree] == 7 }, 5*time.Second, time.Millisecond)

	// The VM that goes on: the device takes the buffer again and returns
	// it at its next poll.
	mmio.Quiesce()
	mmio.Unquiesce()
	assert.Equal(t, uint32(4096), b.Actual(), "a quiesce is not a driver reset")
	require.NoError(t, b.SetStatsInterval(time.Millisecond))
	_, err = q.WaitUsed(virtiotest.DefaultTimeout)
	require.NoError(t, err, "the device took the buffer again after its quiesce")

	// A clone: the state saved with the buffer held goes into a new device.
	require.NoError(t, b.SetStatsInterval(time.Hour))
	report(8)
	require.Eventually(t, func() bool { return b.Stats().Values[balloon.TagMemFree] == 8 }, 5*time.Second, time.Millisecond)
	mmio.Quiesce()
	st := b.Save()
	assert.Equal(t, balloon.State{TargetPages: 4096, ActualPages: 4096, StatsInterval: time.Hour}, st)
	cs, err := mmio.Save()
	require.NoError(t, err)
	b2 := balloon.New(cfg)
	assert.Error(t, b2.Restore(balloon.State{StatsInterval: 0}), "statistics were offered")
	st.StatsInterval = time.Millisecond
	require.NoError(t, b2.Restore(st))
	irq := virtiotest.NewIRQ()
	m2, err := virtio.NewMMIO(b2, drv.Mem, irq)
	require.NoError(t, err)
	t.Cleanup(func() {
		if err := errors.Join(m2.Close(), irq.Close()); err != nil {
			t.Error(err)
		}
	})
	require.NoError(t, m2.Restore(virtio.MMIOState{Core: cs.Core}))
	assert.Equal(t, uint32(4096), b2.Actual())
	assert.Equal(t, uint32(4096), b2.Target())
	_, err = q.WaitUsed(virtiotest.DefaultTimeout)
	require.NoError(t, err, "the restored device took the buffer from the restored ring")
	assert.Equal(t, uint64(8), b2.Stats().Values[balloon.TagMemFree])
}
