package fs

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

	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/vmm-dev/vmm/devices/virtio"
)

const root = fuse.FUSE_ROOT_ID

// transports runs a test over go-fuse directly and through the virtio
// device, so both the passthrough and the queue plumbing are covered.
var transports = []struct {
	name string
	new  func(t *testing.T, dir string, ro bool) *client
}{
	{"direct", directTransport},
	{"virtio", virtioClient},
}

func eachTransport(t *testing.T, f func(t *testing.T, c *client, dir string)) {
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			dir := t.TempDir()
			f(t, tr.new(t, dir, false), dir)
		})
	}
}

func TestConfigSpace(t *testing.T) {
	r := newVirtioRig(t, Config{HostDir: t.TempDir(), Tag: "myshare"})
	assert.Equal(t, uint32(26), r.drv.Read32(virtio.RegDeviceID))
	cfg := r.drv.ReadConfig(0, 40)
	assert.Equal(t, append([]byte("myshare"), make([]byte, 29)...), cfg[:36], "tag, NUL padded (§5.11.4)")
	assert.Equal(t, uint32(RequestQueues), binary.LittleEndian.Uint32(cfg[36:]), "num_request_queues")
}

func TestNewRefuses(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name string
		cfg  Config
	}{
		{"empty tag", Config{HostDir: dir}},
		{"long tag", Config{HostDir: dir, Tag: string(make([]byte, 37))}},
		{"missing dir", Config{HostDir: filepath.Join(dir, "nope"), Tag: "x"}},
		{"a file", Config{HostDir: writeFile(t, dir, "f", "x"), Tag: "x"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.cfg)
			assert.Error(t, err)
		})
	}
}

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	require.NoError(t, os.WriteFile(p, []byte(content), 0o644))
	return p
}

func TestContentSizesModes(t *testing.T) {
	eachTransport(t, func(t *testing.T, c *client, dir string) {
		data := make([]byte, 3<<20+123)
		_, _ = rand.Read(data)
		require.NoError(t, os.WriteFile(filepath.Join(dir, "big"), data, 0o640))

		e, err := c.lookup(root, "big")
		require.Zero(t, err)
		assert.Equal(t, uint64(len(data)), e.Attr.Size)
		assert.Equal(t, uint32(unix.S_IFREG|0o640), e.Attr.Mode)
		var st unix.Stat_t
		require.NoError(t, unix.Stat(filepath.Join(dir, "big"), &st))
		assert.Equal(t, st.Ino, e.Attr.Ino)

		fh, err := c.open(e.NodeId, unix.O_RDONLY)
		require.Zero(t, err)
		var got []byte
		for off := uint64(0); ; {
			b, err := c.read(e.NodeId, fh, off, 1<<20)
			require.Zero(t, err)
			if len(b) == 0 {
				break
			}
			got = append(got, b...)
			off += uint64(len(b))
		}
		c.release(e.NodeId, fh)
		assert.True(t, bytes.Equal(data, got), "content read intact")

		// A new file, written by the guest, read by the host.
		ne, fh, err := c.create(root, "new", unix.O_WRONLY|unix.O_CREAT, 0o600)
		require.Zero(t, err)
		n, err := c.write(ne.NodeId, fh, 0, []byte("hello from the guest"))
		require.Zero(t, err)
		assert.Equal(t, uint32(20), n)
		c.release(ne.NodeId, fh)
		b, rerr := os.ReadFile(filepath.Join(dir, "new"))
		require.NoError(t, rerr)
		assert.Equal(t, "hello from the guest", string(b))
		fi, rerr := os.Stat(filepath.Join(dir, "new"))
		require.NoError(t, rerr)
		assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm())

		// chmod, truncate, utimes.
		a, err := c.setattr(fuse.SetAttrIn{SetAttrInCommon: fuse.SetAttrInCommon{
			Valid: fuse.FATTR_MODE | fuse.FATTR_SIZE | fuse.FATTR_MTIME, Mode: 0o751, Size: 5, Mtime: 1234567890}}, ne.NodeId)
		require.Zero(t, err)
		assert.Equal(t, uint32(unix.S_IFREG|0o751), a.Mode)
		assert.Equal(t, uint64(5), a.Size)
		fi, rerr = os.Stat(filepath.Join(dir, "new"))
		require.NoError(t, rerr)
		assert.Equal(t, os.FileMode(0o751), fi.Mode().Perm())
		assert.Equal(t, int64(5), fi.Size())
		assert.Equal(t, int64(1234567890), fi.ModTime().Unix())

		// A change made on the host shows at the next GETATTR.
		require.NoError(t, os.WriteFile(filepath.Join(dir, "new"), []byte("longer content"), 0o644))
		a, err = c.getattr(ne.NodeId)
		require.Zero(t, err)
		assert.Equal(t, uint64(14), a.Size)

		var sf fuse.StatfsOut
		st2, out := c.call(opStatfs, root, nil)
		require.Zero(t, st2)
		sf = fromBytes[fuse.StatfsOut](t, out)
		assert.NotZero(t, sf.Bsize)
	})
}

