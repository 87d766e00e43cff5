package vcpu

import (
	"errors"
	"fmt"

	"github.com/vmm-dev/vmm/kvm"
	"github.com/vmm-dev/vmm/memory"
)

// describe adds the vCPU's instruction pointer and, where it can be read,
// the bytes there to an error: what a user needs to see which instruction
// the guest died on. After a shutdown (triple fault) the registers may be
// KVM's, not the guest's: see shutdownState.
func (v *VCPU) describe(cause error) error {
	regs, err := v.fd.Regs()
	if err != nil {
		return fmt.Errorf("%w (registers unreadable: %v)%s", cause, err, lastExitNote(v.last))
	}
	sregs, err := v.fd.Sregs()
	if err != nil {
		return fmt.Errorf("%w at RIP %#x (segment registers unreadable: %v)%s", cause, regs.RIP, err, lastExitNote(v.last))
	}
	shutdown := errors.Is(cause, ErrTripleFault)
	var code []byte
	if !(shutdown && isResetState(regs, sregs)) {
		code = v.instructionBytes(sregs.CS.Base + regs.RIP)
	}
	return diagnose(cause, shutdown, regs, sregs, code, v.last)
}

// instructionBytes reads the 15 bytes (the longest x86 instruction) at a
// linear address, nil where it does not translate to guest RAM.
func (v *VCPU) instructionBytes(linear uint64) []byte {
	phys, ok, err := v.fd.Translate(linear)
	if err != nil || !ok {
		return nil
	}
	b := make([]byte, 15)
	if v.mem.ReadAt(b, memory.GuestAddr(phys)) != nil {
		return nil
	}
	return b
}

// diagnose words the error. For a shutdown in the reset state it says the
// registers are lost instead of quoting them: on AMD hosts KVM answers a
// shutdown intercept by re-initializing the VMCB and resetting the vCPU
// as an INIT does (arch/x86/kvm/svm/svm.c, shutdown_interception) before
// it reports KVM_EXIT_SHUTDOWN, so RIP 0xfff0 with CS base 0xffff0000 is
// the reset vector, not where the guest failed. On Intel hosts the
// registers are the guest's at the fault. Either way the last exit to vmm
// tells the user what the guest did last that vmm saw.
func diagnose(cause error, shutdown bool, regs kvm.Regs, sregs kvm.Sregs, code []byte, last kvm.Exit) error {
	if shutdown && isResetState(regs, sregs) {
		return fmt.Errorf("%w (the guest's registers are lost: KVM reset the vCPU when it reported the shutdown, as it does on AMD hosts)%s",
			cause, lastExitNote(last))
	}
	msg := fmt.Sprintf("RIP %#x (CS base %#x, CR0 %#x, EFER %#x)", regs.RIP, sregs.CS.Base, sregs.CR0, sregs.EFER)
	if code != nil {
		msg += fmt.Sprintf(", instruction bytes % x", code)
	}
	return fmt.Errorf("%w at %s%s", cause, msg, lastExitNote(last))
}

// CR0 bits (Intel SDM Vol. 3A §2.5).
const (
	cr0ET = 1 << 4
	cr0NW = 1 << 29
	cr0CD = 1 << 30
)

// isResetState reports whether the registers are those of a CPU just
// after RESET or INIT (Intel SDM Vol. 3A §10.1.1, Table 10-1; AMD APM
// Vol. 2 §14.1.3): RIP 0xfff0, CS selector 0xf000 with base 0xffff0000,
// CR0 = ET with only CD and NW possibly kept (an INIT keeps them), EFER 0.
// No guest of vmm's runs there: nothing is mapped at 0xfffffff0.
func isResetState(regs kvm.Regs, sregs kvm.Sregs) bool {
	return regs.RIP == 0xfff0 &&
		sregs.CS.Selector == 0xf000 && sregs.CS.Base == 0xffff_0000 &&
		sregs.CR0&^(cr0CD|cr0NW) == cr0ET && sregs.EFER == 0
}

// lastExitNote describes the exit before the failing one, for the error.
func lastExitNote(last kvm.Exit) string {
	if last == nil {
		return "; no exit to vmm before it"
	}
	return "; the guest's last exit to vmm before it: " + exitSummary(last)
}

// exitSummary names an exit without its data: the data of an I/O or MMIO
// exit aliases the kvm_run page, which later exits have overwritten.
func exitSummary(e kvm.Exit) string {
	switch e := e.(type) {
	case kvm.IOOut:
		return fmt.Sprintf("port I/O write to %#x (size %d, count %d)", e.Port, e.Size, e.Count)
	case kvm.IOIn:
		return fmt.Sprintf("port I/O read from %#x (size %d, count %d)", e.Port, e.Size, e.Count)
	case kvm.MMIOWrite:
		return fmt.Sprintf("MMIO write to %#x (%d bytes)", e.Addr, len(e.Data))
	case kvm.MMIORead:
		return fmt.Sprintf("MMIO read from %#x (%d bytes)", e.Addr, len(e.Data))
	}
	return e.String()
}
