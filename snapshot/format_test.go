package snapshot

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func sample() *File {
	return &File{
		Header: Header{VMMVersion: "1.7.0", CPUVendor: "AuthenticAMD", CPUSignature: 0x00a00f11},
		Sections: []Section{
			{Name: "machine", Data: []byte(`{"cpus":1}`)},
			{Name: "vcpus", Data: make([]byte, 5000)},
			{Name: "empty", Data: []byte{}},
		},
	}
}

func TestRoundTrip(t *testing.T) {
	b, err := Encode(sample())
	require.NoError(t, err)
	f, err := Decode(b)
	require.NoError(t, err)
	want := sample()
	want.Header.FormatVersion = FormatVersion
	assert.Equal(t, want.Header, f.Header)
	require.Len(t, f.Sections, 3)
	for i, s := range want.Sections {
		assert.Equal(t, s.Name, f.Sections[i].Name)
		assert.Equal(t, len(s.Data), len(f.Sections[i].Data))
	}
	d, ok := f.Section("machine")
	assert.True(t, ok)
	assert.Equal(t, `{"cpus":1}`, string(d))
	_, ok = f.Section("nope")
	assert.False(t, ok)

	p := filepath.Join(t.TempDir(), "vm.snap")
	require.NoError(t, WriteFile(p, sample()))
	f2, err := ReadFile(p)
	require.NoError(t, err)
	assert.Equal(t, f.Header, f2.Header)
}

// Every way a file can be bad is refused with its own error.
func TestDecodeRefuses(t *testing.T) {
	good, err := Encode(sample())
	require.NoError(t, err)
	mutate := func(f func(b []byte) []byte) []byte {
		return f(append([]byte(nil), good...))
	}
	for _, tc := range []struct {
		name string
		b    []byte
		want error
		text string
	}{
		{"empty", nil, ErrNotSnapshot, ""},
		{"text file", []byte("hello, this is not a snapshot at all"), ErrNotSnapshot, "starts with"},
		{"magic only", []byte(Magic), ErrTruncated, "header"},
		{"other format version", mutate(func(b []byte) []byte { binary.LittleEndian.PutUint32(b[8:], 2); return b }),
			ErrFormatVersion, "format version 2, this vmm reads version 1"},
		{"truncated", good[:len(good)-100], ErrTruncated, "present"},
		{"one byte short", good[:len(good)-1], ErrTruncated, ""},
		{"trailing bytes", append(append([]byte(nil), good...), 0), ErrCorrupt, "after its recorded end"},
		{"flipped bit", mutate(func(b []byte) []byte { b[200] ^= 1; return b }), ErrCorrupt, "checksum"},
		{"flipped checksum", mutate(func(b []byte) []byte { b[len(b)-1] ^= 0x80; return b }), ErrCorrupt, "checksum"},
		{"absurd length", mutate(func(b []byte) []byte { binary.LittleEndian.PutUint64(b[16:], 1<<62); return b }), ErrCorrupt, "length"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Decode(tc.b)
			require.ErrorIs(t, err, tc.want)
			assert.Contains(t, err.Error(), tc.text)
		})
	}
}

// A section length that lies is caught even under a valid checksum (a
// file made by hand, not by a disk error).
func TestDecodeRefusesLyingSections(t *testing.T) {
	b, err := Encode(&File{Sections: []Section{{Name: "a", Data: []byte("xyz")}}})
	require.NoError(t, err)
	body := b[:len(b)-sumLen]
	// The data length field sits right after the name.
	off := fixedLen + 2 + 2 + 4 + 4 + 2 + 1
	binary.LittleEndian.PutUint64(body[off:], 1<<40)
	_, err = Decode(reseal(body))
	require.ErrorIs(t, err, ErrCorrupt)
	assert.Contains(t, err.Error(), "runs past the end")

	dup, err := Encode(&File{Sections: []Section{{Name: "a"}, {Name: "a"}}})
	require.NoError(t, err)
	_, err = Decode(dup)
	require.ErrorIs(t, err, ErrCorrupt)
}

