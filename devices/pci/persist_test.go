package pci

import (
	"encoding/binary"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A function the guest programmed (BAR moved, decoding on, a writable
// capability byte) saves and loads into a freshly built one: same bytes,
// and the bus decodes the BARs where the guest left them.
func TestConfigAndBusRestore(t *testing.T) {
	b := NewBus()
	d := newTestDevice(t)
	require.NoError(t, b.Add(3, d))
	wr32(d.cfg, RegBAR0+8, 0xc004_0000)
	b.ConfigWrite(0, 3, 0, RegCommand, []byte{byte(CommandMemory | CommandBusMaster), 0})
	b.ConfigWrite(0, 3, 0, RegInterruptLine, []byte{11})
	b.ConfigWrite(0, 0, 0, RegCommand, []byte{byte(CommandMemory), 0})
	cs, bs := d.cfg.Save(), b.Save()

	b2 := NewBus()
	d2 := newTestDevice(t)
	require.NoError(t, b2.Add(3, d2))
	assert.Empty(t, d2.mapped)
	require.NoError(t, d2.cfg.Restore(cs))
	require.NoError(t, b2.Restore(bs))
	assert.Equal(t, d.cfg.Bytes(), d2.cfg.Bytes())
	assert.Equal(t, CommandMemory|CommandBusMaster, d2.cfg.Command())
	assert.Equal(t, map[int]uint64{0: 0xc000_0000, 2: 0xc004_0000}, d2.mapped)
	buf := make([]byte, 4)
	b2.MemoryWindow(0xc000_0000).Read(0x40000, buf)
	assert.Equal(t, []byte{0x20, 0x21, 0x22, 0x23}, buf, "BAR 2 decodes at its restored address")
	var hb [2]byte
	b2.ConfigRead(0, 0, 0, RegCommand, hb[:])
	assert.Equal(t, CommandMemory, binary.LittleEndian.Uint16(hb[:]), "the host bridge's command register")
}

// A saved space that is not this function's (another device ID, a
// capability byte the device set differently, a short one) is refused
// and leaves the function as it was.
func TestConfigRestoreRefuses(t *testing.T) {
	d := newTestDevice(t)
	good := d.cfg.Save()
	for name, edit := range map[string]func(b []byte) []byte{
		"device ID":      func(b []byte) []byte { b[RegDeviceID] ^= 1; return b },
		"capability":     func(b []byte) []byte { b[0x42] ^= 0x80; return b },
		"BAR size bits":  func(b []byte) []byte { b[RegBAR0] |= 0x10; return b },
		"short":          func(b []byte) []byte { return b[:LegacyConfigSize] },
		"read-only tail": func(b []byte) []byte { b[ConfigSize-1] = 1; return b },
	} {
		t.Run(name, func(t *testing.T) {
			d2 := newTestDevice(t)
			before := d2.cfg.Bytes()
			s := ConfigState{Bytes: edit(append([]byte(nil), good.Bytes...))}
			assert.ErrorIs(t, d2.cfg.Restore(s), ErrState)
			assert.Equal(t, before, d2.cfg.Bytes())
		})
	}
}

// MSI-X: the table, a pending bit and the enable state come back; the
// restored function re-programs its route at the next interrupt, and a
// pending vector unmasked after the restore is delivered.
func TestMSIXRestore(t *testing.T) {
	x, c, _, off := newTestMSIX(t, 3)
	writeEntry(x, 0, MSIAddrBase, 0x41, false)
	writeEntry(x, 1, MSIAddrBase|0x1000, 0x42, true)
	setControl(c, off, true, false)
	require.NoError(t, x.Trigger(1)) // masked: pending
	cs, xs := c.Save(), x.Save()

	x2, c2, routes, _ := newTestMSIX(t, 3)
	require.NoError(t, c2.Restore(cs))
	require.NoError(t, x2.Restore(xs))
	assert.True(t, x2.Enabled())
	require.NoError(t, x2.Trigger(0))
	assert.Equal(t, []MSIMessage{{Addr: MSIAddrBase, Data: 0x41}}, routes[0].msgs)
	assert.Equal(t, 1, routes[0].fired)
	assert.Zero(t, routes[1].fired, "vector 1 is still masked")
	writeEntry(x2, 1, MSIAddrBase|0x1000, 0x42, false)
	assert.Equal(t, 1, routes[1].fired, "the pending vector fires once unmasked")
	assert.Equal(t, []MSIMessage{{Addr: MSIAddrBase | 0x1000, Data: 0x42}}, routes[1].msgs)

	x3, _, _, _ := newTestMSIX(t, 3)
	bad := x.Save()
	bad.Pending[0] |= 1 << 5
	assert.ErrorIs(t, x3.Restore(bad), ErrState, "a pending bit past the table")
	bad = x.Save()
	bad.Table = bad.Table[:16]
	assert.ErrorIs(t, x3.Restore(bad), ErrState, "a table of another size")
}
