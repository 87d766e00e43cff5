package p9

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/hugelgupf/p9/linux"
	"github.com/hugelgupf/p9/p9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/vmm-dev/vmm/devices/virtio"
	"github.com/vmm-dev/vmm/devices/virtio/virtiotest"
	"github.com/vmm-dev/vmm/memory"
)

// rig drives a P9 device through virtio-mmio on test guest memory, as
// Linux's trans_virtio does: the T-message in device-readable buffers,
// msize bytes of device-writable ones for the R-message.
type rig struct {
	dev    *P9
	drv    *virtiotest.Driver
	q      *virtiotest.Queue
	in     memory.GuestAddr
	out    memory.GuestAddr
	outLen uint32
	mu     sync.Mutex
}

const rigBuf = MaxMessage + 4096

func newRig(t testing.TB, cfg Config) *rig {
	t.Helper()
	d, err := New(cfg)
	require.NoError(t, err)
	drv, _ := virtiotest.Attach(t, d, 4<<20)
	t.Cleanup(d.Reset)
	require.NoError(t, drv.Init(virtio.TransportFeatures|FeatureMountTag, QueueSize))
	r := &rig{dev: d, drv: drv, q: drv.Queue(0), outLen: rigBuf}
	r.in, err = drv.Alloc(rigBuf, 4096)
	require.NoError(t, err)
	r.out, err = drv.Alloc(rigBuf, 4096)
	require.NoError(t, err)
	return r
}

// roundtrip posts one message and returns the reply.
func (r *rig) roundtrip(t testing.TB, msg []byte) []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	require.LessOrEqual(t, len(msg), rigBuf)
	require.NoError(t, r.drv.Mem.WriteAt(msg, r.in))
	bufs := []virtiotest.Buf{{Addr: r.in, Len: uint32(len(msg))}}
	// Split the reply buffer in pieces, as Linux's scatterlists do (pages
	// there; larger here, so a chain stays within the queue size).
	for off := uint32(0); off < r.outLen; off += 16384 {
		bufs = append(bufs, virtiotest.Buf{Addr: r.out + memory.GuestAddr(off), Len: min(16384, r.outLen-off), Writable: true})
	}
	h, err := r.q.AddIndirect(bufs)
	require.NoError(t, err)
	r.q.Kick()
	u, err := r.q.WaitUsed(virtiotest.DefaultTimeout)
	require.NoError(t, err)
	require.Equal(t, h, u.ID)
	out := make([]byte, u.Len)
	require.NoError(t, r.drv.Mem.ReadAt(out, r.out))
	return out
}

// chainConn is the io.ReadWriteCloser p9's client talks to: each whole
// T-message it writes goes through the device as one chain.
type chainConn struct {
	t testing.TB
	r *rig
	// wmu makes Write and Close exclusive: a finalizer's Tclunk that is
	// in flight when the test's cleanup closes the connection completes
	// before the device goes away, and later ones see shut.
	wmu  sync.Mutex
	mu   sync.Mutex
	cond *sync.Cond
	wbuf []byte
	rbuf bytes.Buffer
	shut bool
}

func newChainConn(t testing.TB, r *rig) *chainConn {
	c := &chainConn{t: t, r: r}
	c.cond = sync.NewCond(&c.mu)
	return c
}

func (c *chainConn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.mu.Lock()
	shut := c.shut
	c.mu.Unlock()
	if shut {
		return 0, os.ErrClosed // a finalizer's Tclunk after the test
	}
	c.wbuf = append(c.wbuf, p...)
	for len(c.wbuf) >= 4 {
		size := int(binary.LittleEndian.Uint32(c.wbuf))
		if len(c.wbuf) < size {
			break
		}
		resp := c.r.roundtrip(c.t, c.wbuf[:size])
		c.wbuf = c.wbuf[size:]
		c.mu.Lock()
		c.rbuf.Write(resp)
		c.cond.Broadcast()
		c.mu.Unlock()
	}
	return len(p), nil
}

func (c *chainConn) Read(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for c.rbuf.Len() == 0 && !c.shut {
		c.cond.Wait()
	}
	if c.rbuf.Len() == 0 {
		return 0, os.ErrClosed
	}
	return c.rbuf.Read(p)
}

func (c *chainConn) Close() error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.mu.Lock()
	c.shut = true
	c.cond.Broadcast()
	c.mu.Unlock()
	return nil
}

