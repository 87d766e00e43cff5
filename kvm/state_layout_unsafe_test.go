package kvm

import (
	"testing"
	"unsafe"

	"github.com/stretchr/testify/assert"
)

// Why unsafe: as layout_unsafe_test.go, for the state structs of
// state.go; the numbers are sizeof/offsetof from <asm/kvm.h>.
func TestStateStructLayout(t *testing.T) {
	var (
		ev  VCPUEvents
		pit PITState2
		ch  PITChannelState
		clk ClockData
		irq IRQChipState
		x   XCRs
		dl  dirtyLog
	)
	sizes := []struct {
		name      string
		got, want uintptr
		enc       uintptr
	}{
		{"kvm_debugregs", unsafe.Sizeof(DebugRegs{}), 128, sizeofDebugRegs},
		{"kvm_xcrs", unsafe.Sizeof(XCRs{}), 392, sizeofXCRs},
		{"kvm_vcpu_events", unsafe.Sizeof(VCPUEvents{}), 64, sizeofVCPUEvents},
		{"kvm_pit_channel_state", unsafe.Sizeof(PITChannelState{}), 24, sizeofPITChannel},
		{"kvm_pit_state2", unsafe.Sizeof(PITState2{}), 112, sizeofPITState2},
		{"kvm_clock_data", unsafe.Sizeof(ClockData{}), 48, sizeofClockData},
		{"kvm_irqchip", unsafe.Sizeof(IRQChipState{}), 520, sizeofIRQChip},
		{"kvm_dirty_log", unsafe.Sizeof(dirtyLog{}), 16, sizeofDirtyLog},
	}
	for _, tt := range sizes {
		assert.Equal(t, tt.want, tt.got, "sizeof(struct %s)", tt.name)
		assert.Equal(t, tt.want, tt.enc, "size constant for struct %s", tt.name)
	}
	offsets := []struct {
		name      string
		got, want uintptr
	}{
		{"kvm_vcpu_events.interrupt", unsafe.Offsetof(ev.Interrupt), 8},
		{"kvm_vcpu_events.nmi", unsafe.Offsetof(ev.NMI), 12},
		{"kvm_vcpu_events.sipi_vector", unsafe.Offsetof(ev.SIPIVector), 16},
		{"kvm_vcpu_events.flags", unsafe.Offsetof(ev.Flags), 20},
		{"kvm_vcpu_events.smi", unsafe.Offsetof(ev.SMI), 24},
		{"kvm_vcpu_events.triple_fault", unsafe.Offsetof(ev.TripleFault), 28},
		{"kvm_vcpu_events.exception_has_payload", unsafe.Offsetof(ev.ExceptionHasPayload), 55},
		{"kvm_vcpu_events.exception_payload", unsafe.Offsetof(ev.ExceptionPayload), 56},
		{"kvm_pit_channel_state.gate", unsafe.Offsetof(ch.Gate), 15},
		{"kvm_pit_channel_state.count_load_time", unsafe.Offsetof(ch.CountLoadTime), 16},
		{"kvm_pit_state2.flags", unsafe.Offsetof(pit.Flags), 72},
		{"kvm_clock_data.flags", unsafe.Offsetof(clk.Flags), 8},
		{"kvm_clock_data.realtime", unsafe.Offsetof(clk.Realtime), 16},
		{"kvm_clock_data.host_tsc", unsafe.Offsetof(clk.HostTSC), 24},
		{"kvm_irqchip.chip", unsafe.Offsetof(irq.Data), 8},
		{"kvm_xcrs.xcrs", unsafe.Offsetof(x.XCRs), 8},
		{"kvm_dirty_log.dirty_bitmap", unsafe.Offsetof(dl.Bitmap), 8},
	}
	for _, tt := range offsets {
		assert.Equal(t, tt.want, tt.got, "offsetof(%s)", tt.name)
	}
	// The ioctl numbers as the uapi headers expand them.
	numbers := []struct {
		name      string
		got, want uintptr
	}{
		{"KVM_GET_VCPU_EVENTS", kvmGetVCPUEvents, 0x8040ae9f},
		{"KVM_SET_VCPU_EVENTS", kvmSetVCPUEvents, 0x4040aea0},
		{"KVM_GET_DEBUGREGS", kvmGetDebugRegs, 0x8080aea1},
		{"KVM_GET_XSAVE", kvmGetXSave, 0x9000aea4},
		{"KVM_SET_XSAVE", kvmSetXSave, 0x5000aea5},
		{"KVM_GET_XSAVE2", kvmGetXSave2, 0x9000aecf},
		{"KVM_GET_XCRS", kvmGetXCRs, 0x8188aea6},
		{"KVM_GET_PIT2", kvmGetPIT2, 0x8070ae9f},
		{"KVM_SET_PIT2", kvmSetPIT2, 0x4070aea0},
		{"KVM_GET_CLOCK", kvmGetClock, 0x8030ae7c},
		{"KVM_SET_CLOCK", kvmSetClock, 0x4030ae7b},
		{"KVM_GET_IRQCHIP", kvmGetIRQChip, 0xc208ae62},
		{"KVM_SET_IRQCHIP", kvmSetIRQChip, 0x8208ae63},
		{"KVM_GET_DIRTY_LOG", kvmGetDirtyLog, 0x4010ae42},
		{"KVM_KVMCLOCK_CTRL", kvmKVMClockCtrl, 0xaead},
	}
	for _, tt := range numbers {
		assert.Equal(t, tt.want, tt.got, "%s", tt.name)
	}
}
