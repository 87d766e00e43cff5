package i8042

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vmm-dev/vmm/devices"
)

// recorder is a devices.PowerHandler that remembers its calls.
type recorder struct{ actions []devices.PowerAction }

func (r *recorder) handle(a devices.PowerAction) { r.actions = append(r.actions, a) }

func inb(c *Controller, off uint64) byte {
	var b [1]byte
	c.Read(off, b[:])
	return b[0]
}

func TestControllerReads(t *testing.T) {
	tests := []struct {
		name string
		off  uint64
		want byte
	}{
		{"status: no data, input buffer empty, system flag, not inhibited", offsetCommand, strSysFlag | strKeylock},
		{"data port", offsetData, 0x00},
		{"port 0x62 is not decoded", 2, 0xff},
		{"port 0x63 is not decoded", 3, 0xff},
		{"past the range", 5, 0xff},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, inb(New(nil), tt.off))
		})
	}
}

func TestResetCommands(t *testing.T) {
	tests := []struct {
		name   string
		writes [][2]byte // offset, value
		resets int
	}{
		{"0xfe pulses the reset line", [][2]byte{{offsetCommand, 0xfe}}, 1},
		{"0xf0 pulses all lines, reset included", [][2]byte{{offsetCommand, 0xf0}}, 1},
		{"0xff pulses nothing", [][2]byte{{offsetCommand, 0xff}}, 0},
		{"0xfd pulses line 1 only", [][2]byte{{offsetCommand, 0xfd}}, 0},
		{"other commands do not reset", [][2]byte{{offsetCommand, 0x20}, {offsetCommand, 0xaa}, {offsetCommand, 0xad}}, 0},
		{"write output port with reset low", [][2]byte{{offsetCommand, 0xd1}, {offsetData, 0xfe}}, 1},
		{"write output port with reset high", [][2]byte{{offsetCommand, 0xd1}, {offsetData, 0xdf}}, 0},
		{"data without 0xd1 is not an output-port write", [][2]byte{{offsetData, 0x00}}, 0},
		{"0xd1 is consumed by one data byte", [][2]byte{{offsetCommand, 0xd1}, {offsetData, 0x03}, {offsetData, 0x00}}, 0},
		{"Linux reboot=k writes 0xfe up to ten times", [][2]byte{{offsetCommand, 0xfe}, {offsetCommand, 0xfe}}, 2},
		{"writes to port 0x61 never reset", [][2]byte{{offsetPortB, 0x00}, {offsetPortB, 0xfe}}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := &recorder{}
			c := New(rec.handle)
			for _, wv := range tt.writes {
				c.Write(uint64(wv[0]), []byte{wv[1]})
			}
			require.Len(t, rec.actions, tt.resets)
			for _, a := range rec.actions {
				assert.Equal(t, devices.Reset, a)
			}
		})
	}
}

func TestNilPowerHandler(t *testing.T) {
	New(nil).Write(offsetCommand, []byte{0xfe})
}

// Linux's reboot path (kb_wait) and i8042 probe (i8042_flush,
// i8042_wait_read/write) poll the status register; each must end.
func TestLinuxPollingLoopsTerminate(t *testing.T) {
	c := New(nil)
	const ibf, obf = 0x02, 0x01

	// kb_wait: wait for IBF clear, at most 0x10000 polls.
	polls := 0
	for ; polls < 0x10000 && inb(c, offsetCommand)&ibf != 0; polls++ {
	}
	assert.Zero(t, polls, "kb_wait returns at once")

	// i8042_flush: read data while OBF is set, at most 16 bytes.
	flushed := 0
	for ; inb(c, offsetCommand)&obf != 0 && flushed < 16; flushed++ {
		inb(c, offsetData)
	}
	assert.Zero(t, flushed, "nothing to flush: Linux sees an empty controller")
}

// pit_calibrate_tsc() waits for port 0x61 bit 5 with no timeout.
func TestPortBReportsTimerOutputHigh(t *testing.T) {
	c := New(nil)
	first, second := inb(c, offsetPortB), inb(c, offsetPortB)
	assert.NotZero(t, first&portBTimerHigh)
	assert.NotEqual(t, first&portBRefresh, second&portBRefresh, "refresh bit toggles")
	assert.Zero(t, first&0xc0, "no SERR/IOCHK NMI reasons")

	c.Write(offsetPortB, []byte{0x03})
	assert.Equal(t, byte(0x03), inb(c, offsetPortB)&0x03)
}

func TestMultiByteAccess(t *testing.T) {
	rec := &recorder{}
	c := New(rec.handle)
	data := make([]byte, 2)
	c.Read(3, data) // 0x63, 0x64
	assert.Equal(t, []byte{0xff, strSysFlag | strKeylock}, data)
	c.Write(3, []byte{0x00, 0xfe})
	assert.Len(t, rec.actions, 1)
}

func FuzzController(f *testing.F) {
	f.Add([]byte{4, 0xd1, 0, 0xfe})
	f.Add([]byte{4, 0xfe, 1, 0x03})
	f.Add([]byte{4, 0x60, 0, 0x01, 0, 0xff, 0, 0xf2, 0x80, 0x80, 4, 0x20, 0, 0x80})
	f.Fuzz(func(t *testing.T, script []byte) {
		rec := &recorder{}
		c := New(rec.handle)
		irq := &counter{}
		c.SetKeyboardInterrupt(irq)
		if len(script)%3 == 0 {
			_ = c.SendCtrlAltDel()
		}
		for len(script) >= 2 {
			off, v := uint64(script[0]%8), script[1]
			script = script[2:]
			if v&0x80 != 0 && off != offsetCommand {
				inb(c, off)
				continue
			}
			c.Write(off, []byte{v})
		}
		for _, a := range rec.actions {
			if a != devices.Reset {
				t.Fatalf("unexpected power action %v", a)
			}
		}
		if len(c.kbd) > kbdQueueMax {
			t.Fatalf("keyboard buffer grew to %d bytes", len(c.kbd))
		}
	})
}
