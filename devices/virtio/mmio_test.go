package virtio_test

import (
	"encoding/binary"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/vmm-dev/vmm/devices/virtio"
	"github.com/vmm-dev/vmm/devices/virtio/virtiotest"
)

func TestMMIORegisters(t *testing.T) {
	r := newEchoRig(t, 16, 64)
	offered := virtio.TransportFeatures | 1<<3
	tests := []struct {
		name  string
		setup func()
		reg   uint64
		want  uint32
	}{
		{"magic", nil, virtio.RegMagicValue, 0x74726976},
		{"version", nil, virtio.RegVersion, 2},
		{"device id", nil, virtio.RegDeviceID, 0x7e},
		{"vendor id", nil, virtio.RegVendorID, virtio.VendorID},
		{"features low", func() { r.drv.Write32(virtio.RegDeviceFeaturesSel, 0) }, virtio.RegDeviceFeatures, uint32(offered)},
		{"features high", func() { r.drv.Write32(virtio.RegDeviceFeaturesSel, 1) }, virtio.RegDeviceFeatures, uint32(offered >> 32)},
		{"features past 64 bits", func() { r.drv.Write32(virtio.RegDeviceFeaturesSel, 2) }, virtio.RegDeviceFeatures, 0},
		{"queue 0 max", func() { r.drv.Write32(virtio.RegQueueSel, 0) }, virtio.RegQueueNumMax, 16},
		{"queue 1 max", func() { r.drv.Write32(virtio.RegQueueSel, 1) }, virtio.RegQueueNumMax, 64},
		{"missing queue max", func() { r.drv.Write32(virtio.RegQueueSel, 2) }, virtio.RegQueueNumMax, 0},
		{"missing queue ready", func() { r.drv.Write32(virtio.RegQueueSel, 7) }, virtio.RegQueueReady, 0},
		{"status after reset", nil, virtio.RegStatus, 0},
		{"interrupt status", nil, virtio.RegInterruptStatus, 0},
		{"no shared memory", nil, virtio.RegSHMLenLow, 0xffff_ffff},
		{"config generation", nil, virtio.RegConfigGeneration, 0},
		{"unknown register", nil, 0x0f0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.setup != nil {
				tt.setup()
			}
			assert.Equal(t, tt.want, r.drv.Read32(tt.reg))
		})
	}
}

func TestMMIOAccessWidths(t *testing.T) {
	r := newEchoRig(t, 16)
	// §4.2.2.2: control registers are 32-bit aligned accesses only.
	for _, tc := range []struct {
		off uint64
		n   int
	}{{virtio.RegMagicValue, 2}, {virtio.RegMagicValue + 1, 4}, {virtio.RegMagicValue, 8}, {virtio.RegMagicValue, 1}} {
		b := []byte{0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa}[:tc.n]
		r.mmio.Read(tc.off, b)
		assert.Equal(t, make([]byte, tc.n), b, "read %d bytes at %#x", tc.n, tc.off)
	}
	r.mmio.Write(virtio.RegStatus, []byte{1, 0})
	assert.Zero(t, r.drv.Status(), "a 16-bit status write is ignored")

	// Config space is byte-granular.
	assert.Equal(t, []byte{3}, r.drv.ReadConfig(2, 1))
	assert.Equal(t, []byte{5, 6}, r.drv.ReadConfig(4, 2))
	assert.Equal(t, []byte{1, 2, 3, 4, 5, 6, 7, 8}, r.drv.ReadConfig(0, 8))
	assert.Equal(t, []byte{7, 8, 0, 0}, r.drv.ReadConfig(6, 4), "past the end reads zero")
}

