package memory

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"unsafe"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestNewSplitsAroundTheMMIOHole(t *testing.T) {
	m, err := New(64 << 20)
	require.NoError(t, err)
	defer m.Close()
	require.Len(t, m.Regions(), 1)
	assert.Equal(t, GuestAddr(64<<20), m.LowEnd())

	big, err := New(4 << 30)
	require.NoError(t, err, "MAP_NORESERVE: 4 GiB costs nothing until touched")
	defer big.Close()
	r := big.Regions()
	require.Len(t, r, 2)
	assert.Equal(t, MMIOHoleStart, r[0].End())
	assert.Equal(t, MMIOHoleEnd, r[1].Base)
	assert.Equal(t, uint64(4<<30), big.Size())
	assert.False(t, big.Contains(MMIOHoleStart, 1), "the hole is not RAM")
	require.NoError(t, big.PutUint64(MMIOHoleEnd+8, 0x1122334455667788))
	v, err := big.Uint64(MMIOHoleEnd + 8)
	require.NoError(t, err)
	assert.Equal(t, uint64(0x1122334455667788), v)
}

func TestNewRejectsImpossibleSizes(t *testing.T) {
	for _, size := range []uint64{0, 1 << 20, MinSize + 1, MaxSize + 4096} {
		_, err := New(size)
		assert.ErrorIs(t, err, ErrSize, "%d", size)
	}
}

func TestAccessesAreBoundsChecked(t *testing.T) {
	m := FromSlices(Region{Base: 0x1000, Host: make([]byte, 0x1000)}, Region{Base: 0x4000, Host: make([]byte, 0x100)})
	for _, tc := range []struct {
		addr GuestAddr
		n    uint64
		ok   bool
	}{
		{0x1000, 0x1000, true},
		{0x1fff, 1, true},
		{0x1fff, 2, false}, // crosses the end of a region
		{0x0fff, 2, false}, // starts before RAM
		{0x2000, 1, false}, // a gap
		{0x4000, 0x100, true},
		{0x4000, 0x101, false},
		{0x40ff, ^uint64(0), false}, // length that wraps
		{^GuestAddr(0), 2, false},
	} {
		_, err := m.Slice(tc.addr, tc.n)
		if tc.ok {
			assert.NoError(t, err, "%v+%#x", tc.addr, tc.n)
		} else {
			assert.ErrorIs(t, err, ErrOutOfRange, "%v+%#x", tc.addr, tc.n)
		}
	}
	require.NoError(t, m.WriteAt([]byte{1, 2, 3}, 0x1ffd))
	b := make([]byte, 3)
	require.NoError(t, m.ReadAt(b, 0x1ffd))
	assert.Equal(t, []byte{1, 2, 3}, b)
	assert.ErrorIs(t, m.Zero(0x1fff, 2), ErrOutOfRange)
}

func TestAddDetectsWrap(t *testing.T) {
	_, ok := GuestAddr(10).Add(5)
	assert.True(t, ok)
	_, ok = (^GuestAddr(0)).Add(1)
	assert.False(t, ok)
}

func FuzzSlice(f *testing.F) {
	f.Add(uint64(0x1000), uint64(16))
	f.Fuzz(func(t *testing.T, addr, n uint64) {
		m := FromSlices(Region{Base: 0x1000, Host: make([]byte, 0x1000)})
		b, err := m.Slice(GuestAddr(addr), n)
		if err == nil {
			require.Len(t, b, int(n))
			require.True(t, addr >= 0x1000 && addr+n <= 0x2000)
		}
	})
}

// Host and guest addresses agree modulo 2 MiB, so KVM can map the guest's
// RAM with large pages; every byte of each region is usable, and Close
// unmaps exactly what New mapped.
func TestRegionsAreHugePageAligned(t *testing.T) {
	for _, size := range []uint64{MinSize, 64<<20 + 4096, 4 << 30} {
		m, err := New(size)
		require.NoError(t, err)
		for _, r := range m.Regions() {
			host := uintptr(unsafe.Pointer(unsafe.SliceData(r.Host)))
			assert.Zero(t, host%hugePageSize, "host address of region at %v", r.Base)
			assert.Zero(t, uint64(r.Base)%hugePageSize)
			r.Host[0], r.Host[len(r.Host)-1] = 1, 2 // both ends are mapped
		}
		require.NoError(t, m.Close())
	}
}

