package p9

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vmm-dev/vmm/devices/virtio"
)

// FuzzMessage feeds arbitrary bytes as one chain's T-message to a 9P
// session that has done Tversion and Tattach (fid 0 is the root), split
// at an arbitrary point into two buffers, with a reply buffer of
// arbitrary size. Nothing may panic or hang, every reply must fit its
// buffer, and nothing outside the share may appear.
func FuzzMessage(f *testing.F) {
	for _, seed := range [][]byte{
		twalk(1, 0, 1, "f"),
		twalk(1, 0, 1, ".."),
		twalk(1, 0, 1, "up", "secret"),
		{9, 0, 0, 0, msgTflush, 7, 0, 7, 0},
		{11, 0, 0, 0, 12, 1, 0, 0, 0, 0, 0},                 // Tlopen fid 0 without flags
		{15, 0, 0, 0, 116, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, // Tread, cut short
		{7, 0, 0, 0, 200, 1, 0},
	} {
		f.Add(seed, uint16(0xffff), uint32(8192))
	}
	parent := f.TempDir()
	dir := filepath.Join(parent, "share")
	require.NoError(f, os.Mkdir(dir, 0o755))
	require.NoError(f, os.WriteFile(filepath.Join(dir, "f"), []byte("data"), 0o644))
	require.NoError(f, os.Symlink("..", filepath.Join(dir, "up")))
	require.NoError(f, os.WriteFile(filepath.Join(parent, "secret"), []byte("secret"), 0o644))
	f.Fuzz(func(t *testing.T, in []byte, split uint16, outLen uint32) {
		c := newConn(&share{root: dir, files: map[*file]struct{}{}}, "fuzz")
		defer c.close(true)
		out := make([]byte, 1<<16)
		do := func(msg []byte, ob []byte) uint32 {
			var rd [][]byte
			if k := int(split); k < len(msg) {
				rd = [][]byte{msg[:k], msg[k:]}
			} else {
				rd = [][]byte{msg}
			}
			n, err := c.serve(&virtio.Chain{Readable: rd, Writable: [][]byte{ob}})
			if err != nil {
				t.Skipf("session ended: %v", err) // the device would be failed and reset
			}
			if int(n) > len(ob) {
				t.Fatalf("reply of %d bytes into %d", n, len(ob))
			}
			return n
		}
		v := []byte{0, 0, 0, 0, msgTversion, 0xff, 0xff}
		v = binary.LittleEndian.AppendUint32(v, 1<<16)
		v = binary.LittleEndian.AppendUint16(v, 8)
		v = append(v, "9P2000.L"...)
		binary.LittleEndian.PutUint32(v, uint32(len(v)))
		do(v, out)
		a := []byte{0, 0, 0, 0, 104, 1, 0}
		a = binary.LittleEndian.AppendUint32(a, 0)
		a = binary.LittleEndian.AppendUint32(a, ^uint32(0))
		a = append(a, 0, 0, 0, 0)
		a = binary.LittleEndian.AppendUint32(a, 0)
		binary.LittleEndian.PutUint32(a, uint32(len(a)))
		do(a, out)
		do(in, out[:outLen%uint32(len(out))])
		ents, err := os.ReadDir(parent)
		require.NoError(t, err)
		require.Len(t, ents, 2, "nothing new outside the share")
	})
}
