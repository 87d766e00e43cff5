package kvm

import (
	"errors"
	"fmt"
)

// Sentinel errors; callers branch on them with errors.Is. Errors from the
// kernel stay in the chain too, so errors.Is(err, unix.EINVAL) works.
var (
	// ErrNoKVM reports that /dev/kvm cannot be used; the message says why
	// and what to do about it.
	ErrNoKVM = errors.New("KVM is not available")
	// ErrAPIVersion reports a KVM_GET_API_VERSION other than 12.
	ErrAPIVersion = errors.New("unsupported KVM API version")
	// ErrIoctl wraps every failed ioctl; the message names the ioctl.
	ErrIoctl = errors.New("kvm ioctl")
	// ErrClosed reports a call on a System, VM or VCPU after Close.
	ErrClosed = errors.New("kvm handle is closed")
	// ErrMSR reports an MSR that KVM_GET_MSRS or KVM_SET_MSRS did not
	// process (the ioctls stop at the first MSR they reject).
	ErrMSR = errors.New("MSR not accepted")
	// ErrBadExit reports a kvm_run exit record that points outside the
	// kvm_run mapping. The kernel should never produce one.
	ErrBadExit = errors.New("malformed kvm_run exit")
	// ErrInvalidArg reports an argument rejected before reaching the kernel.
	ErrInvalidArg = errors.New("invalid argument")
)

// ioctlError names the handle and the ioctl that failed.
func ioctlError(what, name string, err error) error {
	if errors.Is(err, ErrClosed) {
		return fmt.Errorf("%s: %s: %w", what, name, err)
	}
	return fmt.Errorf("%s: %w: %s: %w", what, ErrIoctl, name, err)
}
