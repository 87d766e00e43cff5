package kvm

import (
	"errors"
	"fmt"
	"slices"
)

// The state ioctls a snapshot needs: everything KVM keeps of a vCPU or a
// VM beyond guest RAM (api.rst §4, each named below). The structs mirror
// <asm/kvm.h>; layout_unsafe_test.go checks their sizes.

// State ioctl request numbers.
const (
	kvmGetDirtyLog    = ioWrite | sizeofDirtyLog<<iocSizeShift | 0x42
	kvmGetIRQChip     = ioReadWrite | sizeofIRQChip<<iocSizeShift | 0x62
	kvmSetIRQChip     = ioRead | sizeofIRQChip<<iocSizeShift | 0x63 // _IOR, as the header has it
	kvmSetClock       = ioWrite | sizeofClockData<<iocSizeShift | 0x7b
	kvmGetClock       = ioRead | sizeofClockData<<iocSizeShift | 0x7c
	kvmGetPIT2        = ioRead | sizeofPITState2<<iocSizeShift | 0x9f
	kvmSetPIT2        = ioWrite | sizeofPITState2<<iocSizeShift | 0xa0
	kvmGetVCPUEvents  = ioRead | sizeofVCPUEvents<<iocSizeShift | 0x9f
	kvmSetVCPUEvents  = ioWrite | sizeofVCPUEvents<<iocSizeShift | 0xa0
	kvmGetDebugRegs   = ioRead | sizeofDebugRegs<<iocSizeShift | 0xa1
	kvmSetDebugRegs   = ioWrite | sizeofDebugRegs<<iocSizeShift | 0xa2
	kvmGetXSave       = ioRead | sizeofXSave<<iocSizeShift | 0xa4
	kvmSetXSave       = ioWrite | sizeofXSave<<iocSizeShift | 0xa5
	kvmGetXCRs        = ioRead | sizeofXCRs<<iocSizeShift | 0xa6
	kvmSetXCRs        = ioWrite | sizeofXCRs<<iocSizeShift | 0xa7
	kvmKVMClockCtrl   = ioNone | 0xad
	kvmGetXSave2      = ioRead | sizeofXSave<<iocSizeShift | 0xcf
	sizeofDirtyLog    = 16
	sizeofIRQChip     = 520
	sizeofClockData   = 48
	sizeofPITState2   = 112
	sizeofPITChannel  = 24
	sizeofVCPUEvents  = 64
	sizeofDebugRegs   = 128
	sizeofXSave       = 4096 // struct kvm_xsave without XSAVE2's extra bytes
	sizeofXCRs        = 392
	sizeofPICState    = 16
	sizeofIOAPICState = 216
)

// DebugRegs is struct kvm_debugregs: DR0-DR3, DR6 and DR7 (128 bytes).
type DebugRegs struct {
	DB       [4]uint64
	DR6, DR7 uint64
	Flags    uint64
	_        [9]uint64
}

// XCR is struct kvm_xcr: one extended control register.
type XCR struct {
	XCR   uint32
	_     uint32
	Value uint64
}

// XCRs is struct kvm_xcrs: XCR0 and any other extended control registers
// (392 bytes).
type XCRs struct {
	NrXCRs uint32
	Flags  uint32
	XCRs   [16]XCR
	_      [16]uint64
}

// VCPUEvents is struct kvm_vcpu_events: exceptions, interrupts and NMIs
// pending or being injected, the interrupt shadow, SMM state (64 bytes).
// KVM_GET_VCPU_EVENTS sets Flags to the fields it filled; the same value
// passed back to KVM_SET_VCPU_EVENTS restores exactly those.
type VCPUEvents struct {
	Exception struct {
		Injected, Nr, HasErrorCode, Pending uint8
		ErrorCode                           uint32
	}
	Interrupt struct {
		Injected, Nr, Soft, Shadow uint8
	}
	NMI struct {
		Injected, Pending, Masked, Pad uint8
	}
	SIPIVector uint32
	Flags      uint32
	SMI        struct {
		SMM, Pending, SMMInsideNMI, LatchedInit uint8
	}
	TripleFault         uint8
	Reserved            [26]uint8
	ExceptionHasPayload uint8
	ExceptionPayload    uint64
}

// PITChannelState is struct kvm_pit_channel_state (24 bytes).
type PITChannelState struct {
	Count                               uint32
	LatchedCount                        uint16
	CountLatched, StatusLatched, Status uint8
	ReadState, WriteState, WriteLatch   uint8
	RWMode, Mode, BCD, Gate             uint8
	CountLoadTime                       int64
}

