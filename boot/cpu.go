package boot

import (
	"fmt"

	"github.com/vmm-dev/vmm/memory"
)

// Mode is the processor mode the kernel is entered in.
type Mode int

const (
	// ModeLong64 is the 64-bit boot protocol (boot.rst "64-bit Boot
	// Protocol"): long mode, identity paging, RSI = zero page.
	ModeLong64 Mode = iota + 1
	// ModeProtected32 is the PVH entry (Xen docs/misc/pvh.pandoc): 32-bit
	// protected mode, paging off, EBX = hvm_start_info.
	ModeProtected32
)

func (m Mode) String() string {
	switch m {
	case ModeLong64:
		return "long64"
	case ModeProtected32:
		return "protected32"
	}
	return fmt.Sprintf("Mode(%d)", int(m))
}

// Segment is one segment register's hidden state, field for field what
// KVM's struct kvm_segment holds, so vcpu copies it without decoding
// descriptors. Limit is in bytes (0xffffffff for a flat 4 GiB segment with
// G set), as KVM expects it.
type Segment struct {
	Selector uint16
	Base     uint64
	Limit    uint32
	Type     uint8 // descriptor type field (SDM Vol. 3 §3.4.5.1)
	S        bool  // code/data (true) or system (false) descriptor
	DPL      uint8
	Present  bool
	DB       bool // default operation size 32-bit
	L        bool // 64-bit code segment
	G        bool // limit in 4 KiB units
	AVL      bool
}

// Segment types (SDM Vol. 3 Table 3-1 and Table 3-2), all with the
// accessed bit set so the CPU never writes the GDT back.
const (
	segTypeCodeExecRead  = 0xb
	segTypeDataReadWrite = 0x3
	segTypeTSSBusy       = 0xb
)

// Control register and EFER bits (SDM Vol. 3 §2.5, §2.2.1).
const (
	cr0PE   = 1 << 0
	cr0ET   = 1 << 4
	cr0NE   = 1 << 5
	cr0PG   = 1 << 31
	cr4PAE  = 1 << 5
	eferLME = 1 << 8
	eferLMA = 1 << 10

	rflagsReserved = 1 << 1 // bit 1 always reads 1; IF stays clear
)

// CPUState is the boot vCPU's initial register state. The vcpu package
// loads it as given; the segment registers other than CS take Data (DS, ES,
// FS, GS, SS) and TR takes TSS.
type CPUState struct {
	Mode Mode

	RIP    uint64
	RSI    uint64 // zero page (ModeLong64)
	RBX    uint64 // hvm_start_info (ModeProtected32)
	RSP    uint64
	RFLAGS uint64

	CR0, CR3, CR4, EFER uint64

	GDTBase  uint64
	GDTLimit uint16

	CodeSelector, DataSelector uint16
	Code, Data, TSS            Segment
}

// long64State is the 64-bit boot protocol's entry state: long mode with
// the identity page tables, CS = __BOOT_CS, DS/ES/SS = __BOOT_DS, RSI =
// the zero page, interrupts off (boot.rst "64-bit Boot Protocol").
func long64State(entry memory.GuestAddr) *CPUState {
	return &CPUState{
		Mode:         ModeLong64,
		RIP:          uint64(entry),
		RSI:          uint64(ZeroPageAddr),
		RSP:          uint64(BootStackPointer),
		RFLAGS:       rflagsReserved,
		CR0:          cr0PE | cr0ET | cr0NE | cr0PG,
		CR3:          uint64(PML4Addr),
		CR4:          cr4PAE,
		EFER:         eferLME | eferLMA,
		GDTBase:      uint64(GDTAddr),
		GDTLimit:     gdtLimit,
		CodeSelector: SelectorCode64,
		DataSelector: SelectorData,
		Code:         code64Segment,
		Data:         dataSegment,
		TSS:          tssSegment,
	}
}

// pvhState is the PVH entry state (Xen docs/misc/pvh.pandoc): 32-bit
// protected mode with paging off, flat 4 GiB code and data segments, a
// TSS in TR, EBX = hvm_start_info, CR4 and EFER clear.
func pvhState(entry memory.GuestAddr) *CPUState {
	return &CPUState{
		Mode:         ModeProtected32,
		RIP:          uint64(entry),
		RBX:          uint64(PVHStartInfoAddr),
		RSP:          uint64(BootStackPointer),
		RFLAGS:       rflagsReserved,
		CR0:          cr0PE | cr0ET,
		GDTBase:      uint64(GDTAddr),
		GDTLimit:     gdtLimit,
		CodeSelector: SelectorCode32,
		DataSelector: SelectorData,
		Code:         code32Segment,
		Data:         dataSegment,
		TSS:          tssSegment,
	}
}
