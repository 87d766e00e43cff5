package rtc

import "fmt"

// State is what the guest stored in the clock, for a snapshot: the
// selected register and the CMOS RAM. The time itself is not state: the
// clock follows the host's, on the restoring host too.
type State struct {
	Index byte
	RAM   []byte // cmosSize bytes
}

// Save returns the clock's state.
func (r *RTC) Save() State {
	r.mu.Lock()
	defer r.mu.Unlock()
	return State{Index: r.index, RAM: append([]byte(nil), r.ram[:]...)}
}

// Restore loads s into a clock that has not run yet.
func (r *RTC) Restore(s State) error {
	if len(s.RAM) != cmosSize {
		return fmt.Errorf("rtc: restore: %d bytes of CMOS RAM (want %d)", len(s.RAM), cmosSize)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.index = s.Index & indexMask
	copy(r.ram[:], s.RAM)
	return nil
}
