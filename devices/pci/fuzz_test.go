package pci

import (
	"encoding/binary"
	"testing"
)

// FuzzConfigSpace drives a bus with a device and MSI-X through any
// sequence of configuration and BAR accesses: nothing may panic, and the
// read-only identity must survive.
func FuzzConfigSpace(f *testing.F) {
	f.Add([]byte{0, 0x10, 0, 4, 0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{0, 0x04, 0, 2, 0x02, 0x00, 1, 0, 0, 4, 0, 0, 0, 0})
	f.Add([]byte{1, 0x40, 0x10, 4, 0xff, 0xff, 0xff, 0xff, 3, 0, 8, 0, 8})
	f.Fuzz(func(t *testing.T, ops []byte) {
		b := NewBus()
		d := newTestDevice(t)
		routes := []MSIRoute{&fakeRoute{}, &fakeRoute{}}
		x, err := NewMSIX(routes)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := x.Install(d.cfg, 2, 0, 0x800); err != nil {
			t.Fatal(err)
		}
		if err := b.Add(1, d); err != nil {
			t.Fatal(err)
		}
		e := b.ECAM()
		w := b.MemoryWindow(0xc000_0000)
		for len(ops) >= 4 {
			kind, off, n := ops[0]%5, uint64(binary.LittleEndian.Uint16(ops[1:3])), int(ops[3]%9)
			ops = ops[4:]
			data := make([]byte, n)
			copy(data, ops)
			if len(ops) >= n {
				ops = ops[n:]
			}
			switch kind {
			case 0:
				e.Write(1<<15|off, data)
			case 1:
				e.Read(1<<15|off, data)
			case 2:
				w.Write(off<<4, data)
			case 3:
				x.WriteBAR(off, data)
			case 4:
				_ = x.Trigger(uint16(off))
			}
		}
		var v [4]byte
		e.Read(1<<15, v[:])
		if binary.LittleEndian.Uint32(v[:]) != 0x1041_1af4 {
			t.Fatalf("vendor/device changed to %#x", v)
		}
	})
}

// FuzzMSIXTable writes and reads the table and PBA with any offsets and
// widths.
func FuzzMSIXTable(f *testing.F) {
	f.Add(uint64(0), []byte{0, 0, 0xe0, 0xfe}, uint16(0))
	f.Add(uint64(12), []byte{0, 0, 0, 0}, uint16(1))
	f.Add(uint64(0x800), []byte{1, 2, 3, 4, 5, 6, 7, 8}, uint16(0xffff))
	f.Fuzz(func(t *testing.T, off uint64, data []byte, vector uint16) {
		x, c, _, capOff := newTestMSIX(t, 3)
		setControl(c, capOff, true, false)
		x.WriteBAR(off, data)
		_ = x.Trigger(vector)
		x.ReadBAR(off, data)
		_ = pba(x)
	})
}
