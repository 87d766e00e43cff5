package vcpu

import (
	"encoding/binary"
	"fmt"
	"strings"
	"time"

	"github.com/vmm-dev/vmm/kvm"
	"github.com/vmm-dev/vmm/memory"
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
	// Code is the 15 bytes at RIP, nil where RIP is not in guest RAM.
	Code []byte
	// StackText are the words on the guest's stack, from RSP up, that
	// look like addresses in a 64-bit kernel's text or modules (the top
	// 2 GiB): the return addresses of the functions the vCPU is in,
	// mixed with stale ones, as Linux's own unreliable stack dump
	// prints them. With /proc/modules from the same boot they name the
	// loop a guest spins in.
	StackText []uint64
	// ForeignCR3 is set when paging is on and CR3's top-level table is
	// not in guest RAM: no guest can run with that, so the registers KVM
	// returned are not the guest's. Seen in the nested sandbox, where the
	// "guest" state of a hung vCPU was level 1's own at its kvm-amd VMRUN
	// (tests/README.md, "Faults of the nested sandbox").
	ForeignCR3 bool
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
	if s.ForeignCR3 {
		b.WriteString(" (outside guest RAM: these registers are not the guest's; KVM, or the machine under it, lost them)")
	}
	if s.Code != nil {
		fmt.Fprintf(&b, "; code % x", s.Code)
	}
	if len(s.StackText) > 0 {
		b.WriteString("; stack text")
		for _, w := range s.StackText {
			fmt.Fprintf(&b, " %#x", w)
		}
	}
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
			s.ForeignCR3 = foreignCR3(v.mem, sregs.CR0, sregs.CR3)
			s.Code = v.instructionBytes(sregs.CS.Base + s.Regs.RIP)
			s.StackText = kernelTextWords(v.stackBytes(sregs.SS.Base+s.Regs.RSP), maxStackText)
		}
	}
	v.stop = &s
}

// StopState returns where the vCPU was when a stop ended Run; nil when Run
// ended otherwise or has not returned. Call it only after Run returned.
func (v *VCPU) StopState() *StopState { return v.stop }

// Stack scan bounds: how much of the stack is read, and how many words
// are kept.
const (
	stackScanBytes = 2048
	maxStackText   = 24
)

// kernelTextStart is the lowest address of x86-64 Linux's kernel text
// mapping and module area (Documentation/arch/x86/x86_64/mm.rst: the
// kernel at 0xffffffff80000000, modules above it).
const kernelTextStart = 0xffff_ffff_8000_0000

// stackBytes reads up to stackScanBytes of guest stack from the linear
// address sp, page by page, stopping where a page does not translate to
// guest RAM.
func (v *VCPU) stackBytes(sp uint64) []byte {
	var out []byte
	for len(out) < stackScanBytes {
		addr := sp + uint64(len(out))
		n := min(uint64(stackScanBytes-len(out)), pageSize-addr%pageSize)
		phys, ok, err := v.fd.Translate(addr)
		if err != nil || !ok {
			break
		}
		b := make([]byte, n)
		if v.mem.ReadAt(b, memory.GuestAddr(phys)) != nil {
			break
		}
		out = append(out, b...)
	}
	return out
}

const pageSize = 4096

// kernelTextWords returns, in stack order, up to max aligned
// little-endian words of b at or above kernelTextStart.
func kernelTextWords(b []byte, max int) []uint64 {
	var out []uint64
	for i := 0; i+8 <= len(b) && len(out) < max; i += 8 {
		if w := binary.LittleEndian.Uint64(b[i:]); w >= kernelTextStart && w != ^uint64(0) {
			out = append(out, w)
		}
	}
	return out
}

// cr0PG is CR0.PG, and cr3Base masks CR3 down to the physical address of
// the top-level page table (Intel SDM vol. 3A 4.5: bits 51:12; the low
// bits are flags or a PCID).
const (
	cr0PG   = 1 << 31
	cr3Base = 0x000f_ffff_ffff_f000
)

// foreignCR3 reports whether paging is on with a top-level page table
// outside guest RAM.
func foreignCR3(mem *memory.Memory, cr0, cr3 uint64) bool {
	return cr0&cr0PG != 0 && mem != nil && !mem.Contains(memory.GuestAddr(cr3&cr3Base), 4096)
}