// client attaches p9's client to a fresh device over dir.
func client(t testing.TB, dir string, ro bool) (p9.File, *rig) {
	t.Helper()
	r := newRig(t, Config{HostDir: dir, Tag: "t", ReadOnly: ro})
	conn := newChainConn(t, r)
	c, err := p9.NewClient(conn, p9.WithMessageSize(MaxMessage))
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close(); _ = conn.Close() })
	root, err := c.Attach("/")
	require.NoError(t, err)
	return root, r
}

func walk(t *testing.T, f p9.File, names ...string) p9.File {
	t.Helper()
	_, nf, err := f.Walk(names)
	require.NoError(t, err, "walk %v", names)
	t.Cleanup(func() { _ = nf.Close() })
	return nf
}

func readAll(t *testing.T, f p9.File) []byte {
	t.Helper()
	var got []byte
	buf := make([]byte, 256<<10)
	for {
		n, err := f.ReadAt(buf, int64(len(got)))
		got = append(got, buf[:n]...)
		if n == 0 || err != nil {
			return got
		}
	}
}

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	require.NoError(t, os.WriteFile(p, []byte(content), 0o644))
	return p
}

func TestConfigSpace(t *testing.T) {
	r := newRig(t, Config{HostDir: t.TempDir(), Tag: "hostshare"})
	assert.Equal(t, uint32(9), r.drv.Read32(virtio.RegDeviceID))
	assert.Equal(t, FeatureMountTag, r.drv.DeviceFeatures()&FeatureMountTag)
	cfg := r.drv.ReadConfig(0, 12)
	assert.Equal(t, uint16(9), binary.LittleEndian.Uint16(cfg), "tag_len")
	assert.Equal(t, "hostshare", string(cfg[2:11]))
	_, err := New(Config{HostDir: t.TempDir()})
	assert.ErrorIs(t, err, ErrTag)
	_, err = New(Config{HostDir: "/nonexistent/dir", Tag: "x"})
	assert.Error(t, err)
}

func TestContentModesLinksRename(t *testing.T) {
	dir := t.TempDir()
	data := make([]byte, 3<<20+77)
	_, _ = rand.Read(data)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "big"), data, 0o640))
	root, _ := client(t, dir, false)

	f := walk(t, root, "big")
	_, _, a, err := f.GetAttr(p9.AttrMaskAll)
	require.NoError(t, err)
	assert.Equal(t, uint64(len(data)), a.Size)
	assert.Equal(t, p9.FileMode(unix.S_IFREG|0o640), a.Mode)
	_, _, err = f.Open(p9.ReadOnly)
	require.NoError(t, err)
	assert.True(t, bytes.Equal(data, readAll(t, f)), "content read intact")

	d := walk(t, root)
	nf, _, _, err := d.Create("new", p9.WriteOnly, 0o600, p9.NoUID, p9.NoGID)
	require.NoError(t, err)
	n, err := nf.WriteAt([]byte("from the guest"), 0)
	require.NoError(t, err)
	assert.Equal(t, 14, n)
	require.NoError(t, nf.Close())
	b, err := os.ReadFile(filepath.Join(dir, "new"))
	require.NoError(t, err)
	assert.Equal(t, "from the guest", string(b))

	g := walk(t, root, "new")
	require.NoError(t, g.SetAttr(p9.SetAttrMask{Permissions: true, Size: true, MTime: true, MTimeNotSystemTime: true},
		p9.SetAttr{Permissions: 0o751, Size: 4, MTimeSeconds: 1234567890}))
	fi, err := os.Stat(filepath.Join(dir, "new"))
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o751), fi.Mode().Perm())
	assert.Equal(t, int64(4), fi.Size())
	assert.Equal(t, int64(1234567890), fi.ModTime().Unix())

	_, err = walk(t, root).Mkdir("sub", 0o755, p9.NoUID, p9.NoGID)
	require.NoError(t, err)
	sub := walk(t, root, "sub")
	_, err = sub.Symlink("../new", "link", p9.NoUID, p9.NoGID)
	require.NoError(t, err)
	target, err := walk(t, sub, "link").Readlink()
	require.NoError(t, err)
	assert.Equal(t, "../new", target)
	require.NoError(t, sub.Link(g, "hard"))
	var s1, s2 unix.Stat_t
	require.NoError(t, unix.Stat(filepath.Join(dir, "new"), &s1))
	require.NoError(t, unix.Stat(filepath.Join(dir, "sub", "hard"), &s2))
	assert.Equal(t, s1.Ino, s2.Ino)
	require.NoError(t, sub.RenameAt("hard", root, "moved"))
	assert.FileExists(t, filepath.Join(dir, "moved"))
	require.NoError(t, root.UnlinkAt("moved", 0))
	assert.NoFileExists(t, filepath.Join(dir, "moved"))
	assert.Error(t, root.UnlinkAt("sub", unix.AT_REMOVEDIR), "not empty")

	if err := unix.Setxattr(filepath.Join(dir, "new"), "user.probe", []byte("1"), 0); err == nil {
		// p9's client has no xattr calls: the backend directly.
		sr, err := (&share{root: dir}).Attach()
		require.NoError(t, err)
		defer sr.Close()
		_, x, err := sr.Walk([]string{"new"})
		require.NoError(t, err)
		defer x.Close()
		require.NoError(t, x.SetXattr("user.vmm", []byte("value"), 0))
		v, err := x.GetXattr("user.vmm")
		require.NoError(t, err)
		assert.Equal(t, "value", string(v))
		names, err := x.ListXattrs()
		require.NoError(t, err)
		assert.Contains(t, names, "user.probe")
		require.NoError(t, x.RemoveXattr("user.vmm"))
	}
	st, err := root.StatFS()
	require.NoError(t, err)
	assert.NotZero(t, st.BlockSize)
}

