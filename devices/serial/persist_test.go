package serial

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A UART configured by the guest, with bytes waiting in its FIFO, comes
// back the same in a new UART: same registers, same bytes in order, and
// the pending receive interrupt raised again.
func TestSaveRestoreRoundTrip(t *testing.T) {
	u := New(nil, &countingIRQ{})
	u.Write(3, []byte{0x80}) // DLAB
	u.Write(0, []byte{0x01}) // divisor 1: 115200 baud
	u.Write(3, []byte{0x03}) // 8N1, DLAB off
	u.Write(2, []byte{0x07}) // FIFOs on, cleared
	u.Write(7, []byte{0x5a}) // scratch
	u.Receive([]byte("abcdefghij"))
	var b [1]byte
	u.Read(0, b[:])          // the guest took "a"
	u.Write(1, []byte{0x01}) // ERBFI
	st := u.Save()
	assert.Equal(t, []byte("bcdefghij"), st.RX)

	irq := &countingIRQ{}
	v := New(nil, irq)
	require.NoError(t, v.Restore(st))
	assert.Equal(t, st, v.Save())
	assert.Equal(t, int64(1), irq.n.Load(), "the pending RX interrupt is raised again")
	v.Read(0, b[:])
	assert.Equal(t, byte('b'), b[0])
	v.Read(7, b[:])
	assert.Equal(t, byte(0x5a), b[0])

	st.RX = make([]byte, RxBufferSize+1)
	assert.Error(t, New(nil, nil).Restore(st), "a FIFO larger than the UART's is refused")
}
