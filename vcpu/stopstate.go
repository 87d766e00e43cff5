package vcpu

import (
	"fmt"
	"strings"
	"time"

	"github.com/vmm-dev/vmm/kvm"
)

// StopState is where a vCPU was when the host stopped the VM (a signal, a
// timeout, the user quitting): the evidence that tells a guest that hung in
// its own code from a VMM stuck in a device handler. It is taken on the
// vCPU's thread once it has left KVM_RUN for the stop, so the registers are
// the guest's at that moment.
type StopState struct {
	ID int
	// InGuest is how long the interrupted KVM_RUN had been running: long
	// means the guest ran (or spun, or halted) without exiting to the VMM.
	// Zero when the stop found the vCPU in the VMM, between two runs.
	InGuest time.Duration
	// LastExit names the last exit the VMM handled ("port I/O write to
	// 0x3f8 ..."), and SinceLastExit how long before the stop it was.
	LastExit      string
	SinceLastExit time.Duration
	Regs          kvm.Regs
	CR0, CR3      uint64
	// Err is why the registers could not be read; the rest still holds.
	Err error
}

// String is one line for a user reading why a VM was stopped.
func (s StopState) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "vCPU %d: ", s.ID)
	if s.InGuest > 0 {
		fmt.Fprintf(&b, "in the guest for %v without an exit", s.InGuest.Round(time.Millisecond))
	} else {
		b.WriteString("in the VMM")
	}
	if s.LastExit != "" {
		fmt.Fprintf(&b, "; last exit %s, %v before the stop", s.LastExit, s.SinceLastExit.Round(time.Millisecond))
	} else {
		b.WriteString("; no exit handled yet")
	}
	if s.Err != nil {
		fmt.Fprintf(&b, "; registers unreadable: %v", s.Err)
		return b.String()
	}
	fmt.Fprintf(&b, "; RIP %#x RSP %#x RFLAGS %#x (interrupts %s) CR0 %#x CR3 %#x",
		s.Regs.RIP, s.Regs.RSP, s.Regs.RFLAGS, onOff(s.Regs.RFLAGS&rflagsIF != 0), s.CR0, s.CR3)
	return b.String()
}

const rflagsIF = 1 << 9

func onOff(on bool) string {
	if on {
		return "on"
	}
	return "off"
}

// takeStopState fills v.stop on the vCPU's thread; entered is when the
// last KVM_RUN began, zero when the stop came between runs.
func (v *VCPU) takeStopState(entered, interrupted time.Time) {
	s := StopState{ID: v.ID()}
	if v.last != nil {
		s.LastExit = exitSummary(v.last)
	}
	if !entered.IsZero() {
		s.InGuest = interrupted.Sub(entered)
	}
	if !v.lastAt.IsZero() {
		s.SinceLastExit = interrupted.Sub(v.lastAt)
	}
	if s.Regs, s.Err = v.fd.Regs(); s.Err == nil {
		var sregs kvm.Sregs
		if sregs, s.Err = v.fd.Sregs(); s.Err == nil {
			s.CR0, s.CR3 = sregs.CR0, sregs.CR3
		}
	}
	v.stop = &s
}

// StopState returns where the vCPU was when a stop ended Run; nil when Run
// ended otherwise or has not returned. Call it only after Run returned.
func (v *VCPU) StopState() *StopState { return v.stop }