func TestDirectoriesSymlinksHardLinksRename(t *testing.T) {
	eachTransport(t, func(t *testing.T, c *client, dir string) {
		d, err := c.mkdir(root, "sub", 0o755)
		require.Zero(t, err)
		assert.True(t, isDir(t, filepath.Join(dir, "sub")))

		f, fh, err := c.create(d.NodeId, "file", unix.O_RDWR, 0o644)
		require.Zero(t, err)
		_, err = c.write(f.NodeId, fh, 0, []byte("x"))
		require.Zero(t, err)
		c.release(f.NodeId, fh)

		s, err := c.symlink(d.NodeId, "file", "link")
		require.Zero(t, err)
		assert.Equal(t, uint32(unix.S_IFLNK), s.Attr.Mode&unix.S_IFMT)
		target, err := c.readlink(s.NodeId)
		require.Zero(t, err)
		assert.Equal(t, "file", target)
		ht, herr := os.Readlink(filepath.Join(dir, "sub", "link"))
		require.NoError(t, herr)
		assert.Equal(t, "file", ht)

		h, err := c.link(f.NodeId, root, "hard")
		require.Zero(t, err)
		assert.Equal(t, f.NodeId, h.NodeId, "one host inode, one node ID")
		assert.Equal(t, uint32(2), h.Attr.Nlink)
		var a, b unix.Stat_t
		require.NoError(t, unix.Stat(filepath.Join(dir, "hard"), &a))
		require.NoError(t, unix.Stat(filepath.Join(dir, "sub", "file"), &b))
		assert.Equal(t, a.Ino, b.Ino)

		require.Zero(t, c.rename(d.NodeId, "file", root, "moved", 0))
		assert.FileExists(t, filepath.Join(dir, "moved"))
		assert.NoFileExists(t, filepath.Join(dir, "sub", "file"))
		assert.Equal(t, unix.EEXIST, c.rename(root, "moved", root, "hard", unix.RENAME_NOREPLACE))
		require.Zero(t, c.rename(root, "moved", d.NodeId, "link", unix.RENAME_EXCHANGE))
		assert.True(t, isSymlink(t, filepath.Join(dir, "moved")))

		require.Zero(t, c.unlink(root, "hard"))
		assert.NoFileExists(t, filepath.Join(dir, "hard"))
		st, _ := c.call(opRmdir, root, nil, cstr("sub"))
		assert.Equal(t, unix.ENOTEMPTY, errnoOf(st))
	})
}

func isDir(t *testing.T, p string) bool {
	fi, err := os.Lstat(p)
	require.NoError(t, err)
	return fi.IsDir()
}

func isSymlink(t *testing.T, p string) bool {
	fi, err := os.Lstat(p)
	require.NoError(t, err)
	return fi.Mode()&os.ModeSymlink != 0
}