func TestFeatureNegotiation(t *testing.T) {
	tests := []struct {
		name     string
		features uint64
		ok       bool
	}{
		{"everything offered", virtio.TransportFeatures | 1<<3, true},
		{"version 1 only", virtio.FeatureVersion1, true},
		{"missing version 1", virtio.FeatureIndirectDesc, false},
		{"not offered", virtio.FeatureVersion1 | 1<<4, false},
		{"not offered, high word", virtio.FeatureVersion1 | 1<<40, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newEchoRig(t, 16)
			r.drv.Reset()
			r.drv.SetStatus(virtio.StatusAcknowledge | virtio.StatusDriver)
			err := r.drv.NegotiateExactly(tt.features)
			if tt.ok {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, virtiotest.ErrRefused)
			// DRIVER_OK without FEATURES_OK is ignored.
			r.drv.SetStatus(r.drv.Status() | virtio.StatusDriverOK)
			assert.Zero(t, r.drv.Status()&virtio.StatusDriverOK)
			assert.Zero(t, r.dev.activations)
		})
	}
}

func TestFeaturesFrozenAfterFeaturesOK(t *testing.T) {
	r := newEchoRig(t, 16)
	require.NoError(t, r.drv.Negotiate(virtio.FeatureVersion1))
	r.drv.Write32(virtio.RegDriverFeaturesSel, 0)
	r.drv.Write32(virtio.RegDriverFeatures, uint32(virtio.FeatureIndirectDesc))
	_, err := r.drv.SetupQueue(0, 0)
	require.NoError(t, err)
	require.NoError(t, r.drv.DriverOK())
	assert.Equal(t, virtio.FeatureVersion1, r.dev.lastAct.Features)
}

func TestQueueSetupRejected(t *testing.T) {
	tests := []struct {
		name string
		cfg  virtio.QueueConfig
		want error
	}{
		{"size not a power of two", virtio.QueueConfig{Size: 12, DescTable: 0x10000, AvailRing: 0x11000, UsedRing: 0x12000}, virtio.ErrQueueSize},
		{"size above maximum", virtio.QueueConfig{Size: 32, DescTable: 0x10000, AvailRing: 0x11000, UsedRing: 0x12000}, virtio.ErrQueueSize},
		{"size zero", virtio.QueueConfig{Size: 0, DescTable: 0x10000, AvailRing: 0x11000, UsedRing: 0x12000}, virtio.ErrQueueSize},
		{"descriptors misaligned", virtio.QueueConfig{Size: 16, DescTable: 0x10004, AvailRing: 0x11000, UsedRing: 0x12000}, virtio.ErrQueueAlign},
		{"used ring misaligned", virtio.QueueConfig{Size: 16, DescTable: 0x10000, AvailRing: 0x11000, UsedRing: 0x12002}, virtio.ErrQueueAlign},
		{"avail ring outside RAM", virtio.QueueConfig{Size: 16, DescTable: 0x10000, AvailRing: 1 << 40, UsedRing: 0x12000}, virtio.ErrQueueAddress},
		{"used ring above 4 GiB", virtio.QueueConfig{Size: 16, DescTable: 0x10000, AvailRing: 0x11000, UsedRing: 0x1_0001_2000}, virtio.ErrQueueAddress},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newEchoRig(t, 16)
			require.NoError(t, r.drv.Negotiate(virtio.TransportFeatures))
			_, err := r.drv.SetupQueueAt(0, tt.cfg)
			require.ErrorIs(t, err, virtiotest.ErrRefused)
			assert.True(t, r.drv.NeedsReset())
			require.ErrorIs(t, r.mmio.Failure(), tt.want)

			// DRIVER_OK on a broken device does not activate it but tells
			// the driver through a config change interrupt.
			r.drv.SetStatus(r.drv.Status() | virtio.StatusDriverOK)
			assert.Zero(t, r.dev.activations)
			assert.Equal(t, virtio.InterruptConfigChange, r.drv.AckInterrupts())

			// A reset recovers the device.
			require.NoError(t, r.drv.Init(virtio.TransportFeatures, 0))
			assert.False(t, r.drv.NeedsReset())
			assert.Equal(t, 1, r.dev.activations)
		})
	}
}

func TestQueueReadyBeforeFeaturesOK(t *testing.T) {
	r := newEchoRig(t, 16)
	r.drv.Reset()
	r.drv.SetStatus(virtio.StatusAcknowledge | virtio.StatusDriver)
	_, err := r.drv.SetupQueue(0, 16)
	require.ErrorIs(t, err, virtiotest.ErrRefused)
	assert.True(t, r.drv.NeedsReset())
}

