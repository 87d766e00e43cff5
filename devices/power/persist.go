package power

// State is the sleep registers' state, for a snapshot: WAK_STS.
type State struct {
	Awake bool
}

// Save returns the sleep registers' state.
func (d *Device) Save() State {
	d.mu.Lock()
	defer d.mu.Unlock()
	return State{Awake: d.awake}
}

// Restore loads s into a device that has not run yet.
func (d *Device) Restore(s State) {
	d.mu.Lock()
	d.awake = s.Awake
	d.mu.Unlock()
}

// ResetState is the reset control register as last written, for a
// snapshot: a guest that wrote SYS_RST before it was saved still makes
// RST_CPU's 0-to-1 transition after the restore.
type ResetState struct {
	Value   uint8
	CPUHigh bool // RST_CPU as last written
}

// Save returns the register's state.
func (r *ResetControl) Save() ResetState {
	r.mu.Lock()
	defer r.mu.Unlock()
	return ResetState{Value: r.value, CPUHigh: r.cpuReset}
}

// Restore loads s into a register that has not run yet.
func (r *ResetControl) Restore(s ResetState) {
	r.mu.Lock()
	r.value, r.cpuReset = s.Value&(ResetSystem|ResetFull), s.CPUHigh
	r.mu.Unlock()
}
