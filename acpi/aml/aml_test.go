package aml

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestPkgLength(t *testing.T) {
	tests := []struct {
		length int
		want   []byte
	}{
		{0, []byte{0x00}},
		{1, []byte{0x01}},
		{63, []byte{0x3f}},
		{64, []byte{0x40, 0x04}},
		{0x123, []byte{0x43, 0x12}},
		{4095, []byte{0x4f, 0xff}},
		{4096, []byte{0x80, 0x00, 0x01}},
		{0xfffff, []byte{0x8f, 0xff, 0xff}},
		{0x100000, []byte{0xc0, 0x00, 0x00, 0x01}},
		{MaxPkgLength, []byte{0xcf, 0xff, 0xff, 0xff}},
	}
	for _, tt := range tests {
		got, err := PkgLength(tt.length)
		require.NoError(t, err, "length %d", tt.length)
		assert.Equal(t, tt.want, got, "length %d", tt.length)
	}
	for _, bad := range []int{-1, MaxPkgLength + 1} {
		_, err := PkgLength(bad)
		assert.ErrorIs(t, err, ErrTooLong, "length %d", bad)
	}
}

// TestPackagePrefix checks that a package's PkgLength counts its own
// bytes, across the boundaries where the encoding grows.
func TestPackagePrefix(t *testing.T) {
	tests := []struct {
		body       int
		prefixLen  int
		wantLength int
	}{
		{0, 1, 1},
		{62, 1, 63},
		{63, 2, 65}, // 64 does not fit one byte, and 2 bytes make it 65
		{4093, 2, 4095},
		{4094, 3, 4097},
		{0xfffff - 3, 3, 0xfffff},
		{0xfffff - 2, 4, 0xfffff + 2},
	}
	for _, tt := range tests {
		out, err := appendPackage(nil, make([]byte, tt.body))
		require.NoError(t, err, "body %d", tt.body)
		assert.Len(t, out, tt.body+tt.prefixLen, "body %d", tt.body)
		assert.Equal(t, tt.wantLength, decodePkgLength(t, out), "body %d", tt.body)
	}
}

// decodePkgLength reads a PkgLength the way an AML interpreter does.
func decodePkgLength(t *testing.T, b []byte) int {
	t.Helper()
	extra := int(b[0] >> 6)
	if extra == 0 {
		return int(b[0] & 0x3f)
	}
	require.Zero(t, b[0]&0x30, "bits 4-5 of a multi-byte PkgLength lead byte must be zero")
	n := int(b[0] & 0x0f)
	for i := 1; i <= extra; i++ {
		n |= int(b[i]) << (4 + 8*(i-1))
	}
	return n
}