func TestLargeSparseOffsets(t *testing.T) {
	dir := t.TempDir()
	root, _ := client(t, dir, false)
	f, _, _, err := walk(t, root).Create("sparse", p9.ReadWrite, 0o644, p9.NoUID, p9.NoGID)
	require.NoError(t, err)
	defer f.Close()
	const off = 5<<30 + 999
	_, err = f.WriteAt([]byte("far away"), off)
	require.NoError(t, err)
	buf := make([]byte, 8)
	_, err = f.ReadAt(buf, off)
	require.NoError(t, err)
	assert.Equal(t, "far away", string(buf))
	fi, err := os.Stat(filepath.Join(dir, "sparse"))
	require.NoError(t, err)
	assert.Equal(t, int64(off+8), fi.Size())
}

func TestReadDirBig(t *testing.T) {
	n := 20000
	if testing.Short() {
		n = 2000
	}
	dir := t.TempDir()
	want := []string{".", ".."}
	for i := range n {
		name := fmt.Sprintf("entry-%06d-with-a-longish-name", i)
		f, err := os.Create(filepath.Join(dir, name))
		require.NoError(t, err)
		require.NoError(t, f.Close())
		want = append(want, name)
	}
	sort.Strings(want)
	root, _ := client(t, dir, true)
	d := walk(t, root)
	_, _, err := d.Open(p9.ReadOnly)
	require.NoError(t, err)
	var got []string
	var off uint64
	for {
		ents, err := d.Readdir(off, 8192)
		require.NoError(t, err)
		if len(ents) == 0 {
			break
		}
		for _, e := range ents {
			got = append(got, e.Name)
		}
		off = ents[len(ents)-1].Offset
	}
	sort.Strings(got)
	assert.Equal(t, want, got, "every entry exactly once")
}

func TestReadOnly(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "f", "data")
	root, _ := client(t, dir, true)
	f := walk(t, root, "f")
	_, _, err := f.Open(p9.WriteOnly)
	assert.ErrorIs(t, err, linux.EROFS)
	_, _, _, err = walk(t, root).Create("g", p9.WriteOnly, 0o644, p9.NoUID, p9.NoGID)
	assert.ErrorIs(t, err, linux.EROFS)
	_, err = root.Mkdir("m", 0o755, p9.NoUID, p9.NoGID)
	assert.ErrorIs(t, err, linux.EROFS)
	assert.ErrorIs(t, root.UnlinkAt("f", 0), linux.EROFS)
	assert.ErrorIs(t, root.RenameAt("f", root, "g"), linux.EROFS)
	assert.ErrorIs(t, f.SetAttr(p9.SetAttrMask{Size: true}, p9.SetAttr{}), linux.EROFS)
	_, _, err = f.Open(p9.ReadOnly)
	require.NoError(t, err)
	assert.Equal(t, "data", string(readAll(t, f)))
}

