package kvm

// Regs is struct kvm_regs: the general-purpose registers, RIP and RFLAGS
// (<asm/kvm.h>; 144 bytes).
type Regs struct {
	RAX, RBX, RCX, RDX uint64
	RSI, RDI, RSP, RBP uint64
	R8, R9, R10, R11   uint64
	R12, R13, R14, R15 uint64
	RIP, RFLAGS        uint64
}

// Segment is struct kvm_segment: a segment register with its hidden
// descriptor cache, unpacked (24 bytes).
type Segment struct {
	Base     uint64
	Limit    uint32
	Selector uint16
	Type     uint8 // descriptor type field, e.g. 0xb: execute/read, accessed
	Present  uint8
	DPL      uint8
	DB       uint8 // default operation size: 1 for 32-bit segments
	S        uint8 // 1 for code and data, 0 for system segments
	L        uint8 // 1 for a 64-bit code segment
	G        uint8 // limit in 4 KiB units
	AVL      uint8
	Unusable uint8
	_        uint8
}

// DTable is struct kvm_dtable: the GDTR or IDTR (16 bytes).
type DTable struct {
	Base  uint64
	Limit uint16
	_     [3]uint16
}

// Sregs is struct kvm_sregs: segment, descriptor-table and control
// registers, EFER, the APIC base and the pending-interrupt bitmap
// (312 bytes).
type Sregs struct {
	CS, DS, ES, FS, GS, SS Segment
	TR, LDT                Segment
	GDT, IDT               DTable
	CR0, CR2, CR3, CR4     uint64
	CR8                    uint64
	EFER                   uint64
	APICBase               uint64
	// InterruptBitmap has one bit per vector (KVM_NR_INTERRUPTS = 256)
	// for an interrupt pending injection.
	InterruptBitmap [4]uint64
}

// FPU is struct kvm_fpu: x87 and SSE state in FXSAVE layout (416 bytes).
// KVM_GET_FPU and KVM_SET_FPU transfer the x87 registers and XMM0-15 but
// not MXCSR: the kernel neither fills nor reads that field.
type FPU struct {
	FPR        [8][16]uint8
	FCW        uint16
	FSW        uint16
	FTWX       uint8 // abridged tag word, as FXSAVE stores it
	_          uint8
	LastOpcode uint16
	LastIP     uint64
	LastDP     uint64
	XMM        [16][16]uint8
	MXCSR      uint32
	_          uint32
}

// translation is struct kvm_translation, KVM_TRANSLATE's argument
// (24 bytes).
type translation struct {
	LinearAddress   uint64
	PhysicalAddress uint64
	Valid           uint8
	Writeable       uint8
	Usermode        uint8
	_               [5]uint8
}