func TestNameString(t *testing.T) {
	tests := []struct {
		path string
		want []byte
	}{
		{"_HID", []byte("_HID")},
		{"_S5", []byte("_S5_")},
		{"A", []byte("A___")},
		{`\`, []byte{'\\', 0x00}},
		{`\_SB_`, []byte(`\_SB_`)},
		{`\_SB`, []byte(`\_SB_`)},
		{"^FOO", []byte("^FOO_")},
		{"^^FOO", []byte("^^FOO_")},
		{"_SB.VR00", append([]byte{0x2e}, "_SB_VR00"...)},
		{`\_SB.PCI0.VR00`, append([]byte{'\\', 0x2f, 3}, "_SB_PCI0VR00"...)},
		{"A1B2", []byte("A1B2")},
	}
	for _, tt := range tests {
		got, err := NameString(tt.path)
		require.NoError(t, err, "path %q", tt.path)
		assert.Equal(t, tt.want, got, "path %q", tt.path)
	}
}

func TestNameStringInvalid(t *testing.T) {
	for _, path := range []string{
		"", "TOOLONG", "1ABC", "abc", "A-B", "_SB..X", "_SB.", ".X", `\^X`, "^\\X", "A B", "ÄBC",
	} {
		_, err := NameString(path)
		assert.ErrorIs(t, err, ErrName, "path %q", path)
	}
}

func TestInteger(t *testing.T) {
	tests := []struct {
		v    uint64
		want []byte
	}{
		{0, []byte{zeroOp}},
		{1, []byte{oneOp}},
		{2, []byte{bytePrefix, 2}},
		{0xff, []byte{bytePrefix, 0xff}},
		{0x100, []byte{wordPrefix, 0x00, 0x01}},
		{0xffff, []byte{wordPrefix, 0xff, 0xff}},
		{0x10000, []byte{dwordPrefix, 0x00, 0x00, 0x01, 0x00}},
		{0xffff_ffff, []byte{dwordPrefix, 0xff, 0xff, 0xff, 0xff}},
		{0x1_0000_0000, []byte{qwordPrefix, 0, 0, 0, 0, 1, 0, 0, 0}},
		{^uint64(0), []byte{qwordPrefix, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}},
	}
	for _, tt := range tests {
		got, err := Integer(tt.v).AppendAML(nil)
		require.NoError(t, err)
		assert.Equal(t, tt.want, got, "value %#x", tt.v)
	}
}

func TestString(t *testing.T) {
	got, err := String("LNRO0005").AppendAML(nil)
	require.NoError(t, err)
	assert.Equal(t, append(append([]byte{stringPrefix}, "LNRO0005"...), 0), got)

	for _, bad := range []string{"a\x00b", "caf\xc3\xa9"} {
		_, err := String(bad).AppendAML(nil)
		assert.ErrorIs(t, err, ErrValue, "string %q", bad)
	}
}

func TestEISAID(t *testing.T) {
	tests := map[string]uint32{
		"PNP0501": 0x0105d041, // the value iasl gives EisaId("PNP0501")
		"PNP0A03": 0x030ad041,
		"PNP0C0C": 0x0c0cd041,
	}
	for id, want := range tests {
		got, err := EISAID(id).Value()
		require.NoError(t, err, id)
		assert.Equal(t, want, got, id)
	}
	for _, bad := range []string{"", "PNP050", "PNP05011", "pnp0501", "PNP05G1", "PNP05a1", "P1P0501"} {
		_, err := EISAID(bad).Value()
		assert.ErrorIs(t, err, ErrValue, "id %q", bad)
	}
}

func TestPackage(t *testing.T) {
	got, err := Package{Integer(5), Integer(0), Integer(0x1234)}.AppendAML(nil)
	require.NoError(t, err)
	assert.Equal(t, []byte{packageOp, 8, 3, bytePrefix, 5, zeroOp, wordPrefix, 0x34, 0x12}, got)

	_, err = make(Package, 256).AppendAML(nil)
	assert.ErrorIs(t, err, ErrTooLong)
}

func TestBuffer(t *testing.T) {
	got, err := Buffer{0xaa, 0xbb}.AppendAML(nil)
	require.NoError(t, err)
	assert.Equal(t, []byte{bufferOp, 5, bytePrefix, 2, 0xaa, 0xbb}, got)

	got, err = Buffer{}.AppendAML(nil)
	require.NoError(t, err)
	assert.Equal(t, []byte{bufferOp, 2, zeroOp}, got)
}

func TestScopeDeviceName(t *testing.T) {
	got, err := Encode(Scope{Name: `\_SB_`, Terms: []Term{
		Device{Name: "VR00", Terms: []Term{
			Name{Name: "_UID", Value: Integer(1)},
		}},
	}})
	require.NoError(t, err)
	want := []byte{
		scopeOp, 19, '\\', '_', 'S', 'B', '_',
		extOpPrefix, deviceOp, 11, 'V', 'R', '0', '0',
		nameOp, '_', 'U', 'I', 'D', oneOp,
	}
	assert.Equal(t, want, got)
}

func TestEncodeErrors(t *testing.T) {
	tests := map[string]Term{
		"bad scope name":   Scope{Name: "bad"},
		"bad device name":  Scope{Name: `\_SB_`, Terms: []Term{Device{Name: "toolong"}}},
		"bad nested value": Device{Name: "DEV0", Terms: []Term{Name{Name: "_HID", Value: EISAID("x")}}},
		"nil value":        Name{Name: "_UID"},
		"nil term":         Scope{Name: `\`, Terms: []Term{nil}},
		"nil resource":     ResourceTemplate{nil},
		"no interrupts":    ResourceTemplate{Interrupt{}},
		"bad IO range":     ResourceTemplate{IOPort{Min: 2, Max: 1}},
		"memory past 4GiB": ResourceTemplate{Memory32Fixed{Base: 0xffff_f000, Length: 0x2000}},
	}
	for name, term := range tests {
		_, err := Encode(term)
		assert.Error(t, err, name)
	}
}

func TestResourceTemplate(t *testing.T) {
	got, err := ResourceTemplate{
		IOPort{Decode16: true, Min: 0x3f8, Max: 0x3f8, Alignment: 1, Length: 8},
		Memory32Fixed{Writable: true, Base: 0xd000_0000, Length: 0x1000},
		Interrupt{GSIs: []uint32{5}},
		Interrupt{Producer: true, LevelTriggered: true, ActiveLow: true, Shared: true, WakeCapable: true, GSIs: []uint32{0x20, 0x21}},
	}.AppendAML(nil)
	require.NoError(t, err)

	data := []byte{
		0x47, 0x01, 0xf8, 0x03, 0xf8, 0x03, 0x01, 0x08, // IO (Decode16, 0x3f8, 0x3f8, 1, 8)
		0x86, 0x09, 0x00, 0x01, 0x00, 0x00, 0x00, 0xd0, 0x00, 0x10, 0x00, 0x00, // Memory32Fixed (ReadWrite, ...)
		0x89, 0x06, 0x00, 0x03, 0x01, 0x05, 0x00, 0x00, 0x00, // Interrupt (Consumer, Edge, ActiveHigh, Exclusive) {5}
		0x89, 0x0a, 0x00, 0x1c, 0x02, 0x20, 0, 0, 0, 0x21, 0, 0, 0, // Producer, Level, ActiveLow, Shared, Wake
		0x79, // End Tag, then its checksum
	}
	var sum byte
	for _, c := range data {
		sum += c
	}
	data = append(data, -sum)
	want := append([]byte{bufferOp, byte(3 + len(data)), bytePrefix, byte(len(data))}, data...)
	assert.Equal(t, want, got)

	var total byte
	for _, c := range got[4:] {
		total += c
	}
	assert.Zero(t, total, "resource template bytes must sum to zero")
}
