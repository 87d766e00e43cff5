package virtio_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vmm-dev/vmm/devices/virtio"
	"github.com/vmm-dev/vmm/devices/virtio/virtiotest"
	"github.com/vmm-dev/vmm/memory"
)

const (
	testRAM      = 1 << 20
	allFeatures  = virtio.TransportFeatures
	testQueueLen = 8
)

// queuePair is a device queue and the driver's view of the same rings.
type queuePair struct {
	mem *memory.Memory
	drv *virtiotest.Driver
	dev *virtio.Queue
	q   *virtiotest.Queue
	buf memory.GuestAddr // scratch buffer space for chains
}

func newQueuePair(t *testing.T, size uint16, features uint64) *queuePair {
	t.Helper()
	mem := virtiotest.NewMemory(testRAM)
	drv := virtiotest.NewDriver(nil, mem, nil)
	cfg, err := drv.AllocQueue(size)
	require.NoError(t, err)
	q, err := drv.AttachQueue(0, cfg, features)
	require.NoError(t, err)
	dev, err := virtio.NewQueue(mem, cfg, size, features)
	require.NoError(t, err)
	buf, err := drv.Alloc(64<<10, 4096)
	require.NoError(t, err)
	return &queuePair{mem: mem, drv: drv, dev: dev, q: q, buf: buf}
}

func TestNewQueueValidation(t *testing.T) {
	mem := virtiotest.NewMemory(testRAM)
	good := virtio.QueueConfig{Size: 8, DescTable: 0x1000, AvailRing: 0x2000, UsedRing: 0x3000}
	tests := []struct {
		name   string
		change func(*virtio.QueueConfig)
		want   error
	}{
		{"valid", func(*virtio.QueueConfig) {}, nil},
		{"valid tight alignment", func(c *virtio.QueueConfig) { c.DescTable, c.AvailRing, c.UsedRing = 0x1010, 0x2002, 0x3004 }, nil},
		{"size zero", func(c *virtio.QueueConfig) { c.Size = 0 }, virtio.ErrQueueSize},
		{"size not power of two", func(c *virtio.QueueConfig) { c.Size = 6 }, virtio.ErrQueueSize},
		{"size above device maximum", func(c *virtio.QueueConfig) { c.Size = 32 }, virtio.ErrQueueSize},
		{"descriptor table misaligned", func(c *virtio.QueueConfig) { c.DescTable = 0x1008 }, virtio.ErrQueueAlign},
		{"avail ring odd", func(c *virtio.QueueConfig) { c.AvailRing = 0x2001 }, virtio.ErrQueueAlign},
		{"used ring misaligned", func(c *virtio.QueueConfig) { c.UsedRing = 0x3002 }, virtio.ErrQueueAlign},
		{"descriptor table outside RAM", func(c *virtio.QueueConfig) { c.DescTable = testRAM }, virtio.ErrQueueAddress},
		{"descriptor table crosses end of RAM", func(c *virtio.QueueConfig) { c.DescTable = testRAM - 64 }, virtio.ErrQueueAddress},
		{"avail ring crosses end of RAM", func(c *virtio.QueueConfig) { c.AvailRing = testRAM - 8 }, virtio.ErrQueueAddress},
		{"used ring crosses end of RAM", func(c *virtio.QueueConfig) { c.UsedRing = testRAM - 16 }, virtio.ErrQueueAddress},
		{"used ring far beyond RAM", func(c *virtio.QueueConfig) { c.UsedRing = 0xffff_ffff_ffff_fff0 }, virtio.ErrQueueAddress},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := good
			tt.change(&cfg)
			q, err := virtio.NewQueue(mem, cfg, 16, allFeatures)
			if tt.want == nil {
				require.NoError(t, err)
				assert.Equal(t, cfg.Size, q.Size())
				return
			}
			require.ErrorIs(t, err, tt.want)
		})
	}
}