type escapeFixture struct{ parent, share, secret string }

func newEscapeFixture(t *testing.T) escapeFixture {
	parent := t.TempDir()
	share := filepath.Join(parent, "share")
	require.NoError(t, os.Mkdir(share, 0o755))
	secret := writeFile(t, parent, "secret", "host secret")
	require.NoError(t, os.Mkdir(filepath.Join(parent, "outdir"), 0o755))
	writeFile(t, filepath.Join(parent, "outdir"), "inner", "outside too")
	for name, target := range map[string]string{"rel": "../secret", "abs": secret, "reldir": "../outdir",
		"absdir": filepath.Join(parent, "outdir"), "slash": "/"} {
		require.NoError(t, os.Symlink(target, filepath.Join(share, name)))
	}
	require.NoError(t, os.Mkdir(filepath.Join(share, "d"), 0o755))
	return escapeFixture{parent, share, secret}
}

func (f escapeFixture) untouched(t *testing.T) {
	t.Helper()
	b, err := os.ReadFile(f.secret)
	require.NoError(t, err)
	assert.Equal(t, "host secret", string(b))
	ents, err := os.ReadDir(f.parent)
	require.NoError(t, err)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	assert.ElementsMatch(t, []string{"share", "secret", "outdir"}, names, "nothing appeared outside the share")
}

// twalk is a raw Twalk, for names p9's client might refuse to send.
func twalk(tag uint16, fid, newfid uint32, names ...string) []byte {
	m := []byte{0, 0, 0, 0, 110}
	m = binary.LittleEndian.AppendUint16(m, tag)
	m = binary.LittleEndian.AppendUint32(m, fid)
	m = binary.LittleEndian.AppendUint32(m, newfid)
	m = binary.LittleEndian.AppendUint16(m, uint16(len(names)))
	for _, n := range names {
		m = binary.LittleEndian.AppendUint16(m, uint16(len(n)))
		m = append(m, n...)
	}
	binary.LittleEndian.PutUint32(m, uint32(len(m)))
	return m
}

func rawAttach(t *testing.T, r *rig) {
	t.Helper()
	v := []byte{0, 0, 0, 0, msgTversion, 0xff, 0xff}
	v = binary.LittleEndian.AppendUint32(v, MaxMessage)
	v = binary.LittleEndian.AppendUint16(v, 8)
	v = append(v, "9P2000.L"...)
	binary.LittleEndian.PutUint32(v, uint32(len(v)))
	require.Equal(t, byte(msgRversion), r.roundtrip(t, v)[4])
	a := []byte{0, 0, 0, 0, 104, 1, 0} // Tattach fid 0, afid NOFID, uname "", aname "", uid 0
	a = binary.LittleEndian.AppendUint32(a, 0)
	a = binary.LittleEndian.AppendUint32(a, ^uint32(0))
	a = append(a, 0, 0, 0, 0)
	a = binary.LittleEndian.AppendUint32(a, 0)
	binary.LittleEndian.PutUint32(a, uint32(len(a)))
	require.Equal(t, byte(105), r.roundtrip(t, a)[4], "Rattach")
}