func TestDiscard(t *testing.T) {
	m, err := New(MinSize)
	require.NoError(t, err)
	defer m.Close()
	require.NoError(t, m.WriteAt([]byte("hello"), 0x10000))
	require.NoError(t, m.WriteAt([]byte("keep"), 0x11000))
	require.NoError(t, m.Discard(0x10000, PageSize))
	got := make([]byte, 5)
	require.NoError(t, m.ReadAt(got, 0x10000))
	require.Equal(t, make([]byte, 5), got, "a discarded page reads as zeros")
	require.NoError(t, m.ReadAt(got[:4], 0x11000))
	require.Equal(t, []byte("keep"), got[:4], "the next page is untouched")
	require.ErrorIs(t, m.Discard(0x10001, PageSize), ErrAlign)
	require.ErrorIs(t, m.Discard(0x10000, 100), ErrAlign)
	require.ErrorIs(t, m.Discard(MinSize, PageSize), ErrOutOfRange)
	require.ErrorIs(t, m.Discard(MinSize-PageSize, 2*PageSize), ErrOutOfRange)

	s := FromSlices(Region{Base: 0, Host: []byte{1, 2, 3, 4, 5, 6, 7, 8}})
	require.ErrorIs(t, s.Discard(0, PageSize), ErrOutOfRange)
	s = FromSlices(Region{Base: 0, Host: make([]byte, 2*PageSize)})
	require.NoError(t, s.WriteAt([]byte{9}, PageSize))
	require.NoError(t, s.Discard(PageSize, PageSize))
	b, _ := s.Uint16(PageSize)
	require.Zero(t, b)
}

// rss reads this process's resident set size.
func rss(t *testing.T) uint64 {
	t.Helper()
	b, err := os.ReadFile("/proc/self/statm")
	require.NoError(t, err)
	var size, res uint64
	_, err = fmt.Sscan(string(b), &size, &res)
	require.NoError(t, err)
	return res * uint64(os.Getpagesize())
}

// TestDiscardLowersRSS: what a balloon inflates leaves the process.
func TestDiscardLowersRSS(t *testing.T) {
	m, err := New(64 << 20)
	require.NoError(t, err)
	defer m.Close()
	const n = 48 << 20
	b, err := m.Slice(0x200000, n)
	require.NoError(t, err)
	for i := 0; i < len(b); i += 4096 {
		b[i] = 1
	}
	before := rss(t)
	require.NoError(t, m.Discard(0x200000, n))
	after := rss(t)
	t.Logf("RSS %d MiB -> %d MiB", before>>20, after>>20)
	require.GreaterOrEqual(t, before-after, uint64(40<<20), "RSS fell by most of the 48 MiB")
}

func TestNewFromFileIsPrivateAndLazy(t *testing.T) {
	const size = MinSize
	p := filepath.Join(t.TempDir(), "mem")
	data := make([]byte, size)
	copy(data[0x1000:], "from the file")
	require.NoError(t, os.WriteFile(p, data, 0o600))
	f, err := os.Open(p)
	require.NoError(t, err)
	defer f.Close()
	m, err := NewFromFile(f, size)
	require.NoError(t, err)
	defer m.Close()
	got := make([]byte, 13)
	require.NoError(t, m.ReadAt(got, 0x1000))
	assert.Equal(t, "from the file", string(got))
	require.NoError(t, m.WriteAt([]byte("guest change"), 0x1000))
	onDisk, err := os.ReadFile(p)
	require.NoError(t, err)
	assert.Equal(t, "from the file", string(onDisk[0x1000:0x100d]), "MAP_PRIVATE: writes never reach the file")

	_, err = NewFromFile(f, size*2)
	assert.ErrorIs(t, err, ErrSize, "a file of the wrong size is refused")
}
