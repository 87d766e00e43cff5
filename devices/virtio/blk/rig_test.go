package blk_test

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vmm-dev/vmm/devices/virtio"
	"github.com/vmm-dev/vmm/devices/virtio/blk"
	"github.com/vmm-dev/vmm/devices/virtio/virtiotest"
	"github.com/vmm-dev/vmm/memory"
)

// rig is a block device on a temporary image, behind virtio-mmio, with a
// test driver that has negotiated features and set up the queue.
type rig struct {
	blk   *blk.Block
	mmio  *virtio.MMIO
	drv   *virtiotest.Driver
	q     *virtiotest.Queue
	path  string
	image []byte // the image as created
	hdr   memory.GuestAddr
	data  memory.GuestAddr // 64 KiB
	stat  memory.GuestAddr
}

// writeImage creates an image of n bytes with a recognisable pattern.
func writeImage(t testing.TB, name string, n int) (string, []byte) {
	t.Helper()
	img := make([]byte, n)
	for i := range img {
		img[i] = byte(i*7 + i/512)
	}
	path := filepath.Join(t.TempDir(), name)
	require.NoError(t, os.WriteFile(path, img, 0o600))
	return path, img
}

func newRig(t testing.TB, sectors int, opts blk.Options, features uint64) *rig {
	t.Helper()
	path, img := writeImage(t, "disk.img", sectors*blk.SectorSize)
	return newRigOn(t, path, img, opts, features, 8<<20)
}

func newRigOn(t testing.TB, path string, img []byte, opts blk.Options, features uint64, ram uint64) *rig {
	t.Helper()
	b, err := blk.New(path, opts)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, b.Close()) }) // runs after the transport's
	drv, m := virtiotest.Attach(t, b, ram)
	require.NoError(t, drv.Init(features, 0))
	r := &rig{blk: b, mmio: m, drv: drv, q: drv.Queue(0), path: path, image: img}
	r.hdr, err = drv.Alloc(4096, 4096)
	require.NoError(t, err)
	r.data, err = drv.Alloc(64<<10, 4096)
	require.NoError(t, err)
	r.stat, err = drv.Alloc(4096, 4096)
	require.NoError(t, err)
	return r
}

// header writes a request header at addr.
func (r *rig) header(t testing.TB, addr memory.GuestAddr, typ uint32, sector uint64) {
	t.Helper()
	var h [blk.HeaderSize]byte
	binary.LittleEndian.PutUint32(h[0:], typ)
	binary.LittleEndian.PutUint64(h[8:], sector)
	require.NoError(t, r.drv.Mem.WriteAt(h[:], addr))
}

// submit sends bufs as one chain and returns the used element; the status
// byte is wherever the chain put it.
func (r *rig) submit(t testing.TB, bufs []virtiotest.Buf, indirect bool) virtiotest.Used {
	t.Helper()
	add := r.q.Add
	if indirect {
		add = r.q.AddIndirect
	}
	head, err := add(bufs)
	require.NoError(t, err)
	r.q.Kick()
	u, err := r.q.WaitUsed(virtiotest.DefaultTimeout)
	require.NoError(t, err)
	require.Equal(t, head, u.ID)
	return u
}

// request sends the usual three-part chain: header, data of n bytes at
// r.data (device-writable for reads and GET_ID), status. It returns the
// status and used length.
func (r *rig) request(t testing.TB, typ uint32, sector uint64, n uint32, indirect bool) (uint8, uint32) {
	t.Helper()
	r.header(t, r.hdr, typ, sector)
	require.NoError(t, r.drv.Mem.WriteAt([]byte{0xff}, r.stat))
	bufs := []virtiotest.Buf{{Addr: r.hdr, Len: blk.HeaderSize}}
	if n > 0 {
		bufs = append(bufs, virtiotest.Buf{Addr: r.data, Len: n, Writable: typ != blk.TypeOut})
	}
	bufs = append(bufs, virtiotest.Buf{Addr: r.stat, Len: 1, Writable: true})
	u := r.submit(t, bufs, indirect)
	return r.status(t, r.stat), u.Len
}

func (r *rig) status(t testing.TB, addr memory.GuestAddr) uint8 {
	t.Helper()
	var b [1]byte
	require.NoError(t, r.drv.Mem.ReadAt(b[:], addr))
	return b[0]
}

func (r *rig) guest(t testing.TB, addr memory.GuestAddr, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	require.NoError(t, r.drv.Mem.ReadAt(b, addr))
	return b
}

func (r *rig) file(t testing.TB) []byte {
	t.Helper()
	b, err := os.ReadFile(r.path)
	require.NoError(t, err)
	return b
}
