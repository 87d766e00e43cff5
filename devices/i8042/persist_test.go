package i8042

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A controller saved in the middle of the guest's conversation (a
// keyboard command waiting for its parameter, an ACK unread, the
// keyboard's interrupt on) goes on in a new controller where it stopped.
func TestSaveRestoreMidConversation(t *testing.T) {
	old := New(nil)
	var irq counter
	old.SetKeyboardInterrupt(&irq)
	outb(old, offsetData, kbdSetLEDs) // ACK queued, LED byte expected next
	outb(old, offsetPortB, 0x03)
	s := old.Save()
	assert.Equal(t, []byte{kbdAck}, s.Kbd)
	assert.Equal(t, byte(kbdSetLEDs), s.KbdParamFor)

	c := New(nil)
	var irq2 counter
	c.SetKeyboardInterrupt(&irq2)
	require.NoError(t, c.Restore(s))
	assert.Equal(t, 1, irq2.n, "the waiting ACK is announced again")
	assert.Equal(t, s, c.Save())
	assert.NotZero(t, inb(c, offsetCommand)&strOBF)
	assert.Equal(t, byte(kbdAck), inb(c, offsetData))
	outb(c, offsetData, 0x07) // the LED byte: ACKed, not taken as a command
	assert.Equal(t, byte(kbdAck), inb(c, offsetData))
	assert.Equal(t, byte(0x03), inb(c, offsetPortB)&0x03)
	assert.Zero(t, inb(c, offsetCommand)&strOBF)
}

func TestRestoreRefusesImpossibleStates(t *testing.T) {
	c := New(nil)
	assert.ErrorIs(t, c.Restore(State{Kbd: make([]byte, kbdQueueMax+1)}), ErrState)
	assert.ErrorIs(t, c.Restore(State{Result: []byte{1, 2}}), ErrState)
	assert.Equal(t, New(nil).Save(), c.Save(), "a refused state changes nothing")
}
