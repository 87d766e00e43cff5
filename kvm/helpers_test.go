package kvm

import (
	"errors"
	"runtime"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// Addresses our test VMs reserve for the Intel real-mode helpers, above
// any RAM the tests map (the conventional spot below the BIOS).
const (
	testTSSAddr         = 0xfffb_d000
	testIdentityMapAddr = 0xfffb_c000
)

// openOrSkip opens /dev/kvm or skips the test when this host has none.
func openOrSkip(t *testing.T) *System {
	t.Helper()
	sys, err := Open()
	if errors.Is(err, ErrNoKVM) {
		t.Skipf("skipping: this test needs a usable /dev/kvm: %v", err)
	}
	require.NoError(t, err)
	return sys
}

// openSystem is openOrSkip with the System closed when the test ends.
func openSystem(t *testing.T) *System {
	t.Helper()
	sys := openOrSkip(t)
	t.Cleanup(func() { require.NoError(t, sys.Close()) })
	return sys
}

// testVM creates a VM with the real-mode helper areas set, as every x86
// VMM does before running real-mode code on Intel hosts.
func testVM(t *testing.T) *VM {
	t.Helper()
	vm, err := openSystem(t).CreateVM()
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, vm.Close()) })
	require.NoError(t, vm.SetIdentityMapAddr(testIdentityMapAddr))
	require.NoError(t, vm.SetTSSAddr(testTSSAddr))
	return vm
}

// addRAM maps size bytes of anonymous memory and installs it as slot at
// guest physical address gpa; it returns the host view.
func addRAM(t *testing.T, vm *VM, slot uint32, gpa uint64, size int) []byte {
	t.Helper()
	mem, err := unix.Mmap(-1, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE)
	require.NoError(t, err)
	// Cleanups run last-in first-out: the VM (registered earlier) still
	// exists when this unmaps, but no vCPU runs by then.
	t.Cleanup(func() { require.NoError(t, unix.Munmap(mem)) })
	require.NoError(t, vm.SetUserMemoryRegion(UserspaceMemoryRegion{
		Slot:          slot,
		GuestPhysAddr: gpa,
		MemorySize:    uint64(size),
		UserspaceAddr: HostAddr(mem),
	}))
	return mem
}

// realModeVCPU creates a vCPU that starts in real mode at physical
// address rip (CS base 0), with a stack below 0x8000.
func realModeVCPU(t *testing.T, vm *VM, id int, rip uint64) *VCPU {
	t.Helper()
	c, err := vm.CreateVCPU(id)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, c.Close()) })
	s, err := c.Sregs()
	require.NoError(t, err)
	s.CS.Base, s.CS.Selector = 0, 0
	require.NoError(t, c.SetSregs(s))
	require.NoError(t, c.SetRegs(Regs{RIP: rip, RSP: 0x8000, RFLAGS: 0x2}))
	return c
}

// nextExit runs the vCPU until it exits for a reason other than a signal
// (the Go runtime's own signals can interrupt KVM_RUN at any time).
func nextExit(t *testing.T, c *VCPU) Exit {
	t.Helper()
	for {
		e, err := c.Run()
		require.NoError(t, err)
		if _, ok := e.(Interrupted); !ok {
			return e
		}
	}
}

// lockThread keeps the test goroutine, and so every vCPU ioctl it makes,
// on one OS thread (api.rst, "General description": vCPU ioctls belong to one thread).
func lockThread(t *testing.T) {
	runtime.LockOSThread()
	t.Cleanup(runtime.UnlockOSThread)
}
