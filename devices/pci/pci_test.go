package pci

import (
	"encoding/binary"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// testDevice is a function with a 64-bit BAR 0 of 16 KiB, a 32-bit BAR 2
// of 4 KiB and a vendor capability, that records its BAR accesses.
type testDevice struct {
	cfg    *Config
	writes []string
	mapped map[int]uint64
}

func newTestDevice(t testing.TB) *testDevice {
	d := &testDevice{cfg: NewConfig(ID{Vendor: 0x1af4, Device: 0x1041, Class: 0x020000}, 1), mapped: map[int]uint64{}}
	require.NoError(t, d.cfg.SetBAR(0, BAR{Kind: BARMem64, Size: 0x4000}, 0xc000_0000))
	require.NoError(t, d.cfg.SetBAR(2, BAR{Kind: BARMem32, Size: 0x1000}, 0xc001_0000))
	_, err := d.cfg.AddCapability(CapVendor, []byte{4, 0xaa, 0xbb}, nil)
	require.NoError(t, err)
	return d
}

func (d *testDevice) Config() *Config { return d.cfg }
func (d *testDevice) ReadBAR(bar int, off uint64, data []byte) {
	for i := range data {
		data[i] = byte(bar*16 + int(off) + i)
	}
}
func (d *testDevice) WriteBAR(bar int, off uint64, data []byte) {
	d.writes = append(d.writes, string(rune('0'+bar)))
}
func (d *testDevice) BARMapped(bar int, addr uint64, on bool) {
	if on {
		d.mapped[bar] = addr
	} else {
		delete(d.mapped, bar)
	}
}

func rd32(c *Config, off uint16) uint32 {
	var b [4]byte
	c.Read(off, b[:])
	return binary.LittleEndian.Uint32(b[:])
}

func wr32(c *Config, off uint16, v uint32) bool {
	var b [4]byte
	binary.LittleEndian.PutUint32(b[:], v)
	return c.Write(off, b[:])
}

func TestBARSizing(t *testing.T) {
	tests := []struct {
		name      string
		bar       BAR
		idx       int
		addr      uint64
		wantLow   uint32 // after writing all ones
		wantHigh  uint32
		checkHigh bool
	}{
		{"mem32 4K", BAR{Kind: BARMem32, Size: 0x1000}, 0, 0xc000_0000, 0xffff_f000, 0, false},
		{"mem32 prefetch 1M", BAR{Kind: BARMem32, Size: 1 << 20, Prefetchable: true}, 1, 0xc010_0000, 0xfff0_0008, 0, false},
		{"mem64 16K", BAR{Kind: BARMem64, Size: 0x4000}, 2, 0xc000_4000, 0xffff_c004, 0xffff_ffff, true},
		{"mem64 8G", BAR{Kind: BARMem64, Size: 8 << 30}, 4, 8 << 30, 0x0000_0004, 0xffff_fffe, true},
		{"io 32", BAR{Kind: BARIO, Size: 32}, 5, 0x1000, 0xffff_ffe1, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := NewConfig(ID{Vendor: 1}, 0)
			require.NoError(t, c.SetBAR(tt.idx, tt.bar, tt.addr))
			off := uint16(RegBAR0 + 4*tt.idx)
			orig := rd32(c, off)
			wr32(c, off, 0xffff_ffff)
			assert.Equal(t, tt.wantLow, rd32(c, off), "low dword size mask")
			if tt.checkHigh {
				wr32(c, off+4, 0xffff_ffff)
				assert.Equal(t, tt.wantHigh, rd32(c, off+4), "high dword size mask")
				wr32(c, off+4, uint32(tt.addr>>32))
			}
			wr32(c, off, orig)
			addr, _, _ := c.BARAddr(tt.idx)
			assert.Equal(t, tt.addr, addr, "address restored")
		})
	}
}

func TestSetBARRejects(t *testing.T) {
	c := NewConfig(ID{}, 0)
	assert.ErrorIs(t, c.SetBAR(5, BAR{Kind: BARMem64, Size: 0x1000}, 0), ErrBAR, "64-bit BAR 5 has no upper half")
	assert.ErrorIs(t, c.SetBAR(0, BAR{Kind: BARMem32, Size: 0x1800}, 0), ErrBAR, "not a power of two")
	assert.ErrorIs(t, c.SetBAR(0, BAR{Kind: BARMem32, Size: 0x1000}, 0x800), ErrBAR, "misaligned")
	require.NoError(t, c.SetBAR(0, BAR{Kind: BARMem32, Size: 0x1000}, 0x1000))
	assert.ErrorIs(t, c.SetBAR(0, BAR{Kind: BARMem32, Size: 0x1000}, 0x2000), ErrBAR, "taken")
}

