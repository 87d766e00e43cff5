package kvm

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// VCPU is a virtual CPU and its kvm_run area.
type VCPU struct {
	id  int
	h   *handle
	run []byte // the kvm_run mapping; valid while h has users or is open
}

func newVCPU(id, fd int, run []byte) *VCPU {
	release := func() error {
		return errors.Join(unix.Munmap(run), unix.Close(fd))
	}
	return &VCPU{id: id, h: newHandle(fmt.Sprintf("vCPU %d", id), fd, release), run: run}
}

// ID returns the id the vCPU was created with.
func (c *VCPU) ID() int { return c.id }

// Close unmaps kvm_run and closes the vCPU, once any call still running
// on it (a Run, say) has returned.
func (c *VCPU) Close() error { return c.h.close() }

// Run issues KVM_RUN and returns why the guest stopped. A signal or
// immediate_exit gives (Interrupted{}, nil). The Data of an exit aliases
// kvm_run: an IOIn or MMIORead is completed by filling it before the
// next Run.
func (c *VCPU) Run() (Exit, error) {
	fd, err := c.h.acquire()
	if err != nil {
		return nil, ioctlError(c.h.what, "KVM_RUN", err)
	}
	// No retry on EINTR here: it is how a kick reaches the caller.
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), kvmRun, 0)
	var exit Exit
	switch {
	case errno == unix.EINTR || errno == unix.EAGAIN:
		exit = Interrupted{}
	case errno != 0:
		err = ioctlError(c.h.what, "KVM_RUN", errno)
	default:
		exit, err = decodeExit(c.run)
		if err != nil {
			err = fmt.Errorf("%s: KVM_RUN: %w", c.h.what, err)
		}
	}
	// The kvm_run mapping stays valid for the returned Data: a Close that
	// raced with this Run released it only now, and Data must not be used
	// after Close.
	return exit, errors.Join(err, c.h.done())
}

// SetImmediateExit sets kvm_run.immediate_exit: while it is set, KVM_RUN
// returns at once with EINTR (Interrupted) instead of entering the guest.
// Safe from any goroutine. It does not stop a guest already running: pair
// it with a signal to the vCPU's thread, which it makes race-free
// (api.rst, "immediate_exit"). Does nothing after Close.
func (c *VCPU) SetImmediateExit(on bool) {
	if _, err := c.h.acquire(); err != nil {
		return
	}
	storeImmediateExit(c.run, on)
	// A release error here can only come from a racing Close; that Close
	// already returned nil, and there is nobody else to tell.
	_ = c.h.done()
}

// ImmediateExit reports whether kvm_run.immediate_exit is set.
func (c *VCPU) ImmediateExit() bool {
	if _, err := c.h.acquire(); err != nil {
		return false
	}
	on := loadImmediateExit(c.run)
	_ = c.h.done() // see SetImmediateExit
	return on
}

// Regs returns KVM_GET_REGS.
func (c *VCPU) Regs() (Regs, error) {
	var r Regs
	_, err := ioctlStruct(c.h, "KVM_GET_REGS", kvmGetRegs, &r)
	return r, err
}

// SetRegs issues KVM_SET_REGS.
func (c *VCPU) SetRegs(r Regs) error {
	_, err := ioctlStruct(c.h, "KVM_SET_REGS", kvmSetRegs, &r)
	return err
}

// Sregs returns KVM_GET_SREGS.
func (c *VCPU) Sregs() (Sregs, error) {
	var s Sregs
	_, err := ioctlStruct(c.h, "KVM_GET_SREGS", kvmGetSregs, &s)
	return s, err
}

// SetSregs issues KVM_SET_SREGS.
func (c *VCPU) SetSregs(s Sregs) error {
	_, err := ioctlStruct(c.h, "KVM_SET_SREGS", kvmSetSregs, &s)
	return err
}

// FPU returns KVM_GET_FPU.
func (c *VCPU) FPU() (FPU, error) {
	var f FPU
	_, err := ioctlStruct(c.h, "KVM_GET_FPU", kvmGetFPU, &f)
	return f, err
}

// SetFPU issues KVM_SET_FPU.
func (c *VCPU) SetFPU(f FPU) error {
	_, err := ioctlStruct(c.h, "KVM_SET_FPU", kvmSetFPU, &f)
	return err
}

