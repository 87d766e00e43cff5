package kvm

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

// iocNumber is the _IOC macro of <asm-generic/ioctl.h> for type KVMIO,
// written independently of the constants under test.
func iocNumber(dir, nr, size uintptr) uintptr {
	return dir<<30 | size<<16 | 0xAE<<8 | nr
}

func TestIoctlNumbers(t *testing.T) {
	const (
		none  = 0
		write = 1 // _IOW: userspace writes, the kernel reads
		read  = 2 // _IOR
		rw    = 3 // _IOWR
	)
	// literal: the value the C preprocessor gives for the uapi macro.
	tests := []struct {
		name          string
		got           uintptr
		dir, nr, size uintptr
		literal       uintptr
	}{
		{"KVM_GET_API_VERSION", kvmGetAPIVersion, none, 0x00, 0, 0xAE00},
		{"KVM_CREATE_VM", kvmCreateVM, none, 0x01, 0, 0xAE01},
		{"KVM_GET_MSR_INDEX_LIST", kvmGetMSRIndexList, rw, 0x02, 4, 0xC004AE02},
		{"KVM_CHECK_EXTENSION", kvmCheckExtension, none, 0x03, 0, 0xAE03},
		{"KVM_GET_VCPU_MMAP_SIZE", kvmGetVCPUMmapSize, none, 0x04, 0, 0xAE04},
		{"KVM_GET_SUPPORTED_CPUID", kvmGetSupportedCPUID, rw, 0x05, 8, 0xC008AE05},
		{"KVM_CREATE_VCPU", kvmCreateVCPU, none, 0x41, 0, 0xAE41},
		{"KVM_SET_USER_MEMORY_REGION", kvmSetUserMemoryRegion, write, 0x46, 32, 0x4020AE46},
		{"KVM_SET_TSS_ADDR", kvmSetTSSAddr, none, 0x47, 0, 0xAE47},
		{"KVM_SET_IDENTITY_MAP_ADDR", kvmSetIdentityMapAddr, write, 0x48, 8, 0x4008AE48},
		{"KVM_CREATE_IRQCHIP", kvmCreateIRQChip, none, 0x60, 0, 0xAE60},
		{"KVM_IRQ_LINE", kvmIRQLine, write, 0x61, 8, 0x4008AE61},
		{"KVM_SET_GSI_ROUTING", kvmSetGSIRouting, write, 0x6a, 8, 0x4008AE6A},
		{"KVM_IRQFD", kvmIRQFD, write, 0x76, 32, 0x4020AE76},
		{"KVM_SIGNAL_MSI", kvmSignalMSI, write, 0xa5, 32, 0x4020AEA5},
		{"KVM_CREATE_PIT2", kvmCreatePIT2, write, 0x77, 64, 0x4040AE77},
		{"KVM_IOEVENTFD", kvmIOEventFD, write, 0x79, 64, 0x4040AE79},
		{"KVM_RUN", kvmRun, none, 0x80, 0, 0xAE80},
		{"KVM_GET_REGS", kvmGetRegs, read, 0x81, 144, 0x8090AE81},
		{"KVM_SET_REGS", kvmSetRegs, write, 0x82, 144, 0x4090AE82},
		{"KVM_GET_SREGS", kvmGetSregs, read, 0x83, 312, 0x8138AE83},
		{"KVM_SET_SREGS", kvmSetSregs, write, 0x84, 312, 0x4138AE84},
		{"KVM_TRANSLATE", kvmTranslate, rw, 0x85, 24, 0xC018AE85},
		{"KVM_GET_MSRS", kvmGetMSRs, rw, 0x88, 8, 0xC008AE88},
		{"KVM_SET_MSRS", kvmSetMSRs, write, 0x89, 8, 0x4008AE89},
		{"KVM_GET_FPU", kvmGetFPU, read, 0x8c, 416, 0x81A0AE8C},
		{"KVM_SET_FPU", kvmSetFPU, write, 0x8d, 416, 0x41A0AE8D},
		{"KVM_GET_LAPIC", kvmGetLAPIC, read, 0x8e, 1024, 0x8400AE8E},
		{"KVM_SET_LAPIC", kvmSetLAPIC, write, 0x8f, 1024, 0x4400AE8F},
		{"KVM_SET_CPUID2", kvmSetCPUID2, write, 0x90, 8, 0x4008AE90},
		{"KVM_GET_MP_STATE", kvmGetMPState, read, 0x98, 4, 0x8004AE98},
		{"KVM_SET_MP_STATE", kvmSetMPState, write, 0x99, 4, 0x4004AE99},
	}
	for _, tt := range tests {
		assert.Equal(t, iocNumber(tt.dir, tt.nr, tt.size), tt.got, "%s from the _IOC formula", tt.name)
		assert.Equal(t, tt.literal, tt.got, "%s literal %#x", tt.name, tt.literal)
	}
}

func TestCapValues(t *testing.T) {
	// Values of KVM_CAP_* in <linux/kvm.h>.
	tests := []struct {
		c    Cap
		want int
		name string
	}{
		{CapIRQChip, 0, "KVM_CAP_IRQCHIP"},
		{CapUserMemory, 3, "KVM_CAP_USER_MEMORY"},
		{CapSetTSSAddr, 4, "KVM_CAP_SET_TSS_ADDR"},
		{CapExtCPUID, 7, "KVM_CAP_EXT_CPUID"},
		{CapNrVCPUs, 9, "KVM_CAP_NR_VCPUS"},
		{CapIRQFD, 32, "KVM_CAP_IRQFD"},
		{CapPIT2, 33, "KVM_CAP_PIT2"},
		{CapIOEventFD, 36, "KVM_CAP_IOEVENTFD"},
		{CapAdjustClock, 39, "KVM_CAP_ADJUST_CLOCK"},
		{CapTSCControl, 60, "KVM_CAP_TSC_CONTROL"},
		{CapMaxVCPUs, 66, "KVM_CAP_MAX_VCPUS"},
		{CapSplitIRQChip, 121, "KVM_CAP_SPLIT_IRQCHIP"},
		{CapMaxVCPUID, 128, "KVM_CAP_MAX_VCPU_ID"},
		{CapX2APICAPI, 129, "KVM_CAP_X2APIC_API"},
		{CapImmediateExit, 136, "KVM_CAP_IMMEDIATE_EXIT"},
		{CapXSave2, 208, "KVM_CAP_XSAVE2"},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, int(tt.c), tt.name)
		assert.Equal(t, tt.name, tt.c.String())
	}
	assert.Equal(t, "KVM_CAP(9999)", Cap(9999).String())
}