func TestEscapes(t *testing.T) {
	f := newEscapeFixture(t)
	root, r := client(t, f.share, false)
	defer f.untouched(t)

	for _, names := range [][]string{{".."}, {"d", ".."}, {"d", "..", ".."}, {"../secret"}, {"/etc"}, {"."}, {""}, {"a\x00b"}} {
		_, _, err := root.Walk(names)
		assert.Error(t, err, "walk %q", names)
	}
	for _, link := range []string{"rel", "abs", "reldir", "absdir", "slash"} {
		l := walk(t, root, link)
		_, _, a, err := l.GetAttr(p9.AttrMaskAll)
		require.NoError(t, err)
		assert.True(t, a.Mode.IsSymlink(), "%s is the link itself", link)
		_, _, err = l.Open(p9.ReadOnly)
		assert.Error(t, err, "open %s", link)
		for _, in := range []string{"inner", "secret", "etc", "share"} {
			_, _, err = root.Walk([]string{link, in})
			assert.Error(t, err, "walk %s/%s", link, in)
		}
		_, _, _, err = l.Create("planted", p9.WriteOnly, 0o644, p9.NoUID, p9.NoGID)
		assert.Error(t, err)
		_, err = l.Mkdir("planted", 0o755, p9.NoUID, p9.NoGID)
		assert.Error(t, err)
		assert.Error(t, root.RenameAt("d", l, "planted"))
		assert.Error(t, l.SetAttr(p9.SetAttrMask{Permissions: true}, p9.SetAttr{Permissions: 0o777}))
		assert.Error(t, l.SetAttr(p9.SetAttrMask{Size: true}, p9.SetAttr{}))
	}
	_, _, _, err := walk(t, root).Create("../planted", p9.WriteOnly, 0o644, p9.NoUID, p9.NoGID)
	assert.Error(t, err)
	assert.Error(t, root.RenameAt("d", root, "../planted"))
	assert.Error(t, root.RenameAt("../secret", root, "stolen"))
	assert.Error(t, root.UnlinkAt("../secret", 0))
	_, err = root.Mknod("sda", p9.FileMode(unix.S_IFBLK|0o600), 8, 0, p9.NoUID, p9.NoGID)
	assert.Error(t, err, "no device nodes")
	_, err = root.Mknod("mem", p9.FileMode(unix.S_IFCHR|0o600), 1, 1, p9.NoUID, p9.NoGID)
	assert.Error(t, err)

	// Raw walks past whatever the client checks, on a second session.
	r2 := newRig(t, Config{HostDir: f.share, Tag: "t"})
	rawAttach(t, r2)
	for i, names := range [][]string{{".."}, {"d", ".."}, {"abs", "x"}, {"x/../.."}, {"slash", "etc"}} {
		resp := r2.roundtrip(t, twalk(uint16(10+i), 0, uint32(100+i), names...))
		assert.Equal(t, byte(msgRlerror), resp[4], "walk %q refused", names)
	}
	_ = r
}

// TestEscapeRenameRace swaps a directory of the share with a symlink to
// the outside while the guest walks into it and opens a file there.
func TestEscapeRenameRace(t *testing.T) {
	f := newEscapeFixture(t)
	inside := filepath.Join(f.share, "real")
	require.NoError(t, os.Mkdir(inside, 0o755))
	writeFile(t, inside, "secret", "inside")
	require.NoError(t, os.Symlink(f.parent, filepath.Join(f.share, "evil")))
	root, _ := client(t, f.share, false)
	defer f.untouched(t)
	var stop atomic.Bool
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		a, b := filepath.Join(f.share, "real"), filepath.Join(f.share, "evil")
		for !stop.Load() {
			_ = unix.Renameat2(unix.AT_FDCWD, a, unix.AT_FDCWD, b, unix.RENAME_EXCHANGE)
		}
	}()
	defer func() { stop.Store(true); wg.Wait() }()
	var opened int
	for range 300 {
		_, s, err := root.Walk([]string{"real", "secret"})
		if err != nil {
			continue
		}
		if _, _, err := s.Open(p9.ReadWrite); err == nil {
			require.Equal(t, "inside", string(readAll(t, s)), "only the share's own file")
			_, err = s.WriteAt([]byte("inside"), 0)
			require.NoError(t, err)
			opened++
		}
		_ = s.Close()
	}
	t.Logf("opened %d of 300", opened)
	assert.NotZero(t, opened)
}

func TestHostileMessages(t *testing.T) {
	r := newRig(t, Config{HostDir: t.TempDir(), Tag: "t"})
	rawAttach(t, r)
	flush := []byte{9, 0, 0, 0, msgTflush, 7, 0, 7, 0} // Tflush of its own tag
	for _, m := range [][]byte{
		{}, {1, 2, 3},
		{7, 0, 0, 0, 200, 1, 0},                 // unknown type
		{0xff, 0xff, 0xff, 0x7f, 110, 2, 0},     // size past the chain
		{3, 0, 0, 0, 110, 3, 0},                 // size below the header
		{11, 0, 0, 0, 110, 4, 0, 1, 2, 3, 4},    // a Twalk cut short
		{20, 0, 0, 0, 118, 5, 0, 0, 0, 0, 0, 1}, // a Tmkdir cut short (size lies, too)
		flush,
	} {
		resp := r.roundtrip(t, append([]byte(nil), m...))
		if len(m) >= headerLen {
			require.GreaterOrEqual(t, len(resp), headerLen, "answered: %x", m)
			assert.Equal(t, m[5:7], resp[5:7], "with the request's tag: %x", m)
		}
	}
	assert.False(t, r.drv.NeedsReset())
	r.outLen = 8 // a reply buffer too small for any reply but the shortest
	resp := r.roundtrip(t, twalk(30, 0, 31))
	assert.Empty(t, resp)
	r.outLen = rigBuf
	resp = r.roundtrip(t, twalk(31, 0, 32))
	assert.Equal(t, byte(111), resp[4], "the session still answers (Rwalk)")
}

