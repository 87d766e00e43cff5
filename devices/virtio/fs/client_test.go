package fs

import (
	"encoding/binary"
	"testing"
	"unsafe"

	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/vmm-dev/vmm/devices/virtio"
	"github.com/vmm-dev/vmm/devices/virtio/virtiotest"
	"github.com/vmm-dev/vmm/memory"
)

// FUSE opcodes (include/uapi/linux/fuse.h), as the guest's driver sends them.
const (
	opLookup      = 1
	opForget      = 2
	opGetattr     = 3
	opSetattr     = 4
	opReadlink    = 5
	opSymlink     = 6
	opMknod       = 8
	opMkdir       = 9
	opUnlink      = 10
	opRmdir       = 11
	opLink        = 13
	opOpen        = 14
	opRead        = 15
	opWrite       = 16
	opStatfs      = 17
	opRelease     = 18
	opSetxattr    = 21
	opGetxattr    = 22
	opListxattr   = 23
	opInit        = 26
	opOpendir     = 27
	opReaddir     = 28
	opReleasedir  = 29
	opCreate      = 35
	opBatchForget = 42
	opReaddirplus = 44
	opRename2     = 45
)

// bytesOf is the wire form of a FUSE struct: go-fuse's types have the
// kernel's layout.
func bytesOf[T any](v *T) []byte {
	return append([]byte(nil), unsafe.Slice((*byte)(unsafe.Pointer(v)), unsafe.Sizeof(*v))...)
}

func fromBytes[T any](t *testing.T, b []byte) T {
	t.Helper()
	var v T
	require.GreaterOrEqual(t, len(b), int(unsafe.Sizeof(v)), "reply too short")
	copy(unsafe.Slice((*byte)(unsafe.Pointer(&v)), unsafe.Sizeof(v)), b)
	return v
}

func cstr(s string) []byte { return append([]byte(s), 0) }

// transport carries one request (device-readable) and its reply buffer
// (device-writable) and returns the bytes written.
type transport func(in []byte, out int) []byte

// client is a FUSE driver for tests: it encodes requests as Linux's
// fs/fuse does and decodes replies.
type client struct {
	t      *testing.T
	do     transport
	unique uint64
}

// call sends opcode on node with arg (a FUSE *In struct whose header
// call fills, or nil) and payload; it returns the status (0 or -errno)
// and the reply body.
func (c *client) call(op uint32, node uint64, arg []byte, payload ...[]byte) (int32, []byte) {
	c.t.Helper()
	return c.callOut(op, node, 1<<20+4096, arg, payload...)
}

func (c *client) callOut(op uint32, node uint64, outLen int, arg []byte, payload ...[]byte) (int32, []byte) {
	c.t.Helper()
	hdr := int(unsafe.Sizeof(fuse.InHeader{}))
	if len(arg) < hdr {
		arg = append(arg, make([]byte, hdr-len(arg))...)
	}
	in := append([]byte(nil), arg...)
	for _, p := range payload {
		in = append(in, p...)
	}
	c.unique++
	binary.LittleEndian.PutUint32(in[0:], uint32(len(in)))
	binary.LittleEndian.PutUint32(in[4:], op)
	binary.LittleEndian.PutUint64(in[8:], c.unique)
	binary.LittleEndian.PutUint64(in[16:], node)
	out := c.do(in, outLen)
	if len(out) == 0 {
		return -int32(unix.EIO), nil // what Linux makes of an empty reply
	}
	require.GreaterOrEqual(c.t, len(out), 16, "reply shorter than fuse_out_header")
	length := binary.LittleEndian.Uint32(out[0:])
	status := int32(binary.LittleEndian.Uint32(out[4:]))
	require.Equal(c.t, c.unique, binary.LittleEndian.Uint64(out[8:]), "reply to another request")
	require.Equal(c.t, uint32(len(out)), length, "out header length is the bytes written")
	return status, out[16:]
}

func (c *client) init() {
	c.t.Helper()
	in := fuse.InitIn{Major: 7, Minor: 31, MaxReadAhead: 128 << 10,
		Flags: fuse.CAP_ASYNC_READ | fuse.CAP_BIG_WRITES | fuse.CAP_READDIRPLUS | fuse.CAP_RENAME_SWAP | fuse.CAP_MAX_PAGES}
	st, out := c.call(opInit, 0, bytesOf(&in))
	require.Zero(c.t, st, "FUSE_INIT")
	io := fromBytes[fuse.InitOut](c.t, out)
	require.Equal(c.t, uint32(7), io.Major)
}

func errnoOf(st int32) unix.Errno { return unix.Errno(-st) }

func (c *client) lookup(parent uint64, name string) (fuse.EntryOut, unix.Errno) {
	c.t.Helper()
	st, out := c.call(opLookup, parent, nil, cstr(name))
	if st != 0 {
		return fuse.EntryOut{}, errnoOf(st)
	}
	return fromBytes[fuse.EntryOut](c.t, out), 0
}