func TestHeaderReadOnly(t *testing.T) {
	c := NewConfig(ID{Vendor: 0x1af4, Device: 0x1042, Revision: 1, Class: 0x018000, SubsysVendor: 0x1af4, Subsys: 0x42}, 1)
	before := c.Bytes()
	for off := uint16(0); off < LegacyConfigSize; off += 4 {
		if off == RegCommand || off == RegInterruptLine {
			continue
		}
		wr32(c, off, 0xffff_ffff)
	}
	after := c.Bytes()
	assert.Equal(t, before[:RegCommand], after[:RegCommand], "IDs are read-only")
	assert.Equal(t, before[RegStatus:RegInterruptLine], after[RegStatus:RegInterruptLine], "no BARs, no ROM, status read-only")
	assert.Equal(t, uint32(0), rd32(c, RegROMBAR), "no expansion ROM: the ROM BAR reads 0 after all ones")
	assert.Equal(t, uint32(0x0180_0001), rd32(c, RegRevisionID), "class 01 80 00, revision 1")

	wr32(c, RegCommand, 0xffff_ffff)
	assert.Equal(t, uint32(commandWritableBits), rd32(c, RegCommand), "only defined command bits stick; status stays 0")
}

func TestOddAccesses(t *testing.T) {
	c := NewConfig(ID{Vendor: 0x1234, Device: 0x5678}, 0)
	for _, tt := range []struct {
		off uint16
		n   int
	}{{3, 2}, {2, 4}, {0, 3}, {0, 8}, {ConfigSize - 2, 4}, {ConfigSize, 1}, {0xffff, 1}} {
		data := make([]byte, tt.n)
		c.Read(tt.off, data)
		for _, b := range data {
			assert.Equal(t, byte(0xff), b, "read %d bytes at %#x", tt.n, tt.off)
		}
		assert.False(t, c.Write(tt.off, data))
	}
	assert.Equal(t, uint32(0x56781234), rd32(c, 0), "odd writes changed nothing")
	var w [2]byte
	c.Read(2, w[:])
	assert.Equal(t, []byte{0x78, 0x56}, w[:])
	assert.Equal(t, uint32(0), rd32(c, 0x800), "extended space past the header reads 0")
}

func TestCapabilityList(t *testing.T) {
	c := NewConfig(ID{}, 0)
	a, err := c.AddCapability(CapVendor, []byte{5, 1, 2}, nil)
	require.NoError(t, err)
	b, err := c.AddCapability(CapVendor, []byte{6, 3, 4, 5}, nil)
	require.NoError(t, err)
	x, err := NewMSIX(make([]MSIRoute, 3))
	require.NoError(t, err)
	m, err := x.Install(c, 0, 0x2000, 0x3000)
	require.NoError(t, err)

	raw := c.Bytes()
	assert.NotZero(t, binary.LittleEndian.Uint16(raw[RegStatus:])&StatusCapabilites)
	var got []uint16
	for p, n := uint16(raw[RegCapPointer]), 0; p != 0 && n < 48; p, n = uint16(raw[p+1]), n+1 {
		assert.Zero(t, p%4, "capability at %#x is dword aligned", p)
		assert.GreaterOrEqual(t, p, uint16(0x40))
		got = append(got, p)
	}
	assert.Equal(t, []uint16{a, b, m}, got)
	assert.Equal(t, CapMSIX, raw[m])
	assert.Equal(t, uint16(2), binary.LittleEndian.Uint16(raw[m+2:]), "table size N-1")
	assert.Equal(t, uint32(0x2000), binary.LittleEndian.Uint32(raw[m+4:]))
	assert.Equal(t, uint32(0x3000), binary.LittleEndian.Uint32(raw[m+8:]))

	_, err = c.AddCapability(CapVendor, make([]byte, 200), nil)
	assert.ErrorIs(t, err, ErrCapability, "past 256 bytes")
}