// PITState2 is struct kvm_pit_state2: the in-kernel i8254 (112 bytes).
type PITState2 struct {
	Channels [3]PITChannelState
	Flags    uint32
	_        [9]uint32
}

// ClockData is struct kvm_clock_data: the VM's kvmclock (48 bytes).
type ClockData struct {
	Clock    uint64
	Flags    uint32
	_        uint32
	Realtime uint64
	HostTSC  uint64
	_        [4]uint32
}

func (c IRQChip) String() string {
	switch c {
	case IRQChipPICMaster:
		return "PIC master"
	case IRQChipPICSlave:
		return "PIC slave"
	case IRQChipIOAPIC:
		return "IOAPIC"
	}
	return fmt.Sprintf("irqchip %d", uint32(c))
}

// IRQChipState is struct kvm_irqchip: the id and the raw state of one
// controller (struct kvm_pic_state or struct kvm_ioapic_state in the
// first bytes of Data) (520 bytes).
type IRQChipState struct {
	ChipID IRQChip
	_      uint32
	Data   [512]byte
}

// dirtyLog is struct kvm_dirty_log (16 bytes).
type dirtyLog struct {
	Slot   uint32
	_      uint32
	Bitmap uint64 // user address of the bitmap
}

// DebugRegs returns KVM_GET_DEBUGREGS.
func (c *VCPU) DebugRegs() (DebugRegs, error) {
	var d DebugRegs
	_, err := ioctlStruct(c.h, "KVM_GET_DEBUGREGS", kvmGetDebugRegs, &d)
	return d, err
}

// SetDebugRegs issues KVM_SET_DEBUGREGS.
func (c *VCPU) SetDebugRegs(d DebugRegs) error {
	_, err := ioctlStruct(c.h, "KVM_SET_DEBUGREGS", kvmSetDebugRegs, &d)
	return err
}

// XCRs returns KVM_GET_XCRS (needs CapXCRs).
func (c *VCPU) XCRs() (XCRs, error) {
	var x XCRs
	_, err := ioctlStruct(c.h, "KVM_GET_XCRS", kvmGetXCRs, &x)
	return x, err
}

// SetXCRs issues KVM_SET_XCRS.
func (c *VCPU) SetXCRs(x XCRs) error {
	_, err := ioctlStruct(c.h, "KVM_SET_XCRS", kvmSetXCRs, &x)
	return err
}

// VCPUEvents returns KVM_GET_VCPU_EVENTS (needs CapVCPUEvents).
func (c *VCPU) VCPUEvents() (VCPUEvents, error) {
	var e VCPUEvents
	_, err := ioctlStruct(c.h, "KVM_GET_VCPU_EVENTS", kvmGetVCPUEvents, &e)
	return e, err
}

// SetVCPUEvents issues KVM_SET_VCPU_EVENTS.
func (c *VCPU) SetVCPUEvents(e VCPUEvents) error {
	_, err := ioctlStruct(c.h, "KVM_SET_VCPU_EVENTS", kvmSetVCPUEvents, &e)
	return err
}

// XSave returns the vCPU's XSAVE area: size bytes, the VM's XSaveSize.
// Above 4096 bytes it needs KVM_GET_XSAVE2 (api.rst 4.42): the larger
// area holds dynamically enabled features such as AMX tiles.
func (c *VCPU) XSave(size int) ([]byte, error) {
	if size < sizeofXSave {
		return nil, fmt.Errorf("%s: KVM_GET_XSAVE: %w: size %d below %d", c.h.what, ErrInvalidArg, size, sizeofXSave)
	}
	buf := make([]byte, size)
	name, req := "KVM_GET_XSAVE", uintptr(kvmGetXSave)
	if size > sizeofXSave {
		name, req = "KVM_GET_XSAVE2", kvmGetXSave2
	}
	_, err := ioctlStruct(c.h, name, req, &buf[0])
	return buf, err
}

// SetXSave issues KVM_SET_XSAVE with an area XSave returned. The kernel
// reads as many bytes as the VM's XSAVE2 size says.
func (c *VCPU) SetXSave(area []byte) error {
	if len(area) < sizeofXSave {
		return fmt.Errorf("%s: KVM_SET_XSAVE: %w: %d bytes, want at least %d", c.h.what, ErrInvalidArg, len(area), sizeofXSave)
	}
	_, err := ioctlStruct(c.h, "KVM_SET_XSAVE", kvmSetXSave, &area[0])
	return err
}

// KVMClockCtrl issues KVM_KVMCLOCK_CTRL: it tells the guest, through the
// kvmclock page, that the host paused it, so the guest's soft-lockup
// watchdog does not fire for the time it did not run (api.rst 4.67).
// EINVAL means the guest never enabled kvmclock; callers may ignore it.
func (c *VCPU) KVMClockCtrl() error {
	_, err := ioctlArg(c.h, "KVM_KVMCLOCK_CTRL", kvmKVMClockCtrl, 0)
	return err
}

