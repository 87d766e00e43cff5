package vcpu

import (
	"fmt"
	"slices"

	"github.com/vmm-dev/vmm/kvm"
)

// MSRs a snapshot saves beyond KVM_GET_MSR_INDEX_LIST's, which on some
// kernels leaves out KVM's paravirtual ones (Documentation/virt/kvm/x86/msr.rst):
// kvmclock (old and new numbers), async page faults, steal time, PV EOI,
// poll control.
var pvMSRs = []uint32{
	0x11, 0x12, // MSR_KVM_WALL_CLOCK, MSR_KVM_SYSTEM_TIME
	0x4b564d00, 0x4b564d01, 0x4b564d02, 0x4b564d03, 0x4b564d04,
	0x4b564d05, 0x4b564d06, 0x4b564d07, 0x4b564d08,
}

// msrTSCDeadline is IA32_TSC_DEADLINE (Intel SDM vol. 4 table 2-2). It is
// restored after IA32_TSC: KVM interprets a deadline against the TSC, and
// one written first is measured against the old TSC and may never fire.
const msrTSCDeadline = 0x6e0

// SnapshotMSRs returns the MSR indices a snapshot saves: the host's list
// and the paravirtual MSRs, without duplicates.
func SnapshotMSRs(hostList []uint32) []uint32 {
	all := append(slices.Clone(hostList), pvMSRs...)
	slices.Sort(all)
	return slices.Compact(all)
}

// State is everything KVM holds of one vCPU, in plain values (see Save
// for the order it is read in, Restore for the order it is written).
type State struct {
	ID        int
	CPUID     []kvm.CPUIDEntry
	MPState   kvm.MPState
	Regs      kvm.Regs
	Sregs     kvm.Sregs
	XSave     []byte
	XCRs      kvm.XCRs
	DebugRegs kvm.DebugRegs
	LAPIC     kvm.LAPICState
	MSRs      []kvm.MSREntry
	Events    kvm.VCPUEvents
}

// CPUID returns the CPUID table the vCPU was configured with.
func (v *VCPU) CPUID() []kvm.CPUIDEntry { return v.cpuid }

// Save reads the vCPU's state; it must be paused or not running.
// MP state comes first: reading it makes KVM process pending INIT/SIPI
// events into the registers (kvm_apic_accept_events); vCPU events come
// last, after everything that could still raise one.
func (v *VCPU) Save(msrs []uint32, xsaveSize int) (*State, error) {
	st := &State{ID: v.ID(), CPUID: slices.Clone(v.cpuid)}
	err := v.do(func() error {
		var err error
		c := v.fd
		steps := []struct {
			what string
			f    func() error
		}{
			{"MP state", func() error { st.MPState, err = c.MPState(); return err }},
			{"registers", func() error { st.Regs, err = c.Regs(); return err }},
			{"special registers", func() error { st.Sregs, err = c.Sregs(); return err }},
			{"XSAVE", func() error { st.XSave, err = c.XSave(xsaveSize); return err }},
			{"XCRs", func() error { st.XCRs, err = c.XCRs(); return err }},
			{"debug registers", func() error { st.DebugRegs, err = c.DebugRegs(); return err }},
			{"LAPIC", func() error { st.LAPIC, err = c.LAPIC(); return err }},
			{"MSRs", func() error { st.MSRs, err = c.MSRsReadable(msrs); return err }},
			{"vCPU events", func() error { st.Events, err = c.VCPUEvents(); return err }},
		}
		for _, s := range steps {
			if err := s.f(); err != nil {
				return fmt.Errorf("save %s: %w", s.what, err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("vCPU %d: %w", v.ID(), err)
	}
	return st, nil
}

// Restore writes a saved state into a vCPU created with st.CPUID (New set
// that already: KVM takes CPUID first, as the rest is checked against it).
// The order is the one KVM needs: MP state, registers, special
// registers, XSAVE, XCRs, debug registers, the LAPIC before the MSRs (the
// TSC deadline MSR is only writable once the LAPIC is in TSC-deadline
// mode), the TSC before the TSC deadline, and vCPU events last.
func (v *VCPU) Restore(st *State) error {
	if st.ID != v.ID() {
		return fmt.Errorf("vCPU %d: restore the state of vCPU %d: %w", v.ID(), st.ID, kvm.ErrInvalidArg)
	}
	var msrs, deadline []kvm.MSREntry
	for _, e := range st.MSRs {
		if e.Index == msrTSCDeadline {
			deadline = append(deadline, e)
		} else {
			msrs = append(msrs, e)
		}
	}
	err := v.do(func() error {
		c := v.fd
		steps := []struct {
			what string
			f    func() error
		}{
			{"MP state", func() error { return c.SetMPState(st.MPState) }},
			{"registers", func() error { return c.SetRegs(st.Regs) }},
			{"special registers", func() error { return c.SetSregs(st.Sregs) }},
			{"XSAVE", func() error { return c.SetXSave(st.XSave) }},
			{"XCRs", func() error { return c.SetXCRs(st.XCRs) }},
			{"debug registers", func() error { return c.SetDebugRegs(st.DebugRegs) }},
			{"LAPIC", func() error { return c.SetLAPIC(st.LAPIC) }},
			{"MSRs", func() error { return c.SetMSRs(msrs) }},
			{"TSC deadline", func() error { return c.SetMSRs(deadline) }},
			{"vCPU events", func() error { return c.SetVCPUEvents(st.Events) }},
		}
		for _, s := range steps {
			if err := s.f(); err != nil {
				return fmt.Errorf("restore %s: %w", s.what, err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("vCPU %d: %w", v.ID(), err)
	}
	return nil
}