// reseal writes a valid length and checksum behind body.
func reseal(body []byte) []byte {
	b := append([]byte(nil), body...)
	binary.LittleEndian.PutUint64(b[16:], uint64(len(b)+sumLen))
	sum := sha256Sum(b)
	return append(b, sum...)
}

func TestCheck(t *testing.T) {
	host := Header{VMMVersion: "1.7.0", CPUVendor: "AuthenticAMD", CPUSignature: 0x00a00f11}
	for _, tc := range []struct {
		name string
		h    Header
		want error
	}{
		{"same", host, nil},
		{"other stepping", Header{VMMVersion: "1.7.0", CPUVendor: "AuthenticAMD", CPUSignature: 0x00a00f12}, nil},
		{"other version", Header{VMMVersion: "1.6.0", CPUVendor: "AuthenticAMD", CPUSignature: 0x00a00f11}, ErrVMMVersion},
		{"other vendor", Header{VMMVersion: "1.7.0", CPUVendor: "GenuineIntel", CPUSignature: 0x00a00f11}, ErrCPU},
		{"other model", Header{VMMVersion: "1.7.0", CPUVendor: "AuthenticAMD", CPUSignature: 0x00a00f21}, ErrCPU},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := Check(tc.h, host)
			if tc.want == nil {
				assert.NoError(t, err)
			} else {
				assert.ErrorIs(t, err, tc.want)
			}
		})
	}
}

func TestMemoryFullDiffMerge(t *testing.T) {
	dir := t.TempDir()
	r0 := make([]byte, 16*PageSize)
	r1 := make([]byte, 4*PageSize)
	r0[3*PageSize] = 1
	r1[PageSize+7] = 2
	full := filepath.Join(dir, "full")
	n, err := WriteMemory(full, [][]byte{r0, r1}, nil)
	require.NoError(t, err)
	assert.EqualValues(t, 2*PageSize, n, "zero pages are holes")
	st, err := os.Stat(full)
	require.NoError(t, err)
	assert.EqualValues(t, 20*PageSize, st.Size())

	// The guest changes page 5 of region 0 and page 0 of region 1.
	r0[5*PageSize] = 9
	r1[0] = 8
	diff := filepath.Join(dir, "diff")
	n, err = WriteMemory(diff, [][]byte{r0, r1}, [][]uint64{{1 << 5}, {1 << 0}})
	require.NoError(t, err)
	assert.EqualValues(t, 2*PageSize, n)
	require.NoError(t, MergeDiff(full, diff))
	got, err := os.ReadFile(full)
	require.NoError(t, err)
	assert.Equal(t, append(append([]byte(nil), r0...), r1...), got, "full plus diff is the later memory")

	_, err = OpenMemory(full, 21*PageSize)
	assert.ErrorIs(t, err, ErrMemoryFile)
	f, err := OpenMemory(full, 20*PageSize)
	require.NoError(t, err)
	require.NoError(t, f.Close())
	_, err = WriteMemory(diff, [][]byte{r0}, [][]uint64{{1}, {1}})
	assert.Error(t, err)
}

// ReadFile refuses from the header alone, and says the same as Decode.
func TestReadFileRefuses(t *testing.T) {
	dir := t.TempDir()
	good, err := Encode(sample())
	require.NoError(t, err)
	for _, tc := range []struct {
		name string
		b    []byte
		want error
	}{
		{"memory file", make([]byte, 1<<20), ErrNotSnapshot},
		{"short", []byte("VMM"), ErrTruncated},
		{"truncated", good[:len(good)-5], ErrTruncated},
		{"trailing", append(append([]byte(nil), good...), 1, 2), ErrCorrupt},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(dir, tc.name)
			require.NoError(t, os.WriteFile(p, tc.b, 0o600))
			_, err := ReadFile(p)
			assert.ErrorIs(t, err, tc.want)
		})
	}
}
