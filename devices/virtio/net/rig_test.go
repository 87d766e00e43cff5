package net_test

import (
	"errors"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/vmm-dev/vmm/devices/virtio"
	vnet "github.com/vmm-dev/vmm/devices/virtio/net"
	"github.com/vmm-dev/vmm/devices/virtio/virtiotest"
	"github.com/vmm-dev/vmm/memory"
)

// testMAC is the address the rigs give the device.
var testMAC = []byte{0x02, 0, 0, 0, 0, 0x42}

// allFeatures is what a full-featured driver (Linux) accepts.
const allFeatures = virtio.TransportFeatures | vnet.FeatureCSUM | vnet.FeatureGuestCSUM | vnet.FeatureMAC |
	vnet.FeatureGuestTSO4 | vnet.FeatureGuestTSO6 | vnet.FeatureGuestECN |
	vnet.FeatureHostTSO4 | vnet.FeatureHostTSO6 | vnet.FeatureHostECN |
	vnet.FeatureMrgRXBuf | vnet.FeatureStatus

// socketpair returns the device's end (a Backend) and the test's end of
// an AF_UNIX SOCK_SEQPACKET pair, which keeps frame boundaries as a TAP
// does. Both are non-blocking, so deadlines work on the peer too.
func socketpair(t testing.TB) (*os.File, *os.File) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	require.NoError(t, err)
	for _, fd := range fds {
		// Room for bursts of 64 KiB frames.
		require.NoError(t, unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, 4<<20))
		require.NoError(t, unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 4<<20))
	}
	return os.NewFile(uintptr(fds[0]), "device-end"), os.NewFile(uintptr(fds[1]), "test-end")
}

// rig is a virtio-net device on a socketpair behind virtio-mmio, and a
// test driver.
type rig struct {
	net  *vnet.Net
	mmio *virtio.MMIO
	drv  *virtiotest.Driver
	peer *os.File // the "TAP" side
	mem  *memory.Memory
}

func newRig(t testing.TB, ram uint64) *rig {
	t.Helper()
	dev, peer := socketpair(t)
	n, err := vnet.NewWithBackend(dev, testMAC)
	require.NoError(t, err)
	mem := virtiotest.NewMemory(ram)
	irq := virtiotest.NewIRQ()
	m, err := virtio.NewMMIO(n, mem, irq)
	require.NoError(t, err)
	t.Cleanup(func() {
		require.NoError(t, m.Close())
		require.NoError(t, n.Close())
		require.NoError(t, peer.Close())
	})
	return &rig{net: n, mmio: m, drv: virtiotest.NewDriver(m, mem, irq), peer: peer, mem: mem}
}

// start negotiates features and sets up both queues with the given sizes.
func (r *rig) start(t testing.TB, features uint64, rxSize, txSize uint16) (rx, tx *virtiotest.Queue) {
	t.Helper()
	require.NoError(t, r.drv.Init(features, rxSize, txSize))
	return r.drv.Queue(vnet.RXQueue), r.drv.Queue(vnet.TXQueue)
}

// alloc reserves guest memory holding data (zeroed if data is nil).
func (r *rig) alloc(t testing.TB, n int, data []byte) memory.GuestAddr {
	t.Helper()
	addr, err := r.drv.Alloc(uint64(n), 64)
	require.NoError(t, err)
	if data != nil {
		require.NoError(t, r.mem.WriteAt(data, addr))
	}
	return addr
}

func (r *rig) guest(t testing.TB, addr memory.GuestAddr, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	require.NoError(t, r.mem.ReadAt(b, addr))
	return b
}

// recvPeer reads one frame from the peer end, waiting up to timeout.
func (r *rig) recvPeer(t testing.TB, timeout time.Duration) ([]byte, error) {
	t.Helper()
	buf := make([]byte, 1<<17)
	require.NoError(t, r.peer.SetReadDeadline(time.Now().Add(timeout)))
	n, err := r.peer.Read(buf)
	if err != nil {
		return nil, err
	}
	return buf[:n], nil
}

// sendPeer writes one frame (header included) into the peer end.
func (r *rig) sendPeer(t testing.TB, frame []byte) {
	t.Helper()
	require.NoError(t, r.peer.SetWriteDeadline(time.Now().Add(virtiotest.DefaultTimeout)))
	n, err := r.peer.Write(frame)
	require.NoError(t, err)
	require.Equal(t, len(frame), n)
}

// peerEmpty reports whether nothing is waiting at the peer end.
// transmitAndExpect sends data (header and frame) as one chain on tx and
// checks that the peer receives exactly it.
func (r *rig) transmitAndExpect(t testing.TB, tx *virtiotest.Queue, data []byte) {
	t.Helper()
	addr := r.alloc(t, len(data), data)
	_, err := tx.Add([]virtiotest.Buf{{Addr: addr, Len: uint32(len(data))}})
	require.NoError(t, err)
	tx.Kick()
	_, err = tx.WaitUsed(virtiotest.DefaultTimeout)
	require.NoError(t, err)
	got, err := r.recvPeer(t, virtiotest.DefaultTimeout)
	require.NoError(t, err)
	assert.Equal(t, data, got)
}

// receiveAndExpect has the peer send frame (with an empty header) and
// checks that it lands, after the header, in one of the posted receive
// buffers (bufs: head -> address, from rxPost).
func (r *rig) receiveAndExpect(t testing.TB, rx *virtiotest.Queue, bufs map[uint16]memory.GuestAddr, frame []byte) {
	t.Helper()
	r.sendPeer(t, withHeader(vnet.Header{}, frame))
	u, err := rx.WaitUsed(virtiotest.DefaultTimeout)
	require.NoError(t, err)
	assert.Equal(t, frame, r.guest(t, bufs[u.ID]+vnet.HeaderSize, len(frame)))
}

func (r *rig) peerEmpty(t testing.TB) bool {
	t.Helper()
	_, err := r.recvPeer(t, 50*time.Millisecond)
	return errors.Is(err, os.ErrDeadlineExceeded)
}

// ethFrame returns a frame of n bytes (n >= 14) with a recognisable body.
func ethFrame(n int, seed byte) []byte {
	f := make([]byte, n)
	copy(f, []byte{0x02, 0, 0, 0, 0, 0x42, 0x02, 0, 0, 0, 0, 0x01, 0x08, 0x00})
	for i := 14; i < n; i++ {
		f[i] = byte(i) ^ seed
	}
	return f
}

// withHeader prefixes frame with the encoded h.
func withHeader(h vnet.Header, frame []byte) []byte {
	b := h.Bytes()
	return append(b[:], frame...)
}
