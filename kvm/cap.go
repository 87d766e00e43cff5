package kvm

import "fmt"

// Cap is a KVM capability, queried with KVM_CHECK_EXTENSION
// (<linux/kvm.h> KVM_CAP_*).
type Cap int

// Capabilities a VMM commonly checks. The value KVM_CHECK_EXTENSION
// returns is 0 when absent, 1 when present, or a number for the counting
// capabilities (CapNrVCPUs, CapMaxVCPUs, CapMaxVCPUID, CapNrMemslots).
const (
	CapIRQChip            Cap = 0
	CapHLT                Cap = 1
	CapUserMemory         Cap = 3
	CapSetTSSAddr         Cap = 4
	CapExtCPUID           Cap = 7
	CapNrVCPUs            Cap = 9
	CapNrMemslots         Cap = 10
	CapPIT                Cap = 11
	CapNopIODelay         Cap = 12
	CapSyncMMU            Cap = 16
	CapMPState            Cap = 14
	CapSetGuestDebug      Cap = 23
	CapIRQRouting         Cap = 25
	CapIRQInjectStatus    Cap = 26
	CapIRQFD              Cap = 32
	CapPIT2               Cap = 33
	CapPITState2          Cap = 35
	CapIOEventFD          Cap = 36
	CapSetIdentityMapAddr Cap = 37
	CapAdjustClock        Cap = 39
	CapVCPUEvents         Cap = 41
	CapDebugRegs          Cap = 50
	CapXSave              Cap = 55
	CapXCRs               Cap = 56
	CapTSCControl         Cap = 60
	CapGetTSCKHz          Cap = 61
	CapMaxVCPUs           Cap = 66
	CapTSCDeadlineTimer   Cap = 72
	CapSyncRegs           Cap = 74
	CapKVMClockCtrl       Cap = 76
	CapSignalMSI          Cap = 77
	CapReadonlyMem        Cap = 81
	CapIRQFDResample      Cap = 82
	CapIOEventFDNoLength  Cap = 100
	CapCheckExtensionVM   Cap = 105
	CapSplitIRQChip       Cap = 121
	CapIOEventFDAnyLength Cap = 122
	CapMaxVCPUID          Cap = 128
	CapX2APICAPI          Cap = 129
	CapImmediateExit      Cap = 136
	CapX86DisableExits    Cap = 143
	CapGetMSRFeatures     Cap = 153
	CapXSave2             Cap = 208
)

var capNames = map[Cap]string{
	CapIRQChip:            "KVM_CAP_IRQCHIP",
	CapHLT:                "KVM_CAP_HLT",
	CapUserMemory:         "KVM_CAP_USER_MEMORY",
	CapSetTSSAddr:         "KVM_CAP_SET_TSS_ADDR",
	CapExtCPUID:           "KVM_CAP_EXT_CPUID",
	CapNrVCPUs:            "KVM_CAP_NR_VCPUS",
	CapNrMemslots:         "KVM_CAP_NR_MEMSLOTS",
	CapPIT:                "KVM_CAP_PIT",
	CapNopIODelay:         "KVM_CAP_NOP_IO_DELAY",
	CapSyncMMU:            "KVM_CAP_SYNC_MMU",
	CapMPState:            "KVM_CAP_MP_STATE",
	CapSetGuestDebug:      "KVM_CAP_SET_GUEST_DEBUG",
	CapIRQRouting:         "KVM_CAP_IRQ_ROUTING",
	CapIRQInjectStatus:    "KVM_CAP_IRQ_INJECT_STATUS",
	CapIRQFD:              "KVM_CAP_IRQFD",
	CapPIT2:               "KVM_CAP_PIT2",
	CapPITState2:          "KVM_CAP_PIT_STATE2",
	CapIOEventFD:          "KVM_CAP_IOEVENTFD",
	CapSetIdentityMapAddr: "KVM_CAP_SET_IDENTITY_MAP_ADDR",
	CapAdjustClock:        "KVM_CAP_ADJUST_CLOCK",
	CapVCPUEvents:         "KVM_CAP_VCPU_EVENTS",
	CapDebugRegs:          "KVM_CAP_DEBUGREGS",
	CapXSave:              "KVM_CAP_XSAVE",
	CapXCRs:               "KVM_CAP_XCRS",
	CapTSCControl:         "KVM_CAP_TSC_CONTROL",
	CapGetTSCKHz:          "KVM_CAP_GET_TSC_KHZ",
	CapMaxVCPUs:           "KVM_CAP_MAX_VCPUS",
	CapTSCDeadlineTimer:   "KVM_CAP_TSC_DEADLINE_TIMER",
	CapSyncRegs:           "KVM_CAP_SYNC_REGS",
	CapKVMClockCtrl:       "KVM_CAP_KVMCLOCK_CTRL",
	CapSignalMSI:          "KVM_CAP_SIGNAL_MSI",
	CapReadonlyMem:        "KVM_CAP_READONLY_MEM",
	CapIRQFDResample:      "KVM_CAP_IRQFD_RESAMPLE",
	CapIOEventFDNoLength:  "KVM_CAP_IOEVENTFD_NO_LENGTH",
	CapCheckExtensionVM:   "KVM_CAP_CHECK_EXTENSION_VM",
	CapSplitIRQChip:       "KVM_CAP_SPLIT_IRQCHIP",
	CapIOEventFDAnyLength: "KVM_CAP_IOEVENTFD_ANY_LENGTH",
	CapMaxVCPUID:          "KVM_CAP_MAX_VCPU_ID",
	CapX2APICAPI:          "KVM_CAP_X2APIC_API",
	CapImmediateExit:      "KVM_CAP_IMMEDIATE_EXIT",
	CapX86DisableExits:    "KVM_CAP_X86_DISABLE_EXITS",
	CapGetMSRFeatures:     "KVM_CAP_GET_MSR_FEATURES",
	CapXSave2:             "KVM_CAP_XSAVE2",
}

func (c Cap) String() string {
	if n, ok := capNames[c]; ok {
		return n
	}
	return fmt.Sprintf("KVM_CAP(%d)", int(c))
}
