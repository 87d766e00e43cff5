package kvm

import (
	"encoding/binary"
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// DevicePath is where the KVM device lives.
const DevicePath = "/dev/kvm"

// StableAPIVersion is the only stable KVM API version (api.rst,
// KVM_GET_API_VERSION).
const StableAPIVersion = 12

// System is an open /dev/kvm: it answers questions about the host's KVM
// and creates VMs.
type System struct {
	h *handle
}

// Open opens /dev/kvm and checks that it speaks API version 12. When the
// device is missing or cannot be opened the error wraps ErrNoKVM and says
// what to do.
func Open() (*System, error) { return openDevice(DevicePath) }

func openDevice(path string) (*System, error) {
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("%w: open %s: %w (%s)", ErrNoKVM, path, err, openHint(err))
	}
	s := &System{h: newHandle(path, fd, func() error { return unix.Close(fd) })}
	v, err := s.APIVersion()
	if err == nil && v != StableAPIVersion {
		err = fmt.Errorf("%w: %s reports %d, want %d", ErrAPIVersion, path, v, StableAPIVersion)
	}
	if err != nil {
		return nil, errors.Join(err, s.Close())
	}
	return s, nil
}

// openHint says what a user can do about a failed open of /dev/kvm.
func openHint(err error) string {
	switch {
	case errors.Is(err, unix.EACCES), errors.Is(err, unix.EPERM):
		return "add the user to the kvm group (sudo usermod -aG kvm $USER, then log in again) or run as root"
	case errors.Is(err, unix.ENOENT), errors.Is(err, unix.ENXIO), errors.Is(err, unix.ENODEV):
		return "load the kvm_intel or kvm_amd module (modprobe kvm_intel / modprobe kvm_amd) " +
			"and enable virtualization (VT-x or AMD-V/SVM) in the firmware setup; inside a VM, enable nested virtualization"
	default:
		return "check that the kvm module is loaded and that this process may open the device"
	}
}

// Close closes /dev/kvm. VMs created from it stay usable.
func (s *System) Close() error { return s.h.close() }

// APIVersion returns KVM_GET_API_VERSION.
func (s *System) APIVersion() (int, error) {
	v, err := ioctlArg(s.h, "KVM_GET_API_VERSION", kvmGetAPIVersion, 0)
	return int(v), err
}

// CheckExtension returns KVM_CHECK_EXTENSION for c: 0 when the capability
// is absent, otherwise 1 or a capability-specific number.
func (s *System) CheckExtension(c Cap) (int, error) {
	v, err := ioctlArg(s.h, "KVM_CHECK_EXTENSION "+c.String(), kvmCheckExtension, uintptr(c))
	return int(v), err
}

// VCPUMmapSize returns KVM_GET_VCPU_MMAP_SIZE: the length of the kvm_run
// area (and the pages after it) mapped from each vCPU.
func (s *System) VCPUMmapSize() (int, error) {
	v, err := ioctlArg(s.h, "KVM_GET_VCPU_MMAP_SIZE", kvmGetVCPUMmapSize, 0)
	return int(v), err
}

// MaxVCPUs returns how many vCPUs a VM may have: KVM_CAP_MAX_VCPUS, or
// KVM_CAP_NR_VCPUS where that is absent, or 4 where both are (api.rst,
// KVM_CREATE_VCPU).
func (s *System) MaxVCPUs() (int, error) {
	for _, c := range []Cap{CapMaxVCPUs, CapNrVCPUs} {
		n, err := s.CheckExtension(c)
		if err != nil {
			return 0, err
		}
		if n > 0 {
			return n, nil
		}
	}
	return 4, nil
}

// maxCPUIDEntries bounds how far SupportedCPUID grows its buffer; the
// kernel's own limit (KVM_MAX_CPUID_ENTRIES) is 256.
const maxCPUIDEntries = 4096

// SupportedCPUID returns KVM_GET_SUPPORTED_CPUID: the CPUID leaves KVM can
// offer a guest, with unsupported features masked out.
func (s *System) SupportedCPUID() ([]CPUIDEntry, error) { return s.supportedCPUID(128) }

func (s *System) supportedCPUID(n int) ([]CPUIDEntry, error) {
	// api.rst, KVM_GET_SUPPORTED_CPUID: a buffer too small for all
	// entries fails with E2BIG (and says nothing of the size needed); a
	// large enough one has nent set to the number of valid entries.
	for {
		buf := make([]byte, sizeofCPUID2+n*sizeofCPUIDEntry)
		binary.LittleEndian.PutUint32(buf, uint32(n))
		_, err := ioctlStruct(s.h, "KVM_GET_SUPPORTED_CPUID", kvmGetSupportedCPUID, &buf[0])
		if errors.Is(err, unix.E2BIG) && n < maxCPUIDEntries {
			n *= 2
			continue
		}
		if err != nil {
			return nil, err
		}
		return decodeCPUID2(buf)
	}
}

// MSRIndexList returns KVM_GET_MSR_INDEX_LIST: the MSRs that
// KVM_GET_MSRS and KVM_SET_MSRS handle on this host.
func (s *System) MSRIndexList() ([]uint32, error) {
	// api.rst, KVM_GET_MSR_INDEX_LIST: with nmsrs too small the call
	// fails with E2BIG and sets nmsrs to the number needed. Ask for the
	// count, then the list; loop in case the list grows in between.
	n := 0
	for {
		buf := make([]byte, sizeofMSRList+4*n)
		binary.LittleEndian.PutUint32(buf, uint32(n))
		_, err := ioctlStruct(s.h, "KVM_GET_MSR_INDEX_LIST", kvmGetMSRIndexList, &buf[0])
		got := int(binary.LittleEndian.Uint32(buf))
		if errors.Is(err, unix.E2BIG) && got > n {
			n = got
			continue
		}
		if err != nil {
			return nil, err
		}
		if got > n {
			return nil, fmt.Errorf("%s: %w: KVM_GET_MSR_INDEX_LIST: %d indices returned for %d slots", s.h.what, ErrIoctl, got, n)
		}
		list := make([]uint32, got)
		for i := range list {
			list[i] = binary.LittleEndian.Uint32(buf[sizeofMSRList+4*i:])
		}
		return list, nil
	}
}

// CreateVM returns KVM_CREATE_VM: a new VM with no memory and no vCPUs.
func (s *System) CreateVM() (*VM, error) {
	runSize, err := s.VCPUMmapSize()
	if err != nil {
		return nil, err
	}
	if runSize < sizeofRun {
		return nil, fmt.Errorf("%s: KVM_GET_VCPU_MMAP_SIZE is %d bytes, smaller than struct kvm_run (%d): %w",
			s.h.what, runSize, sizeofRun, ErrIoctl)
	}
	fd, err := ioctlArg(s.h, "KVM_CREATE_VM", kvmCreateVM, 0)
	if err != nil {
		return nil, err
	}
	return newVM(int(fd), runSize), nil
}
