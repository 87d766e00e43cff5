package power

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/vmm-dev/vmm/devices"
)

// A guest saved after writing SYS_RST resets with the RST_CPU write it
// makes after the restore; WAK_STS survives too.
func TestSaveRestore(t *testing.T) {
	old := NewResetControl(nil)
	old.Write(0, []byte{ResetSystem})
	var rec recorder
	r := NewResetControl(rec.handle)
	r.Restore(old.Save())
	assert.Equal(t, old.Save(), r.Save())
	r.Write(0, []byte{ResetSystem | ResetCPU})
	assert.Equal(t, []devices.PowerAction{devices.Reset}, rec.actions)

	// RST_CPU saved high: writing it high again is no transition.
	var rec2 recorder
	high := NewResetControl(rec2.handle)
	high.Restore(ResetState{Value: ResetSystem | 0x80, CPUHigh: true})
	assert.Equal(t, ResetState{Value: ResetSystem, CPUHigh: true}, high.Save(), "only the register's bits are kept")
	high.Write(0, []byte{ResetCPU})
	assert.Empty(t, rec2.actions)

	d := New(DefaultRegisters, nil)
	d.Restore(State{Awake: true})
	assert.Equal(t, State{Awake: true}, d.Save())
	var b [1]byte
	d.Read(uint64(DefaultRegisters.SleepStatus-DefaultRegisters.Base()), b[:])
	assert.Equal(t, byte(wakeStatus), b[0])
}