func (c *client) getattr(node uint64) (fuse.Attr, unix.Errno) {
	c.t.Helper()
	st, out := c.call(opGetattr, node, bytesOf(&fuse.GetAttrIn{}))
	if st != 0 {
		return fuse.Attr{}, errnoOf(st)
	}
	return fromBytes[fuse.AttrOut](c.t, out).Attr, 0
}

func (c *client) open(node uint64, flags uint32) (uint64, unix.Errno) {
	c.t.Helper()
	st, out := c.call(opOpen, node, bytesOf(&fuse.OpenIn{Flags: flags}))
	if st != 0 {
		return 0, errnoOf(st)
	}
	return fromBytes[fuse.OpenOut](c.t, out).Fh, 0
}

func (c *client) release(node, fh uint64) {
	c.t.Helper()
	st, _ := c.call(opRelease, node, bytesOf(&fuse.ReleaseIn{Fh: fh}))
	require.Zero(c.t, st)
}

func (c *client) read(node, fh, off uint64, size uint32) ([]byte, unix.Errno) {
	c.t.Helper()
	st, out := c.callOut(opRead, node, int(size)+16, bytesOf(&fuse.ReadIn{Fh: fh, Offset: off, Size: size}))
	if st != 0 {
		return nil, errnoOf(st)
	}
	return out, 0
}

func (c *client) write(node, fh, off uint64, data []byte) (uint32, unix.Errno) {
	c.t.Helper()
	st, out := c.call(opWrite, node, bytesOf(&fuse.WriteIn{Fh: fh, Offset: off, Size: uint32(len(data))}), data)
	if st != 0 {
		return 0, errnoOf(st)
	}
	return fromBytes[fuse.WriteOut](c.t, out).Size, 0
}

func (c *client) create(parent uint64, name string, flags, mode uint32) (fuse.EntryOut, uint64, unix.Errno) {
	c.t.Helper()
	st, out := c.call(opCreate, parent, bytesOf(&fuse.CreateIn{Flags: flags, Mode: mode}), cstr(name))
	if st != 0 {
		return fuse.EntryOut{}, 0, errnoOf(st)
	}
	co := fromBytes[fuse.CreateOut](c.t, out)
	return co.EntryOut, co.Fh, 0
}

func (c *client) mkdir(parent uint64, name string, mode uint32) (fuse.EntryOut, unix.Errno) {
	c.t.Helper()
	st, out := c.call(opMkdir, parent, bytesOf(&fuse.MkdirIn{Mode: mode}), cstr(name))
	if st != 0 {
		return fuse.EntryOut{}, errnoOf(st)
	}
	return fromBytes[fuse.EntryOut](c.t, out), 0
}

func (c *client) symlink(parent uint64, target, name string) (fuse.EntryOut, unix.Errno) {
	c.t.Helper()
	st, out := c.call(opSymlink, parent, nil, cstr(name), cstr(target))
	if st != 0 {
		return fuse.EntryOut{}, errnoOf(st)
	}
	return fromBytes[fuse.EntryOut](c.t, out), 0
}

func (c *client) readlink(node uint64) (string, unix.Errno) {
	c.t.Helper()
	st, out := c.call(opReadlink, node, nil)
	if st != 0 {
		return "", errnoOf(st)
	}
	return string(out), 0
}

func (c *client) link(old, parent uint64, name string) (fuse.EntryOut, unix.Errno) {
	c.t.Helper()
	st, out := c.call(opLink, parent, bytesOf(&fuse.LinkIn{Oldnodeid: old}), cstr(name))
	if st != 0 {
		return fuse.EntryOut{}, errnoOf(st)
	}
	return fromBytes[fuse.EntryOut](c.t, out), 0
}

func (c *client) rename(dir uint64, old string, newDir uint64, name string, flags uint32) unix.Errno {
	c.t.Helper()
	st, _ := c.call(opRename2, dir, bytesOf(&fuse.RenameIn{Newdir: newDir, Flags: flags}), cstr(old), cstr(name))
	return errnoOf(st)
}

func (c *client) unlink(dir uint64, name string) unix.Errno {
	c.t.Helper()
	st, _ := c.call(opUnlink, dir, nil, cstr(name))
	return errnoOf(st)
}

func (c *client) setattr(in fuse.SetAttrIn, node uint64) (fuse.Attr, unix.Errno) {
	c.t.Helper()
	st, out := c.call(opSetattr, node, bytesOf(&in))
	if st != 0 {
		return fuse.Attr{}, errnoOf(st)
	}
	return fromBytes[fuse.AttrOut](c.t, out).Attr, 0
}