func TestPopValidChains(t *testing.T) {
	p := newQueuePair(t, testQueueLen, allFeatures)
	b := p.buf

	// Direct chain of the full queue size.
	var bufs []virtiotest.Buf
	for i := range testQueueLen {
		bufs = append(bufs, virtiotest.Buf{Addr: b + memory.GuestAddr(i*16), Len: 16, Writable: i >= 3})
	}
	head, err := p.q.Add(bufs)
	require.NoError(t, err)
	var c virtio.Chain
	ok, err := p.dev.Pop(&c)
	require.NoError(t, err)
	require.True(t, ok)
	assert.Equal(t, head, c.Head)
	assert.Len(t, c.Readable, 3)
	assert.Len(t, c.Writable, 5)
	assert.EqualValues(t, 48, c.ReadableLen())
	assert.EqualValues(t, 80, c.WritableLen())
	require.NoError(t, p.dev.Push(c.Head, 80))
	u, ok, err := p.q.PopUsed()
	require.NoError(t, err)
	require.True(t, ok)
	assert.Equal(t, virtiotest.Used{ID: head, Len: 80}, u)

	// Indirect chain.
	head, err = p.q.AddIndirect([]virtiotest.Buf{{Addr: b, Len: 512}, {Addr: b + 512, Len: 1, Writable: true}})
	require.NoError(t, err)
	ok, err = p.dev.Pop(&c)
	require.NoError(t, err)
	require.True(t, ok)
	assert.Equal(t, head, c.Head)
	require.Len(t, c.Readable, 1)
	require.Len(t, c.Writable, 1)
	assert.Len(t, c.Readable[0], 512)

	// Nothing more.
	ok, err = p.dev.Pop(&c)
	require.NoError(t, err)
	assert.False(t, ok)
}

func TestPopDirectThenIndirect(t *testing.T) {
	// §2.7.5.3.2: zero or more direct descriptors followed by one indirect
	// descriptor is valid, and the WRITE flag on the indirect one is ignored.
	p := newQueuePair(t, testQueueLen, allFeatures)
	table := p.buf + 0x1000
	require.NoError(t, p.drv.WriteDescriptors(table, []virtiotest.Desc{
		{Addr: uint64(p.buf + 16), Len: 8, Flags: virtio.DescFlagNext, Next: 1},
		{Addr: uint64(p.buf + 32), Len: 4, Flags: virtio.DescFlagWrite},
	}))
	p.q.WriteDesc(2, virtiotest.Desc{Addr: uint64(p.buf), Len: 16, Flags: virtio.DescFlagNext, Next: 5})
	p.q.WriteDesc(5, virtiotest.Desc{Addr: uint64(table), Len: 32, Flags: virtio.DescFlagIndirect | virtio.DescFlagWrite})
	p.q.PublishRaw(2)
	var c virtio.Chain
	ok, err := p.dev.Pop(&c)
	require.NoError(t, err)
	require.True(t, ok)
	assert.Len(t, c.Readable, 2)
	assert.Len(t, c.Writable, 1)
	assert.EqualValues(t, 24, c.ReadableLen())
}

