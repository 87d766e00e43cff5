package rtc

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// CMOS RAM and the selected register survive; the time still follows
// the host's clock.
func TestSaveRestore(t *testing.T) {
	old := New()
	old.Write(0, []byte{0x40})
	old.Write(1, []byte{0x5a})
	old.Write(0, []byte{0x8b | 0x80}) // register B, NMIs masked
	s := old.Save()

	r := New()
	require.NoError(t, r.Restore(s))
	assert.Equal(t, s, r.Save())
	var b [1]byte
	r.Read(1, b[:])
	assert.Equal(t, byte(regBValue), b[0], "register B stays selected")
	assert.Equal(t, byte(0x5a), read(r, 0x40))

	assert.Error(t, r.Restore(State{RAM: make([]byte, 3)}))
}
