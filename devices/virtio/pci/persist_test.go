package pci

import (
	"encoding/binary"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vmm-dev/vmm/devices/virtio"
)

// save quiesces the rig's device and returns its transport's and bus's
// state, as a snapshot of a paused VM does.
func (r *rig) save() State {
	r.tr.Core().Quiesce()
	s, err := r.tr.Save()
	require.NoError(r.t, err)
	return s
}

// A driver's whole set-up over MSI-X comes back in a fresh transport:
// common configuration, vectors, the BAR with its ioeventfds, the
// PCI_CFG window, and interrupts go to the vectors the driver chose.
func TestRestoreWithMSIX(t *testing.T) {
	r := newRig(t)
	r.enable(true)
	p := r.caps()[capPCICfg]
	r.bus.ConfigWrite(0, 1, 0, p+4, []byte{BAR})
	var b [4]byte
	binary.LittleEndian.PutUint32(b[:], cfgNumQueues)
	r.bus.ConfigWrite(0, 1, 0, p+8, b[:])
	binary.LittleEndian.PutUint32(b[:], 2)
	r.bus.ConfigWrite(0, 1, 0, p+12, b[:])
	r.wr(cfgQueueSelect, 2, 1)
	s := r.save()
	bus := r.bus.Save()

	n := newRig(t)
	require.NoError(t, n.tr.Restore(s))
	require.NoError(t, n.bus.Restore(bus))
	assert.NotNil(t, n.dev.act, "a device at DRIVER_OK is active again")
	assert.Equal(t, r.tr.Config().Bytes(), n.tr.Config().Bytes())
	assert.Len(t, n.notes.regs, 2, "the notification ioeventfds follow the restored BAR")
	assert.Contains(t, n.notes.regs, uint64(barAddr+notifyOff+4))
	assert.Equal(t, uint64(1), n.rd(cfgQueueSelect, 2))
	assert.Equal(t, uint64(2), n.rd(cfgQueueMSIXVector, 2))
	assert.Equal(t, uint64(0x20000+0x1000), n.rd(cfgQueueDriver, 8))
	assert.Equal(t, uint64(0), n.rd(cfgMSIXConfig, 2))
	assert.Equal(t, uint64(virtio.StatusDriverOK), n.rd(cfgDeviceStatus, 1)&uint64(virtio.StatusDriverOK))

	require.NoError(t, n.dev.act.QueueInterrupt(1))
	assert.Equal(t, 1, n.routes[2].count(), "queue 1 -> vector 2, as the driver programmed")
	assert.Equal(t, uint32(0x42), n.routes[2].msg.Data)
	assert.Zero(t, n.intx.count())
	n.bus.ConfigRead(0, 1, 0, p+16, b[:])
	assert.Equal(t, uint32(2), binary.LittleEndian.Uint32(b[:]), "the PCI_CFG window points where it did")
}

// Without MSI-X, an interrupt the driver had not acknowledged (ISR set)
// is asserted again after the restore.
func TestRestoreRaisesPendingINTx(t *testing.T) {
	r := newRig(t)
	r.enable(false)
	require.NoError(t, r.dev.act.QueueInterrupt(0))
	s := r.save()

	n := newRig(t)
	require.NoError(t, n.tr.Restore(s))
	require.NoError(t, n.bus.Restore(r.bus.Save()))
	assert.Equal(t, 1, n.intx.count())
	assert.True(t, n.tr.INTxPending())
	assert.Equal(t, uint64(isrQueue), n.rd(isrOff, 1), "memory decoding was restored with the command register")
}

// States this transport could not have been in are refused before the
// device is activated.
func TestRestoreRefuses(t *testing.T) {
	r := newRig(t)
	r.enable(true)
	good := r.save()
	for name, edit := range map[string]func(s *State){
		"vector past the table": func(s *State) { s.QueueVectors[0] = 9 },
		"config vector":         func(s *State) { s.ConfigVector = 3 },
		"queue count":           func(s *State) { s.QueueVectors = s.QueueVectors[:1] },
		"ISR bits":              func(s *State) { s.ISR = 4 },
		"another device's ID": func(s *State) {
			s.Config.Bytes = append([]byte(nil), s.Config.Bytes...)
			s.Config.Bytes[2]++
		},
		"short MSI-X table": func(s *State) { s.MSIX.Table = s.MSIX.Table[:16] },
	} {
		t.Run(name, func(t *testing.T) {
			s := good
			s.QueueVectors = append([]uint16(nil), good.QueueVectors...)
			edit(&s)
			n := newRig(t)
			err := n.tr.Restore(s)
			require.Error(t, err)
			assert.ErrorIs(t, err, virtio.ErrState)
			assert.Nil(t, n.dev.act)
			assert.Zero(t, n.tr.Core().Status(), "not set up")
		})
	}
}