func TestXattrs(t *testing.T) {
	eachTransport(t, func(t *testing.T, c *client, dir string) {
		p := writeFile(t, dir, "f", "x")
		if err := unix.Setxattr(p, "user.probe", []byte("1"), 0); err != nil {
			t.Skipf("no user xattrs on %s: %v", dir, err)
		}
		e, err := c.lookup(root, "f")
		require.Zero(t, err)
		arg := make([]byte, 48)
		binary.LittleEndian.PutUint32(arg[40:], 5) // size
		st, _ := c.call(opSetxattr, e.NodeId, arg, cstr("user.vmm"), []byte("value"))
		require.Zero(t, st)
		v := make([]byte, 16)
		n, xerr := unix.Getxattr(p, "user.vmm", v)
		require.NoError(t, xerr)
		assert.Equal(t, "value", string(v[:n]))

		arg = make([]byte, 48)
		binary.LittleEndian.PutUint32(arg[40:], 64)
		st, out := c.call(opGetxattr, e.NodeId, arg, cstr("user.probe"))
		require.Zero(t, st)
		assert.Equal(t, "1", string(out))
		st, out = c.call(opListxattr, e.NodeId, arg)
		require.Zero(t, st)
		assert.Contains(t, string(out), "user.vmm\x00")
	})
}

func TestLargeSparseOffsets(t *testing.T) {
	eachTransport(t, func(t *testing.T, c *client, dir string) {
		e, fh, err := c.create(root, "sparse", unix.O_RDWR, 0o644)
		require.Zero(t, err)
		const off = 5<<30 + 12345 // past 4 GiB: 64-bit offsets all the way
		n, err := c.write(e.NodeId, fh, off, []byte("far away"))
		require.Zero(t, err)
		assert.Equal(t, uint32(8), n)
		b, err := c.read(e.NodeId, fh, off, 4096)
		require.Zero(t, err)
		assert.Equal(t, "far away", string(b))
		b, err = c.read(e.NodeId, fh, 1<<32, 16)
		require.Zero(t, err)
		assert.Equal(t, make([]byte, 16), b, "a hole reads as zeros")
		c.release(e.NodeId, fh)
		fi, serr := os.Stat(filepath.Join(dir, "sparse"))
		require.NoError(t, serr)
		assert.Equal(t, int64(off+8), fi.Size())
		a, err := c.getattr(e.NodeId)
		require.Zero(t, err)
		assert.Equal(t, uint64(off+8), a.Size)
	})
}

func TestReadDirBig(t *testing.T) {
	n := 20000
	if testing.Short() {
		n = 2000
	}
	dir := t.TempDir()
	want := make([]string, 0, n+2)
	for i := range n {
		name := fmt.Sprintf("entry-%06d-with-a-longish-name", i)
		f, err := os.Create(filepath.Join(dir, name))
		require.NoError(t, err)
		require.NoError(t, f.Close())
		want = append(want, name)
	}
	want = append(want, ".", "..")
	sort.Strings(want)
	for _, tr := range transports {
		for _, plus := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/plus=%v", tr.name, plus), func(t *testing.T) {
				c := tr.new(t, dir, true)
				ents, err := c.readdir(root, 4096, plus)
				require.Zero(t, err)
				got := make([]string, 0, len(ents))
				for _, e := range ents {
					got = append(got, e.Name)
				}
				sort.Strings(got)
				assert.Equal(t, want, got, "every entry exactly once")
			})
		}
	}
}