// readdir lists a directory through OPENDIR, READDIR (or READDIRPLUS)
// with bufSize replies, and RELEASEDIR.
func (c *client) readdir(node uint64, bufSize uint32, plus bool) ([]fuse.DirEntry, unix.Errno) {
	c.t.Helper()
	st, out := c.call(opOpendir, node, bytesOf(&fuse.OpenIn{}))
	if st != 0 {
		return nil, errnoOf(st)
	}
	fh := fromBytes[fuse.OpenOut](c.t, out).Fh
	defer func() {
		st, _ := c.call(opReleasedir, node, bytesOf(&fuse.ReleaseIn{Fh: fh}))
		require.Zero(c.t, st)
	}()
	var all []fuse.DirEntry
	var off uint64
	op := uint32(opReaddir)
	if plus {
		op = opReaddirplus
	}
	for {
		st, out := c.callOut(op, node, int(bufSize)+16, bytesOf(&fuse.ReadIn{Fh: fh, Offset: off, Size: bufSize}))
		if st != 0 {
			return nil, errnoOf(st)
		}
		if len(out) == 0 {
			return all, 0
		}
		var ents []fuse.DirEntry
		var err error
		if plus {
			var eos []fuse.EntryOut
			ents, eos, err = fuse.ParseDirLookupEntries(out)
			require.NoError(c.t, err)
			var forget []byte
			for i, e := range eos {
				if e.NodeId != 0 {
					forget = binary.LittleEndian.AppendUint64(forget, e.NodeId)
					forget = binary.LittleEndian.AppendUint64(forget, 1)
					require.Equal(c.t, ents[i].Ino, e.Attr.Ino)
				}
			}
			if len(forget) > 0 {
				arg := make([]byte, 48)
				binary.LittleEndian.PutUint32(arg[40:], uint32(len(forget)/16))
				c.call(opBatchForget, 0, arg, forget)
			}
		} else {
			ents, err = fuse.ParseDirEntries(out)
			require.NoError(c.t, err)
		}
		require.NotEmpty(c.t, ents)
		all = append(all, ents...)
		off = ents[len(ents)-1].Off
	}
}

// directTransport calls go-fuse's ProtocolServer on Go slices.
func directTransport(t *testing.T, dir string, readOnly bool) *client {
	t.Helper()
	p, err := newPassthrough(dir, readOnly)
	require.NoError(t, err)
	t.Cleanup(p.close)
	s := fuse.NewProtocolServer(p, &fuse.MountOptions{MaxWrite: MaxWrite})
	c := &client{t: t, do: func(in []byte, outLen int) []byte {
		out := make([]byte, outLen)
		n, _ := s.HandleRequest([][]byte{in}, [][]byte{out})
		return out[:n]
	}}
	c.init()
	return c
}

// virtioRig drives an FS device through virtio-mmio on test guest memory,
// the way Linux's virtio_fs does: one readable buffer with the request,
// then a 16-byte out header and the reply split into 4 KiB pages.
type virtioRig struct {
	dev    *FS
	drv    *virtiotest.Driver
	q      *virtiotest.Queue
	inBuf  memory.GuestAddr
	outBuf memory.GuestAddr
}

const rigBuf = 1<<20 + 64<<10

func newVirtioRig(t testing.TB, cfg Config) *virtioRig {
	t.Helper()
	d, err := New(cfg)
	require.NoError(t, err)
	drv, _ := virtiotest.Attach(t, d, 8<<20)
	t.Cleanup(d.Reset)
	require.NoError(t, drv.Init(virtio.TransportFeatures, QueueSize, QueueSize))
	r := &virtioRig{dev: d, drv: drv, q: drv.Queue(1)}
	r.inBuf, err = drv.Alloc(rigBuf, 4096)
	require.NoError(t, err)
	r.outBuf, err = drv.Alloc(rigBuf, 4096)
	require.NoError(t, err)
	return r
}

func (r *virtioRig) transport(t testing.TB) transport {
	return func(in []byte, outLen int) []byte {
		require.LessOrEqual(t, len(in), rigBuf)
		require.NoError(t, r.drv.Mem.WriteAt(in, r.inBuf))
		bufs := []virtiotest.Buf{{Addr: r.inBuf, Len: uint32(len(in))}, {Addr: r.outBuf, Len: 16, Writable: true}}
		for off := 16; off < outLen; off += 4096 {
			bufs = append(bufs, virtiotest.Buf{Addr: r.outBuf + memory.GuestAddr(off), Len: uint32(min(4096, outLen-off)), Writable: true})
		}
		h, err := r.q.AddIndirect(bufs)
		require.NoError(t, err)
		r.q.Kick()
		u, err := r.q.WaitUsed(virtiotest.DefaultTimeout)
		require.NoError(t, err)
		require.Equal(t, h, u.ID)
		out := make([]byte, u.Len)
		require.NoError(t, r.drv.Mem.ReadAt(out, r.outBuf))
		return out
	}
}

func virtioClient(t *testing.T, dir string, readOnly bool) *client {
	t.Helper()
	r := newVirtioRig(t, Config{HostDir: dir, Tag: "t", ReadOnly: readOnly})
	c := &client{t: t, do: r.transport(t)}
	c.init()
	return c
}
