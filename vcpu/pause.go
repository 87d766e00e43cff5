package vcpu

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// ErrNotPaused reports a state operation on a vCPU whose loop is running
// the guest: its registers are changing under the caller.
var ErrNotPaused = errors.New("vCPU is not paused")

// parking is the pause machinery: Pause asks the run loop to leave
// KVM_RUN and wait, and state operations then run on the loop's own
// thread, where KVM keeps the vCPU loaded.
type parking struct {
	wanted  bool        // Pause asked, Resume not yet
	parked  bool        // the loop is waiting in park
	running bool        // the loop is inside Run
	work    chan func() // functions for the parked loop to run on its thread
}

// Pause makes the run loop leave KVM_RUN and wait until Resume, and
// returns once it waits (at once when Run is not running: a Run started
// later parks before it enters the guest).
func (v *VCPU) Pause() {
	v.pmu.Lock()
	v.park.wanted = true
	running := v.park.running
	v.pmu.Unlock()
	if !running {
		return
	}
	v.fd.SetImmediateExit(true)
	v.signal()
	v.pmu.Lock()
	for v.park.running && !v.park.parked && !v.stopping.Load() {
		v.pcond.Wait()
	}
	v.pmu.Unlock()
}

// Resume lets a paused vCPU run the guest again.
func (v *VCPU) Resume() {
	v.pmu.Lock()
	v.park.wanted = false
	v.pcond.Broadcast()
	v.pmu.Unlock()
}

// Paused reports whether the vCPU is held out of the guest: parked in
// Run, or asked to pause before Run started.
func (v *VCPU) Paused() bool {
	v.pmu.Lock()
	defer v.pmu.Unlock()
	return v.park.wanted && (v.park.parked || !v.park.running)
}

// parkIfAsked is the run loop's stop for Pause: it waits while paused,
// running the state operations sent to it, and returns when resumed or
// stopped. After a pause it tells the guest's kvmclock that the host
// stopped it (KVM_KVMCLOCK_CTRL), so the guest's watchdogs do not count
// the paused time as a lockup.
func (v *VCPU) parkIfAsked() {
	v.pmu.Lock()
	if !v.park.wanted {
		v.pmu.Unlock()
		return
	}
	v.park.parked = true
	v.pcond.Broadcast()
	for v.park.wanted && !v.stopping.Load() {
		select {
		case f := <-v.park.work:
			v.pmu.Unlock()
			f()
			v.pmu.Lock()
			continue
		default:
		}
		v.pcond.Wait()
	}
	// A state operation sent just before Resume still gets its answer.
	select {
	case f := <-v.park.work:
		v.pmu.Unlock()
		f()
		v.pmu.Lock()
	default:
	}
	v.park.parked = false
	// Cleared under the lock, and only while no Pause is wanted: a Pause
	// that came between the wake-up and here has set immediate_exit and
	// sent its signal already, and must not lose them.
	v.fd.SetImmediateExit(v.stopping.Load() || v.park.wanted)
	v.pmu.Unlock()
	if !v.stopping.Load() {
		// EINVAL: the guest has not enabled kvmclock; nothing to tell.
		if err := v.fd.KVMClockCtrl(); err != nil && !errors.Is(err, unix.EINVAL) {
			v.clockCtrlErr = err
		}
	}
}

// do runs f where the vCPU's state may be read or written: on the parked
// loop's thread, or on the caller's when Run is not running (before the
// first Run, or after it returned). A running, unpaused vCPU refuses.
func (v *VCPU) do(f func() error) error {
	v.pmu.Lock()
	switch {
	case !v.park.running:
		// Holding the lock keeps Run from starting underneath f.
		defer v.pmu.Unlock()
		return f()
	case !v.park.parked:
		v.pmu.Unlock()
		return fmt.Errorf("vCPU %d: %w", v.ID(), ErrNotPaused)
	}
	done := make(chan error, 1)
	v.park.work <- func() { done <- f() }
	v.pcond.Broadcast()
	v.pmu.Unlock()
	return <-done
}

// enterRun marks the loop running; leaveRun undoes it and wakes a Pause
// or do waiting for a loop that has ended.
func (v *VCPU) enterRun() {
	v.pmu.Lock()
	v.park.running = true
	v.pmu.Unlock()
}

func (v *VCPU) leaveRun() {
	v.pmu.Lock()
	v.park.running = false
	v.pcond.Broadcast()
	v.pmu.Unlock()
}

// settleImmediateExit sets immediate_exit after an interrupted KVM_RUN:
// on while a stop or a pause is wanted, off otherwise. The read of the
// wish and the store are one step under the lock, so a Pause (which sets
// its wish under the lock, then immediate_exit) is never undone by a
// store based on what was true before it.
func (v *VCPU) settleImmediateExit() {
	v.pmu.Lock()
	defer v.pmu.Unlock()
	v.fd.SetImmediateExit(v.stopping.Load() || v.park.wanted)
}
