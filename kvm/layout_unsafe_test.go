package kvm

import (
	"testing"
	"unsafe"

	"github.com/stretchr/testify/assert"
)

// Why unsafe: the Go structs are handed to the kernel by address, so their
// sizes and field offsets must match the uapi's C layout exactly. The
// expected numbers are sizeof/offsetof from <linux/kvm.h> and <asm/kvm.h>.

func TestStructSizes(t *testing.T) {
	tests := []struct {
		name string
		got  uintptr
		want uintptr
		enc  uintptr // the size this package encodes into ioctl numbers
	}{
		{"kvm_regs", unsafe.Sizeof(Regs{}), 144, sizeofRegs},
		{"kvm_sregs", unsafe.Sizeof(Sregs{}), 312, sizeofSregs},
		{"kvm_segment", unsafe.Sizeof(Segment{}), 24, sizeofSegment},
		{"kvm_dtable", unsafe.Sizeof(DTable{}), 16, sizeofDTable},
		{"kvm_fpu", unsafe.Sizeof(FPU{}), 416, sizeofFPU},
		{"kvm_userspace_memory_region", unsafe.Sizeof(UserspaceMemoryRegion{}), 32, sizeofUserspaceMemoryRegion},
		{"kvm_cpuid_entry2", unsafe.Sizeof(CPUIDEntry{}), 40, sizeofCPUIDEntry},
		{"kvm_msr_entry", unsafe.Sizeof(MSREntry{}), 16, sizeofMSREntry},
		{"kvm_lapic_state", unsafe.Sizeof(LAPICState{}), 1024, sizeofLAPICState},
		{"kvm_irqfd", unsafe.Sizeof(irqFD{}), 32, sizeofIRQFD},
		{"kvm_irq_routing_entry", unsafe.Sizeof(routingEntry{}), 48, sizeofRoutingEntry},
		{"kvm_msi", unsafe.Sizeof(msi{}), 32, sizeofMSI},
		{"kvm_ioeventfd", unsafe.Sizeof(ioEventFD{}), 64, sizeofIOEventFD},
		{"kvm_mp_state", unsafe.Sizeof(MPState(0)), 4, sizeofMPState},
		{"kvm_irq_level", unsafe.Sizeof(irqLevel{}), 8, sizeofIRQLevel},
		{"kvm_pit_config", unsafe.Sizeof(pitConfig{}), 64, sizeofPITConfig},
		{"kvm_translation", unsafe.Sizeof(translation{}), 24, sizeofTranslation},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, tt.got, "sizeof(struct %s)", tt.name)
		assert.Equal(t, tt.want, tt.enc, "size constant for struct %s", tt.name)
	}
	// Headers of the variable-length structs, encoded by hand.
	assert.EqualValues(t, 8, sizeofCPUID2, "struct kvm_cpuid2 header")
	assert.EqualValues(t, 8, sizeofMSRs, "struct kvm_msrs header")
	assert.EqualValues(t, 4, sizeofMSRList, "struct kvm_msr_list header")
	assert.EqualValues(t, 8, sizeofIRQRouting, "struct kvm_irq_routing header")
	assert.Len(t, encodeRouting(make([]RoutingEntry, 3)), 8+3*48, "encoded kvm_irq_routing")
	assert.EqualValues(t, 2352, sizeofRun, "struct kvm_run")
}

func TestFieldOffsets(t *testing.T) {
	var (
		r   Regs
		s   Sregs
		seg Segment
		dt  DTable
		f   FPU
		m   UserspaceMemoryRegion
		c   CPUIDEntry
		e   MSREntry
		irq irqFD
		io  ioEventFD
		tr  translation
		lvl irqLevel
	)
	tests := []struct {
		name string
		got  uintptr
		want uintptr
	}{
		{"kvm_regs.rip", unsafe.Offsetof(r.RIP), 128},
		{"kvm_regs.rflags", unsafe.Offsetof(r.RFLAGS), 136},
		{"kvm_segment.limit", unsafe.Offsetof(seg.Limit), 8},
		{"kvm_segment.selector", unsafe.Offsetof(seg.Selector), 12},
		{"kvm_segment.type", unsafe.Offsetof(seg.Type), 14},
		{"kvm_segment.present", unsafe.Offsetof(seg.Present), 15},
		{"kvm_segment.l", unsafe.Offsetof(seg.L), 19},
		{"kvm_segment.unusable", unsafe.Offsetof(seg.Unusable), 22},
		{"kvm_dtable.limit", unsafe.Offsetof(dt.Limit), 8},
		{"kvm_sregs.ldt", unsafe.Offsetof(s.LDT), 168},
		{"kvm_sregs.gdt", unsafe.Offsetof(s.GDT), 192},
		{"kvm_sregs.idt", unsafe.Offsetof(s.IDT), 208},
		{"kvm_sregs.cr0", unsafe.Offsetof(s.CR0), 224},
		{"kvm_sregs.efer", unsafe.Offsetof(s.EFER), 264},
		{"kvm_sregs.apic_base", unsafe.Offsetof(s.APICBase), 272},
		{"kvm_sregs.interrupt_bitmap", unsafe.Offsetof(s.InterruptBitmap), 280},
		{"kvm_fpu.fcw", unsafe.Offsetof(f.FCW), 128},
		{"kvm_fpu.last_opcode", unsafe.Offsetof(f.LastOpcode), 134},
		{"kvm_fpu.last_ip", unsafe.Offsetof(f.LastIP), 136},
		{"kvm_fpu.xmm", unsafe.Offsetof(f.XMM), 152},
		{"kvm_fpu.mxcsr", unsafe.Offsetof(f.MXCSR), 408},
		{"kvm_userspace_memory_region.guest_phys_addr", unsafe.Offsetof(m.GuestPhysAddr), 8},
		{"kvm_userspace_memory_region.userspace_addr", unsafe.Offsetof(m.UserspaceAddr), 24},
		{"kvm_cpuid_entry2.eax", unsafe.Offsetof(c.EAX), 12},
		{"kvm_cpuid_entry2.edx", unsafe.Offsetof(c.EDX), 24},
		{"kvm_msr_entry.data", unsafe.Offsetof(e.Data), 8},
		{"kvm_irqfd.flags", unsafe.Offsetof(irq.Flags), 8},
		{"kvm_irqfd.resamplefd", unsafe.Offsetof(irq.ResampleFD), 12},
		{"kvm_ioeventfd.addr", unsafe.Offsetof(io.Addr), 8},
		{"kvm_ioeventfd.len", unsafe.Offsetof(io.Len), 16},
		{"kvm_ioeventfd.fd", unsafe.Offsetof(io.FD), 20},
		{"kvm_ioeventfd.flags", unsafe.Offsetof(io.Flags), 24},
		{"kvm_translation.valid", unsafe.Offsetof(tr.Valid), 16},
		{"kvm_translation.usermode", unsafe.Offsetof(tr.Usermode), 18},
		{"kvm_irq_level.level", unsafe.Offsetof(lvl.Level), 4},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, tt.got, "offsetof(%s)", tt.name)
	}
}
