package kvm

import (
	"errors"

	"golang.org/x/sys/unix"
)

// ioctl request numbers, built the way <asm-generic/ioctl.h> builds them:
// direction in bits 30-31, argument size in bits 16-29, the KVMIO type
// (0xAE) in bits 8-15 and the command number in bits 0-7.
const (
	iocWrite = 1
	iocRead  = 2

	iocSizeShift = 16
	iocDirShift  = 30

	kvmIO = 0xAE

	ioNone      = kvmIO << 8                                 // _IO(KVMIO, nr)
	ioRead      = iocRead<<iocDirShift | kvmIO<<8            // _IOR
	ioWrite     = iocWrite<<iocDirShift | kvmIO<<8           // _IOW
	ioReadWrite = (iocRead|iocWrite)<<iocDirShift | kvmIO<<8 // _IOWR
)

// System ioctls (on /dev/kvm).
const (
	kvmGetAPIVersion     = ioNone | 0x00
	kvmCreateVM          = ioNone | 0x01
	kvmGetMSRIndexList   = ioReadWrite | sizeofMSRList<<iocSizeShift | 0x02
	kvmCheckExtension    = ioNone | 0x03
	kvmGetVCPUMmapSize   = ioNone | 0x04
	kvmGetSupportedCPUID = ioReadWrite | sizeofCPUID2<<iocSizeShift | 0x05
)

// VM ioctls.
const (
	kvmCreateVCPU          = ioNone | 0x41
	kvmSetUserMemoryRegion = ioWrite | sizeofUserspaceMemoryRegion<<iocSizeShift | 0x46
	kvmSetTSSAddr          = ioNone | 0x47
	kvmSetIdentityMapAddr  = ioWrite | 8<<iocSizeShift | 0x48
	kvmCreateIRQChip       = ioNone | 0x60
	kvmIRQLine             = ioWrite | sizeofIRQLevel<<iocSizeShift | 0x61
	kvmSetGSIRouting       = ioWrite | sizeofIRQRouting<<iocSizeShift | 0x6a
	kvmIRQFD               = ioWrite | sizeofIRQFD<<iocSizeShift | 0x76
	kvmCreatePIT2          = ioWrite | sizeofPITConfig<<iocSizeShift | 0x77
	kvmIOEventFD           = ioWrite | sizeofIOEventFD<<iocSizeShift | 0x79
	kvmSignalMSI           = ioWrite | sizeofMSI<<iocSizeShift | 0xa5
)

// vCPU ioctls.
const (
	kvmRun        = ioNone | 0x80
	kvmGetRegs    = ioRead | sizeofRegs<<iocSizeShift | 0x81
	kvmSetRegs    = ioWrite | sizeofRegs<<iocSizeShift | 0x82
	kvmGetSregs   = ioRead | sizeofSregs<<iocSizeShift | 0x83
	kvmSetSregs   = ioWrite | sizeofSregs<<iocSizeShift | 0x84
	kvmTranslate  = ioReadWrite | sizeofTranslation<<iocSizeShift | 0x85
	kvmGetMSRs    = ioReadWrite | sizeofMSRs<<iocSizeShift | 0x88
	kvmSetMSRs    = ioWrite | sizeofMSRs<<iocSizeShift | 0x89
	kvmGetFPU     = ioRead | sizeofFPU<<iocSizeShift | 0x8c
	kvmSetFPU     = ioWrite | sizeofFPU<<iocSizeShift | 0x8d
	kvmGetLAPIC   = ioRead | sizeofLAPICState<<iocSizeShift | 0x8e
	kvmSetLAPIC   = ioWrite | sizeofLAPICState<<iocSizeShift | 0x8f
	kvmSetCPUID2  = ioWrite | sizeofCPUID2<<iocSizeShift | 0x90
	kvmGetMPState = ioRead | sizeofMPState<<iocSizeShift | 0x98
	kvmSetMPState = ioWrite | sizeofMPState<<iocSizeShift | 0x99
)

// Sizes of the uapi structs, as the kernel's headers define them. The
// ioctl numbers above encode them; tests check them against unsafe.Sizeof
// of our Go types.
const (
	sizeofRegs                  = 144
	sizeofSregs                 = 312
	sizeofFPU                   = 416
	sizeofUserspaceMemoryRegion = 32
	sizeofCPUID2                = 8 // header of struct kvm_cpuid2
	sizeofCPUIDEntry            = 40
	sizeofMSRs                  = 8 // header of struct kvm_msrs
	sizeofMSREntry              = 16
	sizeofMSRList               = 4 // header of struct kvm_msr_list
	sizeofLAPICState            = 1024
	sizeofIRQFD                 = 32
	sizeofIOEventFD             = 64
	sizeofMPState               = 4
	sizeofIRQLevel              = 8
	sizeofIRQRouting            = 8 // header of struct kvm_irq_routing
	sizeofRoutingEntry          = 48
	sizeofMSI                   = 32
	sizeofPITConfig             = 64
	sizeofTranslation           = 24
	sizeofSegment               = 24
	sizeofDTable                = 16
)

// ioctlRetry issues an ioctl whose argument is a plain value, retrying
// when a signal interrupts it: every KVM ioctl but KVM_RUN is safe to
// repeat.
func ioctlRetry(fd int, req, arg uintptr) (uintptr, error) {
	for {
		r, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), req, arg)
		if errno == 0 {
			return r, nil
		}
		if !errors.Is(errno, unix.EINTR) {
			return r, errno
		}
	}
}