func TestReadOnly(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			dir := t.TempDir()
			writeFile(t, dir, "f", "data")
			require.NoError(t, os.Mkdir(filepath.Join(dir, "d"), 0o755))
			c := tr.new(t, dir, true)
			e, err := c.lookup(root, "f")
			require.Zero(t, err)
			_, err = c.open(e.NodeId, unix.O_WRONLY)
			assert.Equal(t, unix.EROFS, err)
			_, err = c.open(e.NodeId, unix.O_RDONLY|unix.O_TRUNC)
			assert.Equal(t, unix.EROFS, err)
			_, _, err = c.create(root, "g", unix.O_WRONLY, 0o644)
			assert.Equal(t, unix.EROFS, err)
			_, err = c.mkdir(root, "m", 0o755)
			assert.Equal(t, unix.EROFS, err)
			_, err = c.symlink(root, "f", "s")
			assert.Equal(t, unix.EROFS, err)
			_, err = c.link(e.NodeId, root, "h")
			assert.Equal(t, unix.EROFS, err)
			assert.Equal(t, unix.EROFS, c.unlink(root, "f"))
			assert.Equal(t, unix.EROFS, c.rename(root, "f", root, "g", 0))
			_, err = c.setattr(fuse.SetAttrIn{SetAttrInCommon: fuse.SetAttrInCommon{Valid: fuse.FATTR_SIZE}}, e.NodeId)
			assert.Equal(t, unix.EROFS, err)
			// Reading still works.
			fh, err := c.open(e.NodeId, unix.O_RDONLY)
			require.Zero(t, err)
			b, err := c.read(e.NodeId, fh, 0, 100)
			require.Zero(t, err)
			assert.Equal(t, "data", string(b))
			b, rerr := os.ReadFile(filepath.Join(dir, "f"))
			require.NoError(t, rerr)
			assert.Equal(t, "data", string(b), "host file untouched")
		})
	}
}

// escapeFixture is a share inside a parent directory that holds a
// secret: nothing the guest does may read or change it.
type escapeFixture struct {
	parent, share, secret string
}

func newEscapeFixture(t *testing.T) escapeFixture {
	parent := t.TempDir()
	share := filepath.Join(parent, "share")
	require.NoError(t, os.Mkdir(share, 0o755))
	secret := writeFile(t, parent, "secret", "host secret")
	require.NoError(t, os.Mkdir(filepath.Join(parent, "outdir"), 0o755))
	writeFile(t, filepath.Join(parent, "outdir"), "inner", "outside too")
	require.NoError(t, os.Symlink("../secret", filepath.Join(share, "rel")))
	require.NoError(t, os.Symlink(secret, filepath.Join(share, "abs")))
	require.NoError(t, os.Symlink("../outdir", filepath.Join(share, "reldir")))
	require.NoError(t, os.Symlink(filepath.Join(parent, "outdir"), filepath.Join(share, "absdir")))
	require.NoError(t, os.Symlink("/", filepath.Join(share, "slash")))
	require.NoError(t, os.Mkdir(filepath.Join(share, "d"), 0o755))
	return escapeFixture{parent: parent, share: share, secret: secret}
}

func (f escapeFixture) untouched(t *testing.T) {
	t.Helper()
	b, err := os.ReadFile(f.secret)
	require.NoError(t, err)
	assert.Equal(t, "host secret", string(b), "the secret is unchanged")
	ents, err := os.ReadDir(f.parent)
	require.NoError(t, err)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	assert.ElementsMatch(t, []string{"share", "secret", "outdir"}, names, "nothing appeared outside the share")
	ents, err = os.ReadDir(filepath.Join(f.parent, "outdir"))
	require.NoError(t, err)
	assert.Len(t, ents, 1)
}

