package fs

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"

	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/stretchr/testify/require"
)

// FuzzRequest feeds arbitrary bytes to the FUSE decoder and the
// passthrough file system as one chain's device-readable part, split at
// an arbitrary point into two buffers, with a reply buffer of arbitrary
// size. Nothing may panic, and nothing outside the share may change.
func FuzzRequest(f *testing.F) {
	for _, seed := range seedRequests(f) {
		f.Add(seed, uint16(0), uint32(4096))
	}
	f.Fuzz(func(t *testing.T, in []byte, split uint16, outLen uint32) {
		parent := t.TempDir()
		share := filepath.Join(parent, "share")
		require.NoError(t, os.Mkdir(share, 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(share, "f"), []byte("data"), 0o644))
		require.NoError(t, os.Symlink("..", filepath.Join(share, "up")))
		p, err := newPassthrough(share, false)
		require.NoError(t, err)
		defer p.close()
		s := fuse.NewProtocolServer(p, &fuse.MountOptions{MaxWrite: MaxWrite})
		out := make([]byte, outLen%(2<<20))
		var iov [][]byte
		if k := int(split); k < len(in) {
			iov = [][]byte{in[:k], in[k:]}
		} else {
			iov = [][]byte{in}
		}
		// Every request against a fresh table, and after an INIT.
		c := &client{t: t, do: func(in []byte, outLen int) []byte {
			o := make([]byte, outLen)
			n, _ := s.HandleRequest([][]byte{in}, [][]byte{o})
			return o[:n]
		}}
		c.init()
		for range 2 { // the second time the request may find what the first made
			n, _ := s.HandleRequest(iov, capIov([][]byte{out}, maxReply))
			if n > len(out) {
				t.Fatalf("wrote %d bytes into %d", n, len(out))
			}
		}
		ents, err := os.ReadDir(parent)
		require.NoError(t, err)
		require.Len(t, ents, 1, "only the share in its parent")
	})
}

// seedRequests records the requests the unit tests' client sends.
func seedRequests(f *testing.F) [][]byte {
	var seeds [][]byte
	t := &testing.T{}
	dir := f.TempDir()
	p, err := newPassthrough(dir, false)
	if err != nil {
		f.Fatal(err)
	}
	defer p.close()
	s := fuse.NewProtocolServer(p, &fuse.MountOptions{MaxWrite: MaxWrite})
	c := &client{t: t, do: func(in []byte, outLen int) []byte {
		seeds = append(seeds, append([]byte(nil), in...))
		o := make([]byte, outLen)
		n, _ := s.HandleRequest([][]byte{in}, [][]byte{o})
		return o[:n]
	}}
	c.init()
	e, _, _ := c.create(root, "x", 2, 0o644)
	c.lookup(root, "f")
	c.lookup(root, "up")
	c.write(e.NodeId, 1, 0, []byte("abc"))
	c.read(e.NodeId, 1, 0, 100)
	c.mkdir(root, "d", 0o755)
	c.symlink(root, "../x", "s")
	c.rename(root, "x", root, "y", 0)
	c.setattr(fuse.SetAttrIn{SetAttrInCommon: fuse.SetAttrInCommon{Valid: fuse.FATTR_SIZE, Size: 1 << 40}}, e.NodeId)
	c.link(e.NodeId, root, "h")
	forget := binary.LittleEndian.AppendUint64(binary.LittleEndian.AppendUint64(nil, e.NodeId), 1<<40)
	arg := make([]byte, 48)
	binary.LittleEndian.PutUint32(arg[40:], 1000)
	c.call(opBatchForget, 0, arg, forget)
	c.readdir(root, 512, true)
	return seeds
}
