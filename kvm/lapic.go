package kvm

import "encoding/binary"

// LAPICState is struct kvm_lapic_state: the local APIC's 1 KiB register
// page, each 32-bit register at its architectural offset (Intel SDM
// vol. 3 §11.4.1, table 11-1).
type LAPICState struct {
	Regs [1024]byte
}

// Offsets of local APIC registers in LAPICState.Regs.
const (
	LAPICID       = 0x020
	LAPICVersion  = 0x030
	LAPICTPR      = 0x080
	LAPICEOI      = 0x0b0
	LAPICLDR      = 0x0d0
	LAPICDFR      = 0x0e0
	LAPICSVR      = 0x0f0 // spurious-interrupt vector register
	LAPICESR      = 0x280
	LAPICICRLow   = 0x300
	LAPICICRHigh  = 0x310
	LAPICLVTTimer = 0x320
	LAPICLVTPerf  = 0x340
	LAPICLVT0     = 0x350 // LINT0
	LAPICLVT1     = 0x360 // LINT1
	LAPICLVTError = 0x370
	LAPICTimerICR = 0x380 // initial count
	LAPICTimerCCR = 0x390 // current count
	LAPICTimerDCR = 0x3e0 // divide configuration
)

// Delivery modes for the LVT registers (bits 8-10).
const (
	LAPICDeliveryFixed  = 0b000 << 8
	LAPICDeliveryNMI    = 0b100 << 8
	LAPICDeliveryExtINT = 0b111 << 8
)

// Reg returns the 32-bit register at off, a multiple of 4 below 1024 (one
// of the LAPIC* offsets). Like slice indexing it panics otherwise: the
// offset comes from the program, not from the guest.
func (s *LAPICState) Reg(off int) uint32 {
	return binary.LittleEndian.Uint32(s.Regs[off : off+4])
}

// SetReg sets the 32-bit register at off (see Reg).
func (s *LAPICState) SetReg(off int, v uint32) {
	binary.LittleEndian.PutUint32(s.Regs[off:off+4], v)
}
