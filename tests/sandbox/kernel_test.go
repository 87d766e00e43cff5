package sandbox

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"sort"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestVersionLess(t *testing.T) {
	names := []string{
		"linux-image-6.1.0-100-cloud-amd64-unsigned",
		"linux-image-6.1.0-9-cloud-amd64-unsigned",
		"linux-image-6.1.0-57-cloud-amd64-unsigned",
		"linux-image-6.10.0-1-cloud-amd64-unsigned",
		"linux-image-6.1.0-57-cloud-amd64-unsigned_6.1.192-3",
	}
	sort.Slice(names, func(i, j int) bool { return versionLess(names[i], names[j]) })
	assert.Equal(t, []string{
		"linux-image-6.1.0-9-cloud-amd64-unsigned",
		"linux-image-6.1.0-57-cloud-amd64-unsigned",
		"linux-image-6.1.0-57-cloud-amd64-unsigned_6.1.192-3",
		"linux-image-6.1.0-100-cloud-amd64-unsigned",
		"linux-image-6.10.0-1-cloud-amd64-unsigned",
	}, names)
}

func TestKernelPackagePattern(t *testing.T) {
	assert.True(t, kernelPackageRE.MatchString("linux-image-6.1.0-57-cloud-amd64-unsigned"))
	assert.False(t, kernelPackageRE.MatchString("linux-image-6.1.0-57-cloud-amd64"))
	assert.False(t, kernelPackageRE.MatchString("linux-image-cloud-amd64-unsigned"))
	assert.False(t, kernelPackageRE.MatchString("linux-image-6.1.0-57-cloud-amd64-unsigned-dbg"))
}

func TestCacheDir(t *testing.T) {
	t.Setenv("VMM_CACHE", "/x/cache")
	dir, err := CacheDir()
	require.NoError(t, err)
	assert.Equal(t, "/x/cache", dir)

	t.Setenv("VMM_CACHE", "")
	t.Setenv("XDG_CACHE_HOME", "/y")
	dir, err = CacheDir()
	require.NoError(t, err)
	assert.Equal(t, "/y/vmm", dir)
}

// note encodes one ELF note (gABI "Note Section").
func note(name string, typ uint32, desc []byte) []byte {
	pad := func(b []byte) []byte { return append(b, make([]byte, (4-len(b)%4)%4)...) }
	var b []byte
	b = binary.LittleEndian.AppendUint32(b, uint32(len(name)+1))
	b = binary.LittleEndian.AppendUint32(b, uint32(len(desc)))
	b = binary.LittleEndian.AppendUint32(b, typ)
	b = append(b, pad(append([]byte(name), 0))...)
	return append(b, pad(desc)...)
}

func TestFindPVHNote(t *testing.T) {
	entry := binary.LittleEndian.AppendUint32(nil, 0x1000abc)
	tests := []struct {
		name  string
		notes []byte
		want  uint64
		ok    bool
	}{
		{name: "pvh after others", notes: append(note("Xen", 6, []byte("linux\x00")), note("Xen", 18, entry)...), want: 0x1000abc, ok: true},
		{name: "64-bit descriptor", notes: note("Xen", 18, binary.LittleEndian.AppendUint64(nil, 0x2000)), want: 0x2000, ok: true},
		{name: "other owner", notes: note("GNU", 18, entry)},
		{name: "no pvh type", notes: note("Xen", 17, entry)},
		{name: "truncated", notes: note("Xen", 18, entry)[:14]},
		{name: "huge sizes", notes: []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 18, 0, 0, 0}},
		{name: "empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := findPVHNote(tt.notes, binary.LittleEndian)
			assert.Equal(t, tt.ok, ok)
			assert.Equal(t, tt.want, got)
		})
	}
}

func FuzzFindPVHNote(f *testing.F) {
	f.Add(note("Xen", 18, []byte{1, 2, 3, 4}))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, notes []byte) {
		findPVHNote(notes, binary.LittleEndian)
	})
}

// fakeBzImage builds the header fields payload() reads.
func fakeBzImage(version uint16, setupSects byte, payloadOff, payloadLen uint32, body []byte) []byte {
	sects := int(setupSects)
	if sects == 0 {
		sects = 4
	}
	bz := make([]byte, (sects+1)*512)
	bz[setupSectsOffset] = setupSects
	copy(bz[headerMagicOffset:], "HdrS")
	binary.LittleEndian.PutUint16(bz[headerVersionOffset:], version)
	binary.LittleEndian.PutUint32(bz[payloadOffsetField:], payloadOff)
	binary.LittleEndian.PutUint32(bz[payloadLengthField:], payloadLen)
	return append(bz, body...)
}

func TestPayload(t *testing.T) {
	lz4 := append(append([]byte{}, lz4LegacyMagic...), 9, 9, 9, 9)
	body := append([]byte("decompressor code"), lz4...)

	got, err := payload(fakeBzImage(0x020f, 2, 17, uint32(len(lz4)), body))
	require.NoError(t, err)
	assert.Equal(t, lz4, got, "payload_offset/length")

	got, err = payload(fakeBzImage(0x0206, 0, 0, 0, body))
	require.NoError(t, err)
	assert.Equal(t, lz4, got, "old header: found by magic; setup_sects 0 means 4")

	got, err = payload(fakeBzImage(0x020f, 2, 0xffff_fff0, 0x100, body))
	require.NoError(t, err, "an out-of-range payload field falls back to the magic scan")
	assert.Equal(t, lz4, got)

	_, err = payload([]byte("MZ not a kernel"))
	require.ErrorIs(t, err, ErrNotBzImage)
	_, err = payload(fakeBzImage(0x0206, 2, 0, 0, []byte("no payload")))
	require.ErrorIs(t, err, ErrNotBzImage)
}

func FuzzPayload(f *testing.F) {
	f.Add(fakeBzImage(0x020f, 2, 0, 4, lz4LegacyMagic))
	f.Fuzz(func(t *testing.T, bz []byte) {
		p, err := payload(bz)
		if err == nil && !bytes.Contains(bz, p) {
			t.Fatal("payload is not part of the image")
		}
	})
}

func TestDecompressRejectsUnknownFormat(t *testing.T) {
	_, err := decompress(t.Context(), []byte("BZh91AY&SY"))
	require.ErrorIs(t, err, ErrUnknownPayload)
}

// TestExtractVmlinuxFromCachedKernel checks the real kernel when a previous
// run (sandbox prepare) left it in the cache; it downloads nothing.
func TestExtractVmlinuxFromCachedKernel(t *testing.T) {
	cache, err := CacheDir()
	require.NoError(t, err)
	k, err := newestCachedKernel(filepath.Join(cache, "kernels"))
	if err != nil {
		t.Skipf("no cached kernel: %v", err)
	}
	f, err := os.Open(k.Vmlinux)
	require.NoError(t, err)
	defer f.Close()
	entry, err := PVHEntry(f)
	require.NoError(t, err)
	assert.NotZero(t, entry)
	for _, m := range append(append([]string{}, guestModules...), l1Modules...) {
		_, err := k.Module(m)
		assert.NoError(t, err, m)
	}
}