// BenchmarkRead256MiB reads a 256 MiB host file through the device with
// p9's client, in reads as large as the negotiated msize allows.
func BenchmarkRead256MiB(b *testing.B) {
	const size = 256 << 20
	dir := b.TempDir()
	f, err := os.Create(filepath.Join(dir, "big"))
	require.NoError(b, err)
	chunk := make([]byte, 1<<20)
	_, _ = rand.Read(chunk)
	for range size / len(chunk) {
		_, err := f.Write(chunk)
		require.NoError(b, err)
	}
	require.NoError(b, f.Close())
	rootf, _ := client(b, dir, true)
	_, file, err := rootf.Walk([]string{"big"})
	require.NoError(b, err)
	_, _, err = file.Open(p9.ReadOnly)
	require.NoError(b, err)
	buf := make([]byte, MaxMessage-4096)
	b.SetBytes(size)
	b.ResetTimer()
	for range b.N {
		for off := int64(0); off < size; {
			n, err := file.ReadAt(buf, off)
			if err != nil || n == 0 {
				b.Fatalf("read at %d: %v", off, err)
			}
			off += int64(n)
		}
	}
}

func txattrwalk(tag uint16, fid, newfid uint32, name string) []byte {
	m := []byte{0, 0, 0, 0, msgTxattrwalk}
	m = binary.LittleEndian.AppendUint16(m, tag)
	m = binary.LittleEndian.AppendUint32(m, fid)
	m = binary.LittleEndian.AppendUint32(m, newfid)
	m = binary.LittleEndian.AppendUint16(m, uint16(len(name)))
	m = append(m, name...)
	binary.LittleEndian.PutUint32(m, uint32(len(m)))
	return m
}

// A missing attribute is ENODATA to the guest, and a symlink's is
// EOPNOTSUPP, as the host says: overlayfs over a 9p lower layer looks up
// trusted.overlay.metacopy on every file and fails on any other errno
// (hugelgupf/p9 itself answers them all with EINVAL).
func TestXattrErrorsReachTheGuest(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "file", "x")
	require.NoError(t, os.Symlink("file", filepath.Join(dir, "link")))
	r := newRig(t, Config{HostDir: dir, Tag: "t"})
	rawAttach(t, r)
	require.Equal(t, byte(111), r.roundtrip(t, twalk(2, 0, 1, "file"))[4])
	require.Equal(t, byte(111), r.roundtrip(t, twalk(3, 0, 2, "link"))[4])
	ecode := func(resp []byte) unix.Errno {
		require.Len(t, resp, headerLen+4, "Rlerror: %x", resp)
		require.Equal(t, byte(msgRlerror), resp[4])
		return unix.Errno(binary.LittleEndian.Uint32(resp[headerLen:]))
	}
	assert.Equal(t, unix.ENODATA, ecode(r.roundtrip(t, txattrwalk(4, 1, 3, "trusted.overlay.metacopy"))))
	assert.Equal(t, unix.EOPNOTSUPP, ecode(r.roundtrip(t, txattrwalk(5, 2, 4, "user.x"))))
	// The correction is for that request only: a later bad fid is still
	// the server's own EBADF.
	assert.Equal(t, unix.EBADF, ecode(r.roundtrip(t, txattrwalk(6, 99, 5, "user.x"))))
	if unix.Setxattr(filepath.Join(dir, "file"), "user.vmm", []byte("value"), 0) == nil {
		resp := r.roundtrip(t, txattrwalk(7, 1, 6, "user.vmm"))
		require.Equal(t, byte(31), resp[4], "Rxattrwalk: %x", resp)
		assert.EqualValues(t, 5, binary.LittleEndian.Uint64(resp[headerLen:]), "the value's size")
	}
}
