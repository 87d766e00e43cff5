package i8042

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// counter is a devices.Interrupt that counts its edges.
type counter struct {
	n   int
	err error
}

func (c *counter) Trigger() error { c.n++; return c.err }

func outb(c *Controller, off uint64, v byte) { c.Write(off, []byte{v}) }

// command runs a controller command the way Linux's __i8042_command
// does: the command, its parameter bytes, then one read per result byte
// after waiting for OBF.
func command(t *testing.T, c *Controller, cmd byte, params []byte, results int) []byte {
	t.Helper()
	outb(c, offsetCommand, cmd)
	for _, p := range params {
		require.Zero(t, inb(c, offsetCommand)&0x02, "IBF clear before a parameter")
		outb(c, offsetData, p)
	}
	var out []byte
	for range results {
		require.NotZero(t, inb(c, offsetCommand)&strOBF, "a result of command %#x waits", cmd)
		out = append(out, inb(c, offsetData))
	}
	return out
}

// The commands Linux's i8042 probe sends with i8042.nopnp
// i8042.noaux i8042.nomux (drivers/input/serio/i8042.c:
// i8042_controller_check, i8042_controller_selftest,
// i8042_controller_init, i8042_enable_kbd_port).
func TestLinuxProbeSequence(t *testing.T) {
	c := New(nil)
	irq := &counter{}
	c.SetKeyboardInterrupt(irq)

	assert.Zero(t, inb(c, offsetCommand)&strOBF, "i8042_flush finds nothing")
	assert.Equal(t, []byte{selfTestOK}, command(t, c, cmdSelfTest, nil, 1))
	ctr := command(t, c, cmdReadCTR, nil, 1)[0]
	assert.Equal(t, ctr, command(t, c, cmdReadCTR, nil, 1)[0], "a stable CTR read")
	assert.Zero(t, ctr&0x40, "no translation: Linux drives the keyboard directly (set 2)")
	assert.NotZero(t, inb(c, offsetCommand)&strKeylock, "no \"Keylock active\" warning")

	ctr = (ctr | ctrKbdDis) &^ ctrKbdInt // disable while setting up
	command(t, c, cmdWriteCTR, []byte{ctr}, 0)
	assert.Equal(t, []byte{ctr}, command(t, c, cmdReadCTR, nil, 1))
	assert.Equal(t, []byte{0x00}, command(t, c, cmdKbdTest, nil, 1))
	ctr = (ctr &^ ctrKbdDis) | ctrKbdInt
	command(t, c, cmdWriteCTR, []byte{ctr}, 0)
	assert.Zero(t, irq.n, "command results raise no keyboard interrupt")
	assert.Zero(t, inb(c, offsetCommand)&strOBF)
}

// readKeys plays Linux's i8042_interrupt: one byte per interrupt.
func readKeys(c *Controller, irq *counter) []byte {
	var got []byte
	for handled := 0; handled < irq.n; handled++ {
		if inb(c, offsetCommand)&strOBF == 0 {
			break
		}
		got = append(got, inb(c, offsetData))
	}
	return got
}

func TestSendCtrlAltDel(t *testing.T) {
	c := New(nil)
	irq := &counter{}
	c.SetKeyboardInterrupt(irq)
	require.NoError(t, c.SendCtrlAltDel())
	assert.Equal(t, 1, irq.n, "one interrupt for the first byte")
	got := readKeys(c, irq)
	assert.Equal(t, []byte{0x14, 0x11, 0xe0, 0x71, 0xe0, 0xf0, 0x71, 0xf0, 0x11, 0xf0, 0x14}, got,
		"set 2: Ctrl, Alt, Delete pressed, then released")
	assert.Equal(t, len(got), irq.n, "one interrupt per byte")
	assert.Zero(t, inb(c, offsetCommand)&strOBF)
}

func TestSendCtrlAltDelWhileKeyboardDisabled(t *testing.T) {
	c := New(nil)
	irq := &counter{}
	c.SetKeyboardInterrupt(irq)
	outb(c, offsetCommand, cmdKbdDisable)
	require.NoError(t, c.SendCtrlAltDel())
	assert.Zero(t, irq.n, "a disabled keyboard's bytes wait")
	assert.Zero(t, inb(c, offsetCommand)&strOBF)
	outb(c, offsetCommand, cmdKbdEnable)
	assert.Equal(t, 1, irq.n)
	assert.Len(t, readKeys(c, irq), len(ctrlAltDel))

	// With KBDINT clear the bytes are there to poll, without interrupts.
	command(t, c, cmdWriteCTR, []byte{initialCTR &^ ctrKbdInt}, 0)
	irq.n = 0
	require.NoError(t, c.SendCtrlAltDel())
	assert.Zero(t, irq.n)
	assert.NotZero(t, inb(c, offsetCommand)&strOBF)
}

func TestSendCtrlAltDelBufferFull(t *testing.T) {
	c := New(nil) // no interrupt wired and nobody reading
	require.NoError(t, c.SendCtrlAltDel())
	assert.ErrorIs(t, c.SendCtrlAltDel(), ErrKeyboardBusy)
}

func TestInterruptErrorsCounted(t *testing.T) {
	c := New(nil)
	c.SetKeyboardInterrupt(&counter{err: errors.New("eventfd closed")})
	require.NoError(t, c.SendCtrlAltDel())
	assert.Equal(t, uint64(1), c.InterruptErrors())
}

func TestKeyboardCommands(t *testing.T) {
	tests := []struct {
		name  string
		bytes []byte
		want  []byte
	}{
		{"reset", []byte{kbdReset}, []byte{kbdAck, kbdSelfTestOK}},
		{"identify", []byte{kbdGetID}, []byte{kbdAck, 0xab, 0x83}},
		{"set LEDs and its parameter", []byte{kbdSetLEDs, 0x07}, []byte{kbdAck, kbdAck}},
		{"get scan code set", []byte{kbdScanCodeSet, 0x00}, []byte{kbdAck, kbdAck, kbdScanCodeSt2}},
		{"set scan code set 2", []byte{kbdScanCodeSet, 0x02}, []byte{kbdAck, kbdAck}},
		{"echo", []byte{kbdEcho}, []byte{kbdEcho}},
		{"enable scanning", []byte{0xf4}, []byte{kbdAck}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := New(nil)
			irq := &counter{}
			c.SetKeyboardInterrupt(irq)
			var got []byte
			for _, b := range tt.bytes {
				outb(c, offsetData, b)
				got = append(got, readKeys(c, irq)...)
			}
			assert.Equal(t, tt.want, got)
		})
	}
}

// 0xd2 writes a byte that comes back as keyboard data.
func TestWriteKeyboardOutput(t *testing.T) {
	c := New(nil)
	irq := &counter{}
	c.SetKeyboardInterrupt(irq)
	outb(c, offsetCommand, cmdWriteKbdOut)
	outb(c, offsetData, 0x42)
	assert.Equal(t, []byte{0x42}, readKeys(c, irq))
}