func TestPopHostileChains(t *testing.T) {
	const n = testQueueLen
	type env struct {
		p     *queuePair
		table memory.GuestAddr // room for an indirect table
	}
	tests := []struct {
		name     string
		features uint64
		build    func(e env)
		want     error
	}{
		{"loop of two", allFeatures, func(e env) {
			e.p.q.WriteDesc(0, virtiotest.Desc{Addr: uint64(e.p.buf), Len: 1, Flags: virtio.DescFlagNext, Next: 1})
			e.p.q.WriteDesc(1, virtiotest.Desc{Addr: uint64(e.p.buf), Len: 1, Flags: virtio.DescFlagNext, Next: 0})
			e.p.q.PublishRaw(0)
		}, virtio.ErrDescriptorChain},
		{"self loop", allFeatures, func(e env) {
			e.p.q.WriteDesc(3, virtiotest.Desc{Addr: uint64(e.p.buf), Len: 1, Flags: virtio.DescFlagNext, Next: 3})
			e.p.q.PublishRaw(3)
		}, virtio.ErrDescriptorChain},
		{"next past table", allFeatures, func(e env) {
			e.p.q.WriteDesc(0, virtiotest.Desc{Addr: uint64(e.p.buf), Len: 1, Flags: virtio.DescFlagNext, Next: n})
			e.p.q.PublishRaw(0)
		}, virtio.ErrDescriptorChain},
		{"head past table", allFeatures, func(e env) { e.p.q.PublishRaw(n) }, virtio.ErrAvailRing},
		{"avail idx jumps past queue size", allFeatures, func(e env) { e.p.q.SetAvailIdx(n + 1) }, virtio.ErrAvailRing},
		{"avail idx moves backwards", allFeatures, func(e env) { e.p.q.SetAvailIdx(0xffff) }, virtio.ErrAvailRing},
		{"buffer outside RAM", allFeatures, func(e env) {
			e.p.q.WriteDesc(0, virtiotest.Desc{Addr: testRAM, Len: 1})
			e.p.q.PublishRaw(0)
		}, virtio.ErrBufferAddress},
		{"buffer crosses end of RAM", allFeatures, func(e env) {
			e.p.q.WriteDesc(0, virtiotest.Desc{Addr: testRAM - 8, Len: 16})
			e.p.q.PublishRaw(0)
		}, virtio.ErrBufferAddress},
		{"buffer wraps the address space", allFeatures, func(e env) {
			e.p.q.WriteDesc(0, virtiotest.Desc{Addr: ^uint64(0) - 7, Len: 0xffff_ffff})
			e.p.q.PublishRaw(0)
		}, virtio.ErrBufferAddress},
		{"readable after writable", allFeatures, func(e env) {
			e.p.q.WriteDesc(0, virtiotest.Desc{Addr: uint64(e.p.buf), Len: 1, Flags: virtio.DescFlagWrite | virtio.DescFlagNext, Next: 1})
			e.p.q.WriteDesc(1, virtiotest.Desc{Addr: uint64(e.p.buf), Len: 1})
			e.p.q.PublishRaw(0)
		}, virtio.ErrDescriptorOrder},
		{"indirect without the feature", virtio.FeatureVersion1, func(e env) {
			e.p.q.WriteDesc(0, virtiotest.Desc{Addr: uint64(e.table), Len: 16, Flags: virtio.DescFlagIndirect})
			e.p.q.PublishRaw(0)
		}, virtio.ErrIndirect},
		{"indirect with NEXT", allFeatures, func(e env) {
			e.p.q.WriteDesc(0, virtiotest.Desc{Addr: uint64(e.table), Len: 16, Flags: virtio.DescFlagIndirect | virtio.DescFlagNext, Next: 1})
			e.p.q.PublishRaw(0)
		}, virtio.ErrIndirect},
		{"indirect table length not a multiple of 16", allFeatures, func(e env) {
			e.p.q.WriteDesc(0, virtiotest.Desc{Addr: uint64(e.table), Len: 24, Flags: virtio.DescFlagIndirect})
			e.p.q.PublishRaw(0)
		}, virtio.ErrIndirect},
		{"indirect table of length zero", allFeatures, func(e env) {
			e.p.q.WriteDesc(0, virtiotest.Desc{Addr: uint64(e.table), Len: 0, Flags: virtio.DescFlagIndirect})
			e.p.q.PublishRaw(0)
		}, virtio.ErrIndirect},
		{"indirect table outside RAM", allFeatures, func(e env) {
			e.p.q.WriteDesc(0, virtiotest.Desc{Addr: testRAM - 16, Len: 32, Flags: virtio.DescFlagIndirect})
			e.p.q.PublishRaw(0)
		}, virtio.ErrBufferAddress},
		{"indirect inside indirect", allFeatures, func(e env) {
			require.NoError(t, e.p.drv.WriteDescriptors(e.table, []virtiotest.Desc{
				{Addr: uint64(e.table), Len: 16, Flags: virtio.DescFlagIndirect},
			}))
			e.p.q.WriteDesc(0, virtiotest.Desc{Addr: uint64(e.table), Len: 16, Flags: virtio.DescFlagIndirect})
			e.p.q.PublishRaw(0)
		}, virtio.ErrIndirect},
		{"loop inside indirect table", allFeatures, func(e env) {
			require.NoError(t, e.p.drv.WriteDescriptors(e.table, []virtiotest.Desc{
				{Addr: uint64(e.p.buf), Len: 1, Flags: virtio.DescFlagNext, Next: 1},
				{Addr: uint64(e.p.buf), Len: 1, Flags: virtio.DescFlagNext, Next: 0},
			}))
			e.p.q.WriteDesc(0, virtiotest.Desc{Addr: uint64(e.table), Len: 32, Flags: virtio.DescFlagIndirect})
			e.p.q.PublishRaw(0)
		}, virtio.ErrDescriptorChain},
		{"next past indirect table", allFeatures, func(e env) {
			require.NoError(t, e.p.drv.WriteDescriptors(e.table, []virtiotest.Desc{
				{Addr: uint64(e.p.buf), Len: 1, Flags: virtio.DescFlagNext, Next: 2},
				{Addr: uint64(e.p.buf), Len: 1},
			}))
			e.p.q.WriteDesc(0, virtiotest.Desc{Addr: uint64(e.table), Len: 32, Flags: virtio.DescFlagIndirect})
			e.p.q.PublishRaw(0)
		}, virtio.ErrDescriptorChain},
		{"indirect chain longer than the queue", allFeatures, func(e env) {
			descs := make([]virtiotest.Desc, n+1)
			for i := range descs {
				descs[i] = virtiotest.Desc{Addr: uint64(e.p.buf), Len: 1, Flags: virtio.DescFlagNext, Next: uint16(i + 1)}
			}
			descs[n].Flags = 0
			require.NoError(t, e.p.drv.WriteDescriptors(e.table, descs))
			e.p.q.WriteDesc(0, virtiotest.Desc{Addr: uint64(e.table), Len: uint32(len(descs)) * 16, Flags: virtio.DescFlagIndirect})
			e.p.q.PublishRaw(0)
		}, virtio.ErrDescriptorChain},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newQueuePair(t, n, tt.features)
			tt.build(env{p: p, table: p.buf + 0x8000})
			var c virtio.Chain
			ok, err := p.dev.Pop(&c)
			require.ErrorIs(t, err, tt.want)
			assert.False(t, ok)
			assert.True(t, p.dev.Broken())
			_, err = p.dev.Pop(&c)
			require.ErrorIs(t, err, virtio.ErrQueueBroken)
			require.ErrorIs(t, p.dev.Push(0, 0), virtio.ErrQueueBroken)
		})
	}
}