func TestEscapes(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			f := newEscapeFixture(t)
			c := tr.new(t, f.share, false)
			defer f.untouched(t)

			for _, name := range []string{"..", ".", "", "../secret", "d/../../secret", "/etc/passwd", "a\x00b"} {
				_, err := c.lookup(root, name)
				assert.NotZero(t, err, "lookup %q", name)
			}
			d, err := c.lookup(root, "d")
			require.Zero(t, err)
			_, err = c.lookup(d.NodeId, "..")
			assert.NotZero(t, err, "no way up from a subdirectory")

			for _, link := range []string{"rel", "abs", "reldir", "absdir", "slash"} {
				e, err := c.lookup(root, link)
				require.Zero(t, err, link)
				assert.Equal(t, uint32(unix.S_IFLNK), e.Attr.Mode&unix.S_IFMT, "%s is the link itself, not its target", link)
				_, err = c.open(e.NodeId, unix.O_RDONLY)
				assert.Equal(t, unix.ELOOP, err, "open(%s) follows nothing on the host", link)
				_, err = c.open(e.NodeId, unix.O_RDWR|unix.O_TRUNC)
				assert.NotZero(t, err)
				for _, in := range []string{"inner", "secret", "etc", "share"} {
					_, err = c.lookup(e.NodeId, in)
					assert.Equal(t, unix.ENOTDIR, err, "lookup %s/%s", link, in)
				}
				_, _, err = c.create(e.NodeId, "planted", unix.O_WRONLY, 0o644)
				assert.Equal(t, unix.ENOTDIR, err)
				_, err = c.mkdir(e.NodeId, "planted", 0o755)
				assert.Equal(t, unix.ENOTDIR, err)
				assert.NotZero(t, c.rename(root, "d", e.NodeId, "planted", 0))
				_, err = c.readdir(e.NodeId, 4096, false)
				assert.Equal(t, unix.ENOTDIR, err)
				_, err = c.setattr(fuse.SetAttrIn{SetAttrInCommon: fuse.SetAttrInCommon{Valid: fuse.FATTR_MODE, Mode: 0o777}}, e.NodeId)
				assert.NotZero(t, err, "chmod through a link")
				_, err = c.setattr(fuse.SetAttrIn{SetAttrInCommon: fuse.SetAttrInCommon{Valid: fuse.FATTR_SIZE}}, e.NodeId)
				assert.NotZero(t, err, "truncate through a link")
				_, err = c.link(e.NodeId, root, "hardlink-of-"+link)
				if err == 0 {
					// A hard link of the symlink itself is a symlink
					// inside the share, still followed by nothing.
					assert.True(t, isSymlink(t, filepath.Join(f.share, "hardlink-of-"+link)))
				}
			}

			// Names with a slash never reach the host as paths.
			_, _, err = c.create(root, "../planted", unix.O_WRONLY, 0o644)
			assert.Equal(t, unix.EINVAL, err)
			_, err = c.mkdir(root, "../planted", 0o755)
			assert.Equal(t, unix.EINVAL, err)
			_, err = c.symlink(root, "x", "../planted")
			assert.Equal(t, unix.EINVAL, err)
			assert.Equal(t, unix.EINVAL, c.rename(root, "d", root, "../planted", 0))
			assert.Equal(t, unix.EINVAL, c.rename(root, "../secret", root, "stolen", 0))
			assert.Equal(t, unix.EINVAL, c.unlink(root, "../secret"))

			// Node IDs and handles the device never gave.
			for _, id := range []uint64{0, 2, 999, 1 << 40} {
				_, err = c.getattr(id + 1000)
				assert.Equal(t, unix.ESTALE, err)
				_, err = c.link(id+1000, root, "ghost")
				assert.Equal(t, unix.ESTALE, err)
				_, err = c.read(root, id, 0, 100)
				assert.Equal(t, unix.EBADF, err)
			}

			// No device nodes: the guest must not open host hardware.
			st, _ := c.call(opMknod, root, bytesOf(&fuse.MknodIn{Mode: unix.S_IFBLK | 0o600, Rdev: 8 << 8}), cstr("sda"))
			assert.Equal(t, unix.EPERM, errnoOf(st))
			st, _ = c.call(opMknod, root, bytesOf(&fuse.MknodIn{Mode: unix.S_IFCHR | 0o600, Rdev: 1<<8 | 1}), cstr("mem"))
			assert.Equal(t, unix.EPERM, errnoOf(st))
			st, _ = c.call(opRename2, root, bytesOf(&fuse.RenameIn{Newdir: root, Flags: unix.RENAME_WHITEOUT}), cstr("d"), cstr("w"))
			assert.Equal(t, unix.EINVAL, errnoOf(st))
		})
	}
}