func TestBusDecodesOnlyWhenEnabled(t *testing.T) {
	b := NewBus()
	d := newTestDevice(t)
	require.NoError(t, b.Add(3, d))
	assert.ErrorIs(t, b.Add(3, d), ErrSlot)
	assert.ErrorIs(t, b.Add(0, d), ErrSlot)
	w := b.MemoryWindow(0xc000_0000)
	buf := make([]byte, 4)

	w.Read(0x10, buf)
	assert.Equal(t, []byte{0xff, 0xff, 0xff, 0xff}, buf, "memory decoding is off after reset")
	assert.Empty(t, d.mapped)

	cmd := []byte{byte(CommandMemory), 0}
	b.ConfigWrite(0, 3, 0, RegCommand, cmd)
	assert.Equal(t, map[int]uint64{0: 0xc000_0000, 2: 0xc001_0000}, d.mapped)
	w.Read(0x10, buf)
	assert.Equal(t, []byte{0x10, 0x11, 0x12, 0x13}, buf)
	w.Read(0x10000, buf)
	assert.Equal(t, []byte{0x20, 0x21, 0x22, 0x23}, buf)
	w.Write(0x10000, buf)
	assert.Equal(t, []string{"2"}, d.writes)

	// The guest moves BAR 2.
	var v [4]byte
	binary.LittleEndian.PutUint32(v[:], 0xc002_0000)
	b.ConfigWrite(0, 3, 0, RegBAR0+8, v[:])
	assert.Equal(t, uint64(0xc002_0000), d.mapped[2])
	w.Read(0x10000, buf)
	assert.Equal(t, []byte{0xff, 0xff, 0xff, 0xff}, buf, "old place")
	w.Read(0x20000, buf)
	assert.Equal(t, []byte{0x20, 0x21, 0x22, 0x23}, buf, "new place")

	b.ConfigWrite(0, 3, 0, RegCommand, []byte{0, 0})
	assert.Empty(t, d.mapped)
}

func TestMechanism1(t *testing.T) {
	b := NewBus()
	require.NoError(t, b.Add(1, newTestDevice(t)))
	m := NewMechanism1(b)
	addr, data := m.Address(), m.Data()
	put := func(v uint32) { var x [4]byte; binary.LittleEndian.PutUint32(x[:], v); addr.Write(0, x[:]) }
	get := func() uint32 { var x [4]byte; addr.Read(0, x[:]); return binary.LittleEndian.Uint32(x[:]) }

	// Linux's pci_check_type1: outb(0x01, 0xcfb) goes elsewhere, then
	// CONFIG_ADDRESS must read back 0x80000000.
	put(0x8000_0000)
	assert.Equal(t, uint32(0x8000_0000), get())
	var d4 [4]byte
	data.Read(0, d4[:])
	assert.Equal(t, HostBridgeID.Vendor, binary.LittleEndian.Uint16(d4[:]), "00:00.0 is the host bridge")
	put(0x8000_0000 | 0x08)
	data.Read(0, d4[:])
	assert.Equal(t, uint32(0x06000000), binary.LittleEndian.Uint32(d4[:]), "host bridge class")

	put(0x8000_0800 | 0x0c) // 00:01.0, dword 0xc
	var b1 [1]byte
	data.Read(2, b1[:])
	assert.Equal(t, byte(0), b1[0], "header type byte via CONFIG_DATA+2")
	put(0x8000_0800)
	var w2 [2]byte
	data.Read(2, w2[:])
	assert.Equal(t, uint16(0x1041), binary.LittleEndian.Uint16(w2[:]), "device ID via 0xcfe")

	for _, a := range []uint32{0x8000_1000, 0x8001_0000, 0x8000_0900, 0x0000_0800} {
		put(a)
		data.Read(0, d4[:])
		assert.Equal(t, uint32(0xffff_ffff), binary.LittleEndian.Uint32(d4[:]), "CONFIG_ADDRESS %#x", a)
	}
	var one [1]byte
	addr.Read(0, one[:])
	assert.Equal(t, byte(0xff), one[0], "byte reads of 0xcf8 are not CONFIG_ADDRESS")
	put(0xffff_ffff)
	assert.Equal(t, uint32(0x80ff_fffc), get(), "reserved and low bits read 0")
}

func TestECAM(t *testing.T) {
	b := NewBus()
	d := newTestDevice(t)
	require.NoError(t, b.Add(2, d))
	e := b.ECAM()
	var v [4]byte
	e.Read(2<<15, v[:])
	assert.Equal(t, uint32(0x1041_1af4), binary.LittleEndian.Uint32(v[:]))
	e.Read(2<<15|1<<12, v[:])
	assert.Equal(t, uint32(0xffff_ffff), binary.LittleEndian.Uint32(v[:]), "function 1 is absent")
	e.Read(ECAMSize, v[:])
	assert.Equal(t, uint32(0xffff_ffff), binary.LittleEndian.Uint32(v[:]), "past bus 0")
	e.Read(2<<15|0x104, v[:])
	assert.Equal(t, uint32(0), binary.LittleEndian.Uint32(v[:]), "extended config space")
	binary.LittleEndian.PutUint32(v[:], uint32(CommandMemory))
	e.Write(2<<15|RegCommand, v[:])
	assert.Len(t, d.mapped, 2)
}