func TestIndexWrapAround(t *testing.T) {
	p := newQueuePair(t, 4, allFeatures)
	var c virtio.Chain
	for i := range 70000 {
		head, err := p.q.Add([]virtiotest.Buf{{Addr: p.buf, Len: 4, Writable: true}})
		require.NoError(t, err)
		ok, err := p.dev.Pop(&c)
		require.NoError(t, err)
		require.True(t, ok, "iteration %d", i)
		require.Equal(t, head, c.Head)
		require.NoError(t, p.dev.Push(c.Head, 4))
		u, ok, err := p.q.PopUsed()
		require.NoError(t, err)
		require.True(t, ok)
		require.Equal(t, head, u.ID)
	}
	assert.Equal(t, uint16(70000%65536), p.q.UsedIdx())
}

func TestNeedsInterruptWithoutEventIdx(t *testing.T) {
	p := newQueuePair(t, testQueueLen, virtio.FeatureVersion1)
	complete := func() {
		_, err := p.q.Add([]virtiotest.Buf{{Addr: p.buf, Len: 1, Writable: true}})
		require.NoError(t, err)
		var c virtio.Chain
		ok, err := p.dev.Pop(&c)
		require.NoError(t, err)
		require.True(t, ok)
		require.NoError(t, p.dev.Push(c.Head, 1))
		_, _, err = p.q.PopUsed()
		require.NoError(t, err)
	}
	assert.False(t, p.dev.NeedsInterrupt(), "nothing used yet")
	complete()
	assert.True(t, p.dev.NeedsInterrupt())
	assert.False(t, p.dev.NeedsInterrupt(), "nothing new since the last check")
	p.q.SetNoInterrupt(true)
	complete()
	assert.False(t, p.dev.NeedsInterrupt(), "VIRTQ_AVAIL_F_NO_INTERRUPT")
	p.q.SetNoInterrupt(false)
	complete()
	assert.True(t, p.dev.NeedsInterrupt())
}

func TestNeedsInterruptWithEventIdx(t *testing.T) {
	p := newQueuePair(t, testQueueLen, allFeatures)
	complete := func(n int) {
		for range n {
			_, err := p.q.Add([]virtiotest.Buf{{Addr: p.buf, Len: 1, Writable: true}})
			require.NoError(t, err)
			var c virtio.Chain
			ok, err := p.dev.Pop(&c)
			require.NoError(t, err)
			require.True(t, ok)
			require.NoError(t, p.dev.Push(c.Head, 1))
			_, _, err = p.q.PopUsed()
			require.NoError(t, err)
		}
	}
	// §2.7.7: notify when the entry at used_event is written.
	p.q.SetUsedEvent(2)
	complete(1) // entry 0
	assert.False(t, p.dev.NeedsInterrupt())
	complete(1) // entry 1
	assert.False(t, p.dev.NeedsInterrupt())
	complete(1) // entry 2
	assert.True(t, p.dev.NeedsInterrupt())
	complete(1) // entry 3: used_event already passed
	assert.False(t, p.dev.NeedsInterrupt())

	// A batch that steps over used_event still notifies.
	p.q.SetUsedEvent(5)
	complete(3) // entries 4, 5, 6
	assert.True(t, p.dev.NeedsInterrupt())

	// The no-interrupt flag is ignored under EVENT_IDX.
	p.q.SetNoInterrupt(true)
	p.q.SetUsedEvent(7)
	complete(1)
	assert.True(t, p.dev.NeedsInterrupt())
}

