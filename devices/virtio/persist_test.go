package virtio_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vmm-dev/vmm/devices/virtio"
	"github.com/vmm-dev/vmm/devices/virtio/virtiotest"
)

// A device quiesced and saved mid-conversation comes back in a new
// transport on the same guest memory: the request the driver made
// around the snapshot, whose notification the new device never saw, is
// served (the restore kicks every queue), and the rings go on from
// where they were.
func TestSaveRestoreMMIO(t *testing.T) {
	r := newEchoRig(t, 16, 8)
	require.NoError(t, r.drv.Init(virtio.TransportFeatures, 0, 0))
	in, err := r.drv.Alloc(4096, 16)
	require.NoError(t, err)
	out, err := r.drv.Alloc(4096, 16)
	require.NoError(t, err)
	q := r.drv.Queue(0)
	request := func(msg string) uint16 {
		require.NoError(t, r.drv.Mem.WriteAt([]byte(msg), in))
		head, err := q.Add([]virtiotest.Buf{{Addr: in, Len: uint32(len(msg))}, {Addr: out, Len: 64, Writable: true}})
		require.NoError(t, err)
		return head
	}
	for i := range 5 {
		request("hello")
		q.Kick()
		_, err := q.WaitUsed(virtiotest.DefaultTimeout)
		require.NoError(t, err, "round %d", i)
	}

	_, err = r.mmio.Save()
	require.Error(t, err, "a running device refuses to be saved")
	// Quiesced, the device can be saved; started again, it serves on
	// from its queues.
	r.mmio.Quiesce()
	_, err = r.mmio.Save()
	require.NoError(t, err)
	r.mmio.Unquiesce()
	request("again")
	q.Kick()
	_, err = q.WaitUsed(virtiotest.DefaultTimeout)
	require.NoError(t, err)

	r.mmio.Quiesce()
	st, err := r.mmio.Save()
	require.NoError(t, err)
	assert.Equal(t, uint16(6), st.Core.Queues[0].NextAvail)
	assert.Equal(t, uint16(6), st.Core.Queues[0].NextUsed)
	assert.True(t, st.Core.Queues[0].Ready)
	assert.Equal(t, virtio.DeviceType(0x7e), st.Core.DeviceType)

	head := request("after the snapshot") // published, never notified

	dev2 := &echoDevice{maxSizes: []uint16{16, 8}, features: 1 << 3}
	irq2 := virtiotest.NewIRQ()
	t.Cleanup(func() { irq2.Close() })
	m2, err := virtio.NewMMIO(dev2, r.drv.Mem, irq2)
	require.NoError(t, err)
	t.Cleanup(func() { m2.Close() })
	require.NoError(t, m2.Restore(st))
	assert.Equal(t, r.mmio.Status(), m2.Status())
	deadline := time.Now().Add(virtiotest.DefaultTimeout)
	var u virtiotest.Used
	for {
		var ok bool
		u, ok, err = q.PopUsed()
		require.NoError(t, err)
		if ok || time.Now().After(deadline) {
			require.True(t, ok, "the request made around the snapshot is served after the restore")
			break
		}
		time.Sleep(time.Millisecond)
	}
	assert.Equal(t, virtiotest.Used{ID: head, Len: 18}, u)
	got := make([]byte, 18)
	require.NoError(t, r.drv.Mem.ReadAt(got, out))
	assert.Equal(t, "after the snapshot", string(got))
	assert.Equal(t, 1, dev2.activations)

	assert.ErrorIs(t, m2.Restore(st), virtio.ErrState, "a set-up device refuses a restore")
	// Bad states are refused before anything is activated.
	for name, mod := range map[string]func(*virtio.MMIOState){
		"other device":     func(s *virtio.MMIOState) { s.Core.DeviceType = 2 },
		"queue count":      func(s *virtio.MMIOState) { s.Core.Queues = s.Core.Queues[:1] },
		"unoffered":        func(s *virtio.MMIOState) { s.Core.DriverFeatures |= 1 << 50 },
		"ring outside RAM": func(s *virtio.MMIOState) { s.Core.Queues[0].Desc = 1 << 40 },
		"too many in flight": func(s *virtio.MMIOState) {
			s.Core.Queues[0].NextAvail = s.Core.Queues[0].NextUsed + 17
		},
		"interrupt status": func(s *virtio.MMIOState) { s.InterruptStatus = 0x80 },
	} {
		t.Run(name, func(t *testing.T) {
			bad := st
			bad.Core.Queues = append([]virtio.QueueState(nil), st.Core.Queues...)
			mod(&bad)
			d := &echoDevice{maxSizes: []uint16{16, 8}, features: 1 << 3}
			m, err := virtio.NewMMIO(d, r.drv.Mem, virtiotest.NewIRQ())
			require.NoError(t, err)
			defer m.Close()
			assert.ErrorIs(t, m.Restore(bad), virtio.ErrState)
			assert.Zero(t, d.activations)
		})
	}
}