// MSRsReadable returns the values of those of indices KVM reads: an MSR
// the host lists but this vCPU refuses (its CPUID lacks the feature) is
// left out instead of failing the whole read, as KVM_GET_MSRS stops at
// the first refusal.
func (c *VCPU) MSRsReadable(indices []uint32) ([]MSREntry, error) {
	var out []MSREntry
	rest := slices.Clone(indices)
	for len(rest) > 0 {
		got, err := c.MSRs(rest)
		if err == nil {
			return append(out, got...), nil
		}
		if !errors.Is(err, ErrMSR) {
			return nil, err
		}
		// Read the prefix the kernel accepted, drop the refused one.
		n := 0
		for n < len(rest) {
			if _, err := c.MSRs(rest[n : n+1]); err != nil {
				if !errors.Is(err, ErrMSR) {
					return nil, err
				}
				break
			}
			n++
		}
		if n > 0 {
			got, err := c.MSRs(rest[:n])
			if err != nil {
				return nil, err
			}
			out = append(out, got...)
		}
		rest = rest[min(n+1, len(rest)):]
	}
	return out, nil
}

// XSaveSize returns the size of a vCPU's XSAVE area on this VM:
// KVM_CHECK_EXTENSION(KVM_CAP_XSAVE2) where the kernel has it (api.rst
// 4.42, KVM_GET_XSAVE2), otherwise struct kvm_xsave's 4096 bytes.
func (vm *VM) XSaveSize() (int, error) {
	n, err := vm.CheckExtension(CapXSave2)
	if err != nil || n <= sizeofXSave {
		return sizeofXSave, nil //nolint:nilerr // an old kernel without the VM query: the fixed size is right
	}
	return n, nil
}

// PIT2 returns KVM_GET_PIT2.
func (vm *VM) PIT2() (PITState2, error) {
	var s PITState2
	_, err := ioctlStruct(vm.h, "KVM_GET_PIT2", kvmGetPIT2, &s)
	return s, err
}

// SetPIT2 issues KVM_SET_PIT2.
func (vm *VM) SetPIT2(s PITState2) error {
	_, err := ioctlStruct(vm.h, "KVM_SET_PIT2", kvmSetPIT2, &s)
	return err
}

// Clock returns KVM_GET_CLOCK: the guest's kvmclock in nanoseconds.
func (vm *VM) Clock() (ClockData, error) {
	var d ClockData
	_, err := ioctlStruct(vm.h, "KVM_GET_CLOCK", kvmGetClock, &d)
	return d, err
}

// SetClock issues KVM_SET_CLOCK. The flags KVM_GET_CLOCK reported
// (KVM_CLOCK_TSC_STABLE and the realtime/host_tsc validity bits) must be
// cleared, or the kernel reinterprets the clock against a host time
// stamp of another boot (api.rst 4.56).
func (vm *VM) SetClock(d ClockData) error {
	_, err := ioctlStruct(vm.h, "KVM_SET_CLOCK", kvmSetClock, &d)
	return err
}

// IRQChip returns KVM_GET_IRQCHIP for one controller.
func (vm *VM) IRQChip(chip IRQChip) (IRQChipState, error) {
	s := IRQChipState{ChipID: chip}
	_, err := ioctlStruct(vm.h, "KVM_GET_IRQCHIP "+chip.String(), kvmGetIRQChip, &s)
	return s, err
}

// SetIRQChip issues KVM_SET_IRQCHIP with a state IRQChip returned.
func (vm *VM) SetIRQChip(s IRQChipState) error {
	_, err := ioctlStruct(vm.h, "KVM_SET_IRQCHIP "+s.ChipID.String(), kvmSetIRQChip, &s)
	return err
}

// DirtyLog issues KVM_GET_DIRTY_LOG for a slot created with
// MemLogDirtyPages and size bytes: one bit per 4 KiB page written since
// the last call, which the call also clears (api.rst 4.8).
func (vm *VM) DirtyLog(slot uint32, size uint64) ([]uint64, error) {
	pages := (size + 4095) / 4096
	bitmap := make([]uint64, (pages+63)/64)
	if len(bitmap) == 0 {
		return bitmap, nil
	}
	d := dirtyLog{Slot: slot, Bitmap: sliceAddr(bitmap)}
	_, err := ioctlStruct(vm.h, fmt.Sprintf("KVM_GET_DIRTY_LOG slot %d", slot), kvmGetDirtyLog, &d)
	keepAlive(bitmap)
	return bitmap, err
}
