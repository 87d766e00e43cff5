package vcpu

import (
	"fmt"

	"github.com/vmm-dev/vmm/boot"
	"github.com/vmm-dev/vmm/kvm"
)

// Architectural MSRs we give known values at reset. Intel SDM vol. 4.
const (
	msrSysenterCS   = 0x174
	msrSysenterESP  = 0x175
	msrSysenterEIP  = 0x176
	msrSTAR         = 0xc000_0081
	msrLSTAR        = 0xc000_0082
	msrCSTAR        = 0xc000_0083
	msrSyscallMask  = 0xc000_0084
	msrKernelGSBase = 0xc000_0102
	msrTSC          = 0x10
	msrMiscEnable   = 0x1a0
	msrMTRRDefType  = 0x2ff

	miscEnableFastString = 1 << 0
	// MTRRs enabled, default memory type write-back: without this Linux
	// maps all RAM uncached and boots many times slower.
	mtrrDefEnableWB = 1<<11 | 6
)

// Local APIC registers and LVT delivery modes. Intel SDM vol. 3A §11.5.
const (
	apicLVT0        = 0x350
	apicLVT1        = 0x360
	apicDeliveryMsk = 0x700
	apicModeExtINT  = 0x700
	apicModeNMI     = 0x400
	apicLVTMasked   = 1 << 16
)

func bootMSRs() []kvm.MSREntry {
	return []kvm.MSREntry{
		{Index: msrSysenterCS}, {Index: msrSysenterESP}, {Index: msrSysenterEIP},
		{Index: msrSTAR}, {Index: msrLSTAR}, {Index: msrCSTAR},
		{Index: msrSyscallMask}, {Index: msrKernelGSBase}, {Index: msrTSC},
		{Index: msrMiscEnable, Data: miscEnableFastString},
		{Index: msrMTRRDefType, Data: mtrrDefEnableWB},
	}
}

// configureCommon sets what every vCPU needs before it first runs,
// whether it starts at the kernel entry (the BSP) or waits for a SIPI.
func configureCommon(c *kvm.VCPU, cpuid []kvm.CPUIDEntry) error {
	bsp := c.ID() == 0
	if err := c.SetCPUID2(cpuid); err != nil {
		return err
	}
	if err := c.SetMSRs(bootMSRs()); err != nil {
		return err
	}
	// x87 control word and MXCSR at their reset values (all exceptions
	// masked), as firmware leaves them.
	if err := c.SetFPU(kvm.FPU{FCW: 0x37f, MXCSR: 0x1f80}); err != nil {
		return err
	}
	// The wiring of a PC (MP spec §5.1, virtual wire mode): the legacy
	// PIC's output reaches the boot CPU's LINT0 as ExtINT, and is masked
	// on the others so that only one CPU ever acknowledges the PIC;
	// LINT1 carries NMIs to every CPU.
	lapic, err := c.LAPIC()
	if err != nil {
		return err
	}
	lint0 := lapic.Reg(apicLVT0)&^apicDeliveryMsk | apicModeExtINT
	if bsp {
		lint0 &^= apicLVTMasked
	} else {
		lint0 |= apicLVTMasked
	}
	lapic.SetReg(apicLVT0, lint0)
	lapic.SetReg(apicLVT1, lapic.Reg(apicLVT1)&^apicDeliveryMsk|apicModeNMI)
	return c.SetLAPIC(lapic)
}

// configureBoot loads the register state the boot protocol asks for at the
// kernel entry point.
func configureBoot(c *kvm.VCPU, st *boot.CPUState) error {
	sregs, err := c.Sregs()
	if err != nil {
		return err
	}
	data := segment(st.Data)
	sregs.CS = segment(st.Code)
	sregs.TR = segment(st.TSS)
	sregs.DS, sregs.ES, sregs.FS, sregs.GS, sregs.SS = data, data, data, data, data
	sregs.GDT = kvm.DTable{Base: st.GDTBase, Limit: st.GDTLimit}
	sregs.IDT = kvm.DTable{}
	sregs.CR0, sregs.CR3, sregs.CR4, sregs.EFER = st.CR0, st.CR3, st.CR4, st.EFER
	if err := c.SetSregs(sregs); err != nil {
		return err
	}
	regs := kvm.Regs{RFLAGS: st.RFLAGS, RIP: st.RIP, RSI: st.RSI, RBX: st.RBX, RSP: st.RSP, RBP: st.RSP}
	if err := c.SetRegs(regs); err != nil {
		return fmt.Errorf("boot registers: %w", err)
	}
	return nil
}

func segment(d boot.Segment) kvm.Segment {
	return kvm.Segment{
		Base: d.Base, Limit: d.Limit, Selector: d.Selector, Type: d.Type,
		Present: b2u(d.Present), DPL: d.DPL, DB: b2u(d.DB), S: b2u(d.S),
		L: b2u(d.L), G: b2u(d.G), AVL: b2u(d.AVL),
	}
}

func b2u(b bool) uint8 {
	if b {
		return 1
	}
	return 0
}