func TestEnableNotification(t *testing.T) {
	p := newQueuePair(t, testQueueLen, allFeatures)
	more, err := p.dev.EnableNotification()
	require.NoError(t, err)
	assert.False(t, more)
	assert.Equal(t, uint16(0), p.q.AvailEvent(), "asks for a kick at the next entry")

	_, err = p.q.Add([]virtiotest.Buf{{Addr: p.buf, Len: 1}})
	require.NoError(t, err)
	more, err = p.dev.EnableNotification()
	require.NoError(t, err)
	assert.True(t, more, "a buffer arrived before the device slept")

	var c virtio.Chain
	ok, err := p.dev.Pop(&c)
	require.NoError(t, err)
	require.True(t, ok)
	more, err = p.dev.EnableNotification()
	require.NoError(t, err)
	assert.False(t, more)
	assert.Equal(t, uint16(1), p.q.AvailEvent())
}

// The queue marks what the device may write in the VMM's dirty log: the
// writable buffers of each chain it pops and the used ring it pushes to,
// and nothing the device only reads.
func TestQueueMarksDeviceWrites(t *testing.T) {
	p := newQueuePair(t, testQueueLen, allFeatures)
	p.mem.TrackDirty()
	readable, writable := p.buf, p.buf+3*memory.PageSize
	_, err := p.q.Add([]virtiotest.Buf{{Addr: readable, Len: 100}, {Addr: writable, Len: 2 * memory.PageSize, Writable: true}})
	require.NoError(t, err)
	p.mem.TakeDirty() // the driver's own writes above
	var c virtio.Chain
	ok, err := p.dev.Pop(&c)
	require.NoError(t, err)
	require.True(t, ok)
	pages := func() []uint64 {
		var out []uint64
		for i, w := range p.mem.TakeDirty()[0] {
			for b := range 64 {
				if w&(1<<b) != 0 {
					out = append(out, uint64(i*64+b))
				}
			}
		}
		return out
	}
	wp := uint64(writable) / memory.PageSize
	assert.Equal(t, []uint64{wp, wp + 1}, pages(), "Pop marks the writable buffer only")
	require.NoError(t, p.dev.Push(c.Head, 10))
	used := uint64(p.q.Config.UsedRing) / memory.PageSize
	assert.Equal(t, []uint64{used}, pages(), "Push marks the used ring")
}

// The ring state is the guest memory's view: three buffers made
// available, one taken and returned, the device asking for the next
// notification, the driver for an interrupt past entry 1.
func TestRingState(t *testing.T) {
	p := newQueuePair(t, testQueueLen, allFeatures)
	for range 3 {
		_, err := p.q.Add([]virtiotest.Buf{{Addr: p.buf, Len: 1, Writable: true}})
		require.NoError(t, err)
	}
	var c virtio.Chain
	ok, err := p.dev.Pop(&c)
	require.NoError(t, err)
	require.True(t, ok)
	require.NoError(t, p.dev.Push(c.Head, 1))
	p.q.SetUsedEvent(1)
	_, err = p.dev.EnableNotification()
	require.NoError(t, err)

	st := p.dev.RingState()
	assert.Equal(t, virtio.RingState{Size: testQueueLen, AvailIdx: 3, UsedIdx: 1, AvailEvent: 1, UsedEvent: 1, EventIdx: true}, st)
	assert.EqualValues(t, 2, st.InFlight())
	assert.Equal(t, "size 8, avail idx 3, used idx 1 (2 in flight), avail_event 1, used_event 1", st.String())

	p.dev.Break()
	assert.Contains(t, p.dev.RingState().String(), ", broken")

	plain := newQueuePair(t, testQueueLen, allFeatures&^virtio.FeatureEventIdx)
	plain.q.SetNoInterrupt(true)
	assert.Equal(t, "size 8, avail idx 0, used idx 0 (0 in flight), interrupts suppressed (NO_INTERRUPT)", plain.dev.RingState().String())
}