// TestEscapeRenameRace swaps, on the host, a directory of the share with
// a symlink to the outside while the guest walks into it and opens a
// file there: every open must give the share's file or fail.
func TestEscapeRenameRace(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			f := newEscapeFixture(t)
			inside := filepath.Join(f.share, "real")
			require.NoError(t, os.Mkdir(inside, 0o755))
			writeFile(t, inside, "secret", "inside")
			require.NoError(t, os.Symlink(f.parent, filepath.Join(f.share, "evil")))
			c := tr.new(t, f.share, false)
			defer f.untouched(t)

			var stop atomic.Bool
			var wg sync.WaitGroup
			wg.Add(1)
			go func() {
				defer wg.Done()
				a, b := filepath.Join(f.share, "real"), filepath.Join(f.share, "evil")
				for !stop.Load() {
					// An atomic swap of the two names.
					_ = unix.Renameat2(unix.AT_FDCWD, a, unix.AT_FDCWD, b, unix.RENAME_EXCHANGE)
				}
			}()
			defer func() { stop.Store(true); wg.Wait() }()

			var opened, refused int
			for range 300 {
				e, err := c.lookup(root, "real")
				if err != 0 {
					refused++
					continue
				}
				s, err := c.lookup(e.NodeId, "secret")
				if err != 0 {
					refused++
					continue
				}
				fh, err := c.open(s.NodeId, unix.O_RDWR)
				if err != 0 {
					refused++
					continue
				}
				b, rerr := c.read(s.NodeId, fh, 0, 100)
				require.Zero(t, rerr)
				require.Equal(t, "inside", string(b), "only the share's own file")
				_, werr := c.write(s.NodeId, fh, 0, []byte("inside"))
				require.Zero(t, werr)
				c.release(s.NodeId, fh)
				opened++
			}
			t.Logf("opened %d, refused %d", opened, refused)
			assert.NotZero(t, opened)
		})
	}
}

func TestHostileChains(t *testing.T) {
	r := newVirtioRig(t, Config{HostDir: t.TempDir(), Tag: "t"})
	c := &client{t: t, do: r.transport(t)}
	c.init()
	// Requests too short, lengths that lie, replies that do not fit:
	// each answered (or not) without breaking the device.
	for _, in := range [][]byte{
		{},
		{1, 2, 3},
		make([]byte, 39),
		append(binary.LittleEndian.AppendUint32(nil, 1<<31), make([]byte, 36)...),
	} {
		out := c.do(append(in, 0), 16)
		assert.LessOrEqual(t, len(out), 16)
	}
	st, _ := c.callOut(opRead, root, 16, bytesOf(&fuse.ReadIn{Size: 1 << 31}))
	assert.NotZero(t, st)
	assert.False(t, r.drv.NeedsReset())
	_, err := c.lookup(root, "nothing")
	assert.Equal(t, unix.ENOENT, err, "the device still answers")
}

// BenchmarkRead256MiB reads a 256 MiB host file through the device in
// 1 MiB FUSE_READs, each reply in 4 KiB pages as Linux posts them.
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
	r := newVirtioRig(b, Config{HostDir: dir, Tag: "b", ReadOnly: true})
	t := &testing.T{}
	c := &client{t: t, do: r.transport(b)}
	c.init()
	e, _ := c.lookup(root, "big")
	fh, _ := c.open(e.NodeId, unix.O_RDONLY)
	b.SetBytes(size)
	b.ResetTimer()
	for range b.N {
		for off := uint64(0); off < size; off += 1 << 20 {
			got, errno := c.read(e.NodeId, fh, off, 1<<20)
			if errno != 0 || len(got) != 1<<20 {
				b.Fatalf("read at %d: %v, %d bytes", off, errno, len(got))
			}
		}
	}
}