func TestEchoRoundTrip(t *testing.T) {
	for _, features := range []uint64{virtio.FeatureVersion1, virtio.TransportFeatures} {
		for _, indirect := range []bool{false, true} {
			if indirect && features&virtio.FeatureIndirectDesc == 0 {
				continue
			}
			t.Run("", func(t *testing.T) {
				r := newEchoRig(t, 16, 8)
				require.NoError(t, r.drv.Init(features, 0, 0))
				in, err := r.drv.Alloc(4096, 16)
				require.NoError(t, err)
				out, err := r.drv.Alloc(4096, 16)
				require.NoError(t, err)
				for qi := range uint16(2) {
					q := r.drv.Queue(qi)
					for round := range 40 {
						msg := []byte{byte(qi), byte(round), 'h', 'i'}
						require.NoError(t, r.drv.Mem.WriteAt(msg, in))
						bufs := []virtiotest.Buf{{Addr: in, Len: 2}, {Addr: in + 2, Len: 2}, {Addr: out, Len: 3, Writable: true}, {Addr: out + 3, Len: 100, Writable: true}}
						add := q.Add
						if indirect {
							add = q.AddIndirect
						}
						head, err := add(bufs)
						require.NoError(t, err)
						q.Kick()
						u, err := q.WaitUsed(virtiotest.DefaultTimeout)
						require.NoError(t, err)
						assert.Equal(t, virtiotest.Used{ID: head, Len: 4}, u)
						got := make([]byte, 4)
						require.NoError(t, r.drv.Mem.ReadAt(got, out))
						assert.Equal(t, msg, got)
					}
				}
				assert.NotZero(t, r.irq.Count())
				assert.False(t, r.drv.NeedsReset())
			})
		}
	}
}

func TestManyInFlight(t *testing.T) {
	// Fill the queue before kicking; with EVENT_IDX the driver then relies
	// on the device keeping avail_event current.
	r := newEchoRig(t, 8)
	require.NoError(t, r.drv.Init(virtio.TransportFeatures, 0))
	q := r.drv.Queue(0)
	buf, err := r.drv.Alloc(4096, 16)
	require.NoError(t, err)
	for round := range 200 {
		bufs := []virtiotest.Buf{{Addr: buf, Len: 8}, {Addr: buf + 8, Len: 8, Writable: true}}
		for i := range 6 { // 2 direct chains and 4 indirect ones use all 8 descriptors
			add := q.AddIndirect
			if i < 2 {
				add = q.Add
			}
			_, err := add(bufs)
			require.NoError(t, err)
		}
		require.Zero(t, q.Free())
		q.Kick()
		for range 6 {
			_, err := q.WaitUsed(virtiotest.DefaultTimeout)
			require.NoError(t, err, "round %d", round)
		}
	}
}

func TestInterruptAck(t *testing.T) {
	r := newEchoRig(t, 8)
	require.NoError(t, r.drv.Init(virtio.FeatureVersion1, 0))
	q := r.drv.Queue(0)
	buf, err := r.drv.Alloc(64, 16)
	require.NoError(t, err)
	_, err = q.Add([]virtiotest.Buf{{Addr: buf, Len: 8, Writable: true}})
	require.NoError(t, err)
	q.Kick()
	require.True(t, r.irq.WaitFor(1, virtiotest.DefaultTimeout))
	assert.Equal(t, virtio.InterruptUsedBuffer, r.drv.Read32(virtio.RegInterruptStatus))
	r.drv.Write32(virtio.RegInterruptACK, virtio.InterruptUsedBuffer)
	assert.Zero(t, r.drv.Read32(virtio.RegInterruptStatus))
}

func TestNotifyWithoutDeviceSignalsEventFD(t *testing.T) {
	// A QueueNotify that reaches the transport (no KVM_IOEVENTFD) must
	// signal the same eventfd KVM would.
	r := newEchoRig(t, 8, 8)
	fds := r.mmio.QueueNotifyFDs()
	require.Len(t, fds, 2)
	r.drv.Write32(virtio.RegQueueNotify, 1)
	r.drv.Write32(virtio.RegQueueNotify, 1)
	r.drv.Write32(virtio.RegQueueNotify, 9) // no such queue: ignored
	var b [8]byte
	n, err := unix.Read(fds[1], b[:])
	require.NoError(t, err)
	require.Equal(t, 8, n)
	assert.Equal(t, uint64(2), binary.NativeEndian.Uint64(b[:]))
	_, err = unix.Read(fds[0], b[:])
	require.ErrorIs(t, err, unix.EAGAIN)
}