// SetMSRs issues KVM_SET_MSRS. The kernel stops at the first MSR it
// rejects and reports how many it set; a short count is an error wrapping
// ErrMSR that names the rejected MSR.
func (c *VCPU) SetMSRs(entries []MSREntry) error {
	if len(entries) == 0 {
		return nil
	}
	buf := encodeMSRs(entries)
	n, err := ioctlStruct(c.h, "KVM_SET_MSRS", kvmSetMSRs, &buf[0])
	if err != nil {
		return err
	}
	if int(n) < len(entries) {
		return fmt.Errorf("%s: KVM_SET_MSRS: %w: MSR %#x (value %#x) rejected; set %d of %d",
			c.h.what, ErrMSR, entries[n].Index, entries[n].Data, n, len(entries))
	}
	return nil
}

// MSRs returns KVM_GET_MSRS for indices. As with SetMSRs, an MSR the
// kernel refuses to read is an error wrapping ErrMSR that names it.
func (c *VCPU) MSRs(indices []uint32) ([]MSREntry, error) {
	if len(indices) == 0 {
		return nil, nil
	}
	entries := make([]MSREntry, len(indices))
	for i, idx := range indices {
		entries[i].Index = idx
	}
	buf := encodeMSRs(entries)
	n, err := ioctlStruct(c.h, "KVM_GET_MSRS", kvmGetMSRs, &buf[0])
	if err != nil {
		return nil, err
	}
	if int(n) < len(indices) {
		return nil, fmt.Errorf("%s: KVM_GET_MSRS: %w: MSR %#x unreadable; read %d of %d",
			c.h.what, ErrMSR, indices[n], n, len(indices))
	}
	return decodeMSRs(buf, len(indices)), nil
}

// SetCPUID2 issues KVM_SET_CPUID2: the CPUID leaves the guest sees.
func (c *VCPU) SetCPUID2(entries []CPUIDEntry) error {
	buf := encodeCPUID2(entries)
	_, err := ioctlStruct(c.h, "KVM_SET_CPUID2", kvmSetCPUID2, &buf[0])
	return err
}

// LAPIC returns KVM_GET_LAPIC (needs the in-kernel irqchip).
func (c *VCPU) LAPIC() (LAPICState, error) {
	var s LAPICState
	_, err := ioctlStruct(c.h, "KVM_GET_LAPIC", kvmGetLAPIC, &s)
	return s, err
}

// SetLAPIC issues KVM_SET_LAPIC (needs the in-kernel irqchip).
func (c *VCPU) SetLAPIC(s LAPICState) error {
	_, err := ioctlStruct(c.h, "KVM_SET_LAPIC", kvmSetLAPIC, &s)
	return err
}

// MPState is struct kvm_mp_state: the vCPU's multiprocessing state.
type MPState uint32

// MPState values (<linux/kvm.h> KVM_MP_STATE_*) used on x86.
const (
	MPStateRunnable      MPState = 0
	MPStateUninitialized MPState = 1 // an AP waiting for INIT
	MPStateInitReceived  MPState = 2 // an AP waiting for SIPI
	MPStateHalted        MPState = 3
	MPStateSIPIReceived  MPState = 4
)

func (s MPState) String() string {
	switch s {
	case MPStateRunnable:
		return "runnable"
	case MPStateUninitialized:
		return "uninitialized"
	case MPStateInitReceived:
		return "INIT received"
	case MPStateHalted:
		return "halted"
	case MPStateSIPIReceived:
		return "SIPI received"
	}
	return fmt.Sprintf("MPState(%d)", uint32(s))
}

// MPState returns KVM_GET_MP_STATE.
func (c *VCPU) MPState() (MPState, error) {
	var s MPState
	_, err := ioctlStruct(c.h, "KVM_GET_MP_STATE", kvmGetMPState, &s)
	return s, err
}

// SetMPState issues KVM_SET_MP_STATE.
func (c *VCPU) SetMPState(s MPState) error {
	_, err := ioctlStruct(c.h, "KVM_SET_MP_STATE", kvmSetMPState, &s)
	return err
}

// Translate issues KVM_TRANSLATE: the guest physical address that linear
// maps to under the vCPU's current paging mode, and whether the mapping
// is valid.
func (c *VCPU) Translate(linear uint64) (phys uint64, valid bool, err error) {
	t := translation{LinearAddress: linear}
	_, err = ioctlStruct(c.h, fmt.Sprintf("KVM_TRANSLATE %#x", linear), kvmTranslate, &t)
	if err != nil {
		return 0, false, err
	}
	return t.PhysicalAddress, t.Valid != 0, nil
}
