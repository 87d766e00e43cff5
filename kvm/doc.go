// Package kvm is a thin, typed wrapper of the Linux KVM API for x86-64
// (<linux/kvm.h>, <asm/kvm.h>, Documentation/virt/kvm/api.rst).
//
// It owns the ioctl numbers, the struct layouts and the constants, and turns
// a vCPU exit into a typed value. It holds no policy: which CPUID bits,
// MSRs, registers or devices a guest gets is decided by its callers.
//
// Three handles mirror the kernel's three file descriptors: System
// (/dev/kvm), VM and VCPU. Each is safe to Close from any goroutine; the
// file descriptor (and a vCPU's kvm_run mapping) is released once the last
// call using it returns. Apart from SetImmediateExit and Close, a VCPU's
// methods belong to one goroutine, locked to its OS thread (api.rst §1:
// "vcpu ioctls should be issued from the same thread that was used to
// create the vcpu").
package kvm