func TestHostileChainMarksNeedsReset(t *testing.T) {
	r := newEchoRig(t, 8)
	require.NoError(t, r.drv.Init(virtio.TransportFeatures, 0))
	q := r.drv.Queue(0)
	buf, err := r.drv.Alloc(64, 16)
	require.NoError(t, err)
	q.WriteDesc(0, virtiotest.Desc{Addr: uint64(buf), Len: 8, Flags: virtio.DescFlagNext, Next: 0})
	q.PublishRaw(0)
	q.Notify()

	require.True(t, r.irq.WaitFor(1, virtiotest.DefaultTimeout))
	require.Eventually(t, r.drv.NeedsReset, virtiotest.DefaultTimeout, time.Millisecond)
	require.ErrorIs(t, r.mmio.Failure(), virtio.ErrDescriptorChain)
	assert.Equal(t, virtio.InterruptConfigChange, r.drv.AckInterrupts()&virtio.InterruptConfigChange)

	// Further kicks are harmless; a reset brings the device back.
	q.Notify()
	require.NoError(t, r.drv.Init(virtio.TransportFeatures, 0))
	q = r.drv.Queue(0)
	_, err = q.Add([]virtiotest.Buf{{Addr: buf, Len: 4}, {Addr: buf + 8, Len: 4, Writable: true}})
	require.NoError(t, err)
	q.Kick()
	_, err = q.WaitUsed(virtiotest.DefaultTimeout)
	require.NoError(t, err)
	assert.Equal(t, 2, r.dev.activations)
}

func TestResetStopsWorkers(t *testing.T) {
	r := newEchoRig(t, 8)
	require.NoError(t, r.drv.Init(virtio.TransportFeatures, 0))
	r.drv.Reset()
	assert.Equal(t, 1, r.dev.activations)
	assert.GreaterOrEqual(t, r.dev.resets, 1)
	assert.Empty(t, r.dev.workers)
	assert.Zero(t, r.drv.Status())
	r.drv.Write32(virtio.RegQueueSel, 0)
	assert.Zero(t, r.drv.Read32(virtio.RegQueueReady), "reset clears QueueReady (§4.2.2.1)")
}

func TestConfigChanged(t *testing.T) {
	r := newEchoRig(t, 8)
	require.NoError(t, r.mmio.ConfigChanged())
	assert.Zero(t, r.irq.Count(), "no interrupt before DRIVER_OK")
	require.NoError(t, r.drv.Init(virtio.TransportFeatures, 0))
	require.NoError(t, r.mmio.ConfigChanged())
	assert.Equal(t, uint32(2), r.drv.Read32(virtio.RegConfigGeneration))
	assert.Equal(t, virtio.InterruptConfigChange, r.drv.AckInterrupts())
}

func TestNewMMIORejectsBadDevices(t *testing.T) {
	mem := virtiotest.NewMemory(testRAM)
	for _, sizes := range [][]uint16{nil, {0}, {3}, {1 << 15, 100}} {
		_, err := virtio.NewMMIO(&echoDevice{maxSizes: sizes}, mem, nil)
		require.ErrorIs(t, err, virtio.ErrDevice, "sizes %v", sizes)
	}
}

func TestClosedTransportIgnoresAccesses(t *testing.T) {
	mem := virtiotest.NewMemory(testRAM)
	m, err := virtio.NewMMIO(&echoDevice{maxSizes: []uint16{8}}, mem, nil)
	require.NoError(t, err)
	require.NoError(t, m.Close())
	require.NoError(t, m.Close())
	d := virtiotest.NewDriver(m, mem, nil)
	assert.Zero(t, d.Read32(virtio.RegMagicValue))
	d.Write32(virtio.RegQueueNotify, 0)
}
