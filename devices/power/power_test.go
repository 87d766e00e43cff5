package power

import (
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vmm-dev/vmm/devices"
)

// recorder collects power requests.
type recorder struct {
	mu      sync.Mutex
	actions []devices.PowerAction
}

func (r *recorder) handle(a devices.PowerAction) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.actions = append(r.actions, a)
}

func (r *recorder) got() []devices.PowerAction {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]devices.PowerAction(nil), r.actions...)
}

func TestDefaultRange(t *testing.T) {
	d := New(DefaultRegisters, nil)
	assert.Equal(t, uint64(0x600), d.Base())
	assert.Equal(t, uint64(5), d.Len())
	require.NoError(t, DefaultRegisters.Validate())
}

// What Linux writes: acpi_hw_extended_sleep writes WAK_STS to the status
// register, then SLP_TYPa<<2 | SLP_EN to the control register.
func TestWrites(t *testing.T) {
	const (
		control = 0 // offsets from 0x600 in DefaultRegisters
		status  = 1
		reset   = 4
	)
	tests := []struct {
		name   string
		offset uint64
		data   []byte
		want   []devices.PowerAction
	}{
		{"S5 with SLP_EN", control, []byte{SleepTypeS5<<2 | 0x20}, []devices.PowerAction{devices.PowerOff}},
		{"S5 with reserved bits set", control, []byte{SleepTypeS5<<2 | 0x20 | 0xc3}, []devices.PowerAction{devices.PowerOff}},
		{"S5 without SLP_EN", control, []byte{SleepTypeS5 << 2}, nil},
		{"other sleep type", control, []byte{3<<2 | 0x20}, nil},
		{"SLP_EN with type 0", control, []byte{0x20}, nil},
		{"S5 in a word write", control, []byte{SleepTypeS5<<2 | 0x20, 0x80}, []devices.PowerAction{devices.PowerOff}},
		{"reset value", reset, []byte{0x01}, []devices.PowerAction{devices.Reset}},
		{"other reset value", reset, []byte{0x02}, nil},
		{"reset via wide write from status", status, []byte{0, 0, 0, 0x01}, []devices.PowerAction{devices.Reset}},
		{"reset value at control", control, []byte{0x01}, nil},
		{"reset value to status", status, []byte{0x01}, nil},
		{"unused port", 2, []byte{0xff}, nil},
		{"past the range", reset, []byte{0x01, SleepTypeS5<<2 | 0x20}, []devices.PowerAction{devices.Reset}},
		{"offset far past the range", 1 << 20, []byte{0x01}, nil},
		{"offset wraps", ^uint64(0), []byte{0xff, SleepTypeS5<<2 | 0x20}, nil},
		{"empty write", control, nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var rec recorder
			d := New(DefaultRegisters, rec.handle)
			d.Write(tt.offset, tt.data)
			assert.Equal(t, tt.want, rec.got())
		})
	}
}

func TestWakeStatus(t *testing.T) {
	var rec recorder
	d := New(DefaultRegisters, rec.handle)
	read := func(offset uint64) byte {
		b := []byte{0xaa}
		d.Read(offset, b)
		return b[0]
	}
	assert.Zero(t, read(1), "WAK_STS clear at start")

	// Clearing WAK_STS (as Linux does before sleeping) keeps it clear, and
	// S5 leaves it clear: the vCPU polls until the machine stops it.
	d.Write(1, []byte{0x80})
	d.Write(0, []byte{SleepTypeS5<<2 | 0x20})
	assert.Zero(t, read(1))

	// A sleep state we do not offer wakes at once.
	d.Write(0, []byte{1<<2 | 0x20})
	assert.Equal(t, byte(0x80), read(1))
	d.Write(1, []byte{0x7f}) // WAK_STS is write-1-to-clear
	assert.Equal(t, byte(0x80), read(1))
	d.Write(1, []byte{0x80})
	assert.Zero(t, read(1))

	// Control and reset registers read as zero, and so does the gap.
	for _, off := range []uint64{0, 2, 3, 4} {
		assert.Zero(t, read(off), "offset %d", off)
	}
	wide := []byte{1, 2, 3, 4, 5, 6, 7, 8}
	d.Read(0, wide)
	assert.Equal(t, make([]byte, 8), wide)
	assert.Equal(t, []devices.PowerAction{devices.PowerOff}, rec.got())
}

func TestNilHandler(t *testing.T) {
	d := New(DefaultRegisters, nil)
	d.Write(0, []byte{SleepTypeS5<<2 | 0x20})
	d.Write(4, []byte{0x01})
}

func TestCustomRegisters(t *testing.T) {
	regs := Registers{SleepControl: 0x70f, SleepStatus: 0x700, Reset: 0x708, ResetValue: 0x06}
	require.NoError(t, regs.Validate())
	var rec recorder
	d := New(regs, rec.handle)
	assert.Equal(t, uint64(0x700), d.Base())
	assert.Equal(t, uint64(16), d.Len())
	d.Write(0x0f, []byte{SleepTypeS5<<2 | 0x20})
	d.Write(0x08, []byte{0x01})
	d.Write(0x08, []byte{0x06})
	assert.Equal(t, []devices.PowerAction{devices.PowerOff, devices.Reset}, rec.got())
}

func TestValidate(t *testing.T) {
	tests := map[string]Registers{
		"zero port":     {SleepControl: 0, SleepStatus: 0x601, Reset: 0x604},
		"shared port":   {SleepControl: 0x600, SleepStatus: 0x600, Reset: 0x604},
		"reset shared":  {SleepControl: 0x600, SleepStatus: 0x601, Reset: 0x601},
		"too far apart": {SleepControl: 0x600, SleepStatus: 0x601, Reset: 0x610},
		"all zero":      {},
	}
	for name, regs := range tests {
		assert.ErrorIs(t, regs.Validate(), ErrRegisters, name)
	}
}

func TestConcurrentAccess(t *testing.T) {
	var rec recorder
	d := New(DefaultRegisters, rec.handle)
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b := make([]byte, 1)
			for i := 0; i < 200; i++ {
				d.Write(0, []byte{1<<2 | 0x20})
				d.Read(1, b)
				d.Write(1, []byte{0x80})
			}
		}()
	}
	d.Write(4, []byte{0x01})
	wg.Wait()
	assert.Equal(t, []devices.PowerAction{devices.Reset}, rec.got())
}
