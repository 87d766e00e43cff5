package vcpu

import (
	"fmt"

	"github.com/vmm-dev/vmm/memory"
)

// describe adds the vCPU's instruction pointer and, where it can be read,
// the bytes there to an error: what a user needs to see which instruction
// the guest died on.
func (v *VCPU) describe(cause error) error {
	regs, err := v.fd.Regs()
	if err != nil {
		return fmt.Errorf("%w (registers unreadable: %v)", cause, err)
	}
	sregs, err := v.fd.Sregs()
	if err != nil {
		return fmt.Errorf("%w at RIP %#x (segment registers unreadable: %v)", cause, regs.RIP, err)
	}
	linear := sregs.CS.Base + regs.RIP
	msg := fmt.Sprintf("RIP %#x (CS base %#x, CR0 %#x, EFER %#x)", regs.RIP, sregs.CS.Base, sregs.CR0, sregs.EFER)
	if phys, ok, err := v.fd.Translate(linear); err == nil && ok {
		// x86 instructions are at most 15 bytes long.
		b := make([]byte, 15)
		if v.mem.ReadAt(b, memory.GuestAddr(phys)) == nil {
			msg += fmt.Sprintf(", instruction bytes % x", b)
		}
	}
	return fmt.Errorf("%w at %s", cause, msg)
}
