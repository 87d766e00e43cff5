package pci

import (
	"encoding/binary"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

type fakeRoute struct {
	msgs  []MSIMessage
	fired int
}

func (r *fakeRoute) SetMessage(m MSIMessage) error { r.msgs = append(r.msgs, m); return nil }
func (r *fakeRoute) Fire() error                   { r.fired++; return nil }

func newTestMSIX(t testing.TB, n int) (*MSIX, *Config, []*fakeRoute, uint16) {
	routes := make([]*fakeRoute, n)
	ifs := make([]MSIRoute, n)
	for i := range routes {
		routes[i] = &fakeRoute{}
		ifs[i] = routes[i]
	}
	x, err := NewMSIX(ifs)
	require.NoError(t, err)
	c := NewConfig(ID{}, 1)
	off, err := x.Install(c, 0, 0, 0x800)
	require.NoError(t, err)
	return x, c, routes, off
}

func writeEntry(x *MSIX, v int, addr uint64, data uint32, masked bool) {
	var e [16]byte
	binary.LittleEndian.PutUint64(e[0:], addr)
	binary.LittleEndian.PutUint32(e[8:], data)
	if masked {
		e[12] = 1
	}
	base := uint64(v * MSIXEntrySize)
	x.WriteBAR(base, e[0:4])
	x.WriteBAR(base+4, e[4:8])
	x.WriteBAR(base+8, e[8:12])
	x.WriteBAR(base+12, e[12:16])
}

func setControl(c *Config, off uint16, enable, mask bool) {
	var v uint16
	if enable {
		v |= msixControlEnable
	}
	if mask {
		v |= msixControlMask
	}
	var b [2]byte
	binary.LittleEndian.PutUint16(b[:], v)
	c.Write(off+2, b[:])
}

func pba(x *MSIX) uint64 {
	var b [8]byte
	x.ReadBAR(0x800, b[:])
	return binary.LittleEndian.Uint64(b[:])
}

func TestMSIXMaskingAndPending(t *testing.T) {
	x, c, routes, off := newTestMSIX(t, 4)

	// Reset state: every vector masked, MSI-X off.
	var ctl [4]byte
	x.ReadBAR(12, ctl[:])
	assert.Equal(t, uint32(1), binary.LittleEndian.Uint32(ctl[:]), "vector 0 masked after reset")
	require.NoError(t, x.Trigger(1))
	assert.Equal(t, uint64(0b10), pba(x), "disabled: pending")
	assert.Zero(t, routes[1].fired)

	writeEntry(x, 1, 0xfee0_1000, 0x4041, false)
	setControl(c, off, true, true)
	assert.True(t, x.Enabled())
	assert.Zero(t, routes[1].fired, "function mask holds it")
	setControl(c, off, true, false)
	assert.Equal(t, 1, routes[1].fired, "fires on function unmask")
	assert.Equal(t, []MSIMessage{{0xfee0_1000, 0x4041}}, routes[1].msgs)
	assert.Zero(t, pba(x))

	require.NoError(t, x.Trigger(1))
	assert.Equal(t, 2, routes[1].fired)
	assert.Len(t, routes[1].msgs, 1, "same message: route not reprogrammed")

	// Per-vector mask: pending, then delivered on unmask.
	writeEntry(x, 1, 0xfee0_1000, 0x4041, true)
	require.NoError(t, x.Trigger(1))
	assert.Equal(t, uint64(0b10), pba(x))
	assert.Equal(t, 2, routes[1].fired)
	writeEntry(x, 1, 0xfee0_2000, 0x4042, false)
	assert.Equal(t, 3, routes[1].fired)
	assert.Equal(t, MSIMessage{0xfee0_2000, 0x4042}, routes[1].msgs[1], "new message routed before it fires")
	assert.Zero(t, pba(x))

	// Vectors out of range and garbage addresses do nothing.
	require.NoError(t, x.Trigger(4))
	require.NoError(t, x.Trigger(0xffff))
	writeEntry(x, 2, 0x1234_5000, 1, false)
	require.NoError(t, x.Trigger(2))
	assert.Zero(t, routes[2].fired)

	x.Reset()
	assert.False(t, x.Enabled())
	x.ReadBAR(16+12, ctl[:])
	assert.Equal(t, uint32(1), binary.LittleEndian.Uint32(ctl[:]))
}

func TestMSIXTableAccess(t *testing.T) {
	x, _, _, _ := newTestMSIX(t, 2)
	var q [8]byte
	binary.LittleEndian.PutUint64(q[:], 0x0000_0000_fee0_0000)
	x.WriteBAR(0, q[:])
	x.ReadBAR(0, q[:])
	assert.Equal(t, uint64(0xfee0_0000), binary.LittleEndian.Uint64(q[:]), "qword access")

	for _, tt := range []struct {
		off uint64
		n   int
	}{{1, 4}, {2, 2}, {0, 1}, {4, 8}, {32, 4}, {0x800 + 8, 4}, {1 << 40, 4}} {
		b := make([]byte, tt.n)
		x.ReadBAR(tt.off, b)
		for _, c := range b {
			assert.Equal(t, byte(0xff), c, "read %d at %#x", tt.n, tt.off)
		}
		x.WriteBAR(tt.off, make([]byte, tt.n))
	}
	var d [4]byte
	binary.LittleEndian.PutUint32(d[:], 0xffff_fffe)
	x.WriteBAR(12, d[:])
	x.ReadBAR(12, d[:])
	assert.Equal(t, uint32(0), binary.LittleEndian.Uint32(d[:]), "vector control keeps only the mask bit")
	x.WriteBAR(0x800, []byte{0xff, 0xff, 0xff, 0xff})
	assert.Zero(t, pba(x), "PBA is read-only")
}
