package kvm

import (
	"encoding/binary"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

func newEventFD(t *testing.T) int {
	t.Helper()
	fd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, unix.Close(fd)) })
	return fd
}

// eventCount reads and resets an eventfd's counter; 0 when not signalled.
func eventCount(t *testing.T, fd int) uint64 {
	t.Helper()
	var b [8]byte
	_, err := unix.Read(fd, b[:])
	if err == unix.EAGAIN {
		return 0
	}
	require.NoError(t, err)
	return binary.LittleEndian.Uint64(b[:])
}

func TestIRQChipPITAndIRQFD(t *testing.T) {
	vm := testVM(t)
	require.NoError(t, vm.CreateIRQChip())
	require.NoError(t, vm.CreatePIT2(PITSpeakerDummy))

	require.NoError(t, vm.IRQLine(4, true))
	require.NoError(t, vm.IRQLine(4, false))

	efd := newEventFD(t)
	require.NoError(t, vm.RegisterIRQFD(efd, 5))
	// The irqfd works without us: signalling it injects on GSI 5.
	_, err := unix.Write(efd, []byte{1, 0, 0, 0, 0, 0, 0, 0})
	require.NoError(t, err)
	require.NoError(t, vm.UnregisterIRQFD(efd, 5))

	require.ErrorIs(t, vm.RegisterIRQFD(-1, 5), ErrInvalidArg)
}

func TestCreatePIT2NeedsIRQChip(t *testing.T) {
	err := testVM(t).CreatePIT2()
	require.ErrorIs(t, err, ErrIoctl)
	assert.Contains(t, err.Error(), "KVM_CREATE_PIT2")
}

func TestIOEventFD(t *testing.T) {
	vm, _, c := realModeGuest(t, []byte{
		0xb0, 0x01, // mov al, 1
		0xe6, 0x70, // out 0x70, al   -> any-value eventfd: no exit
		0xe6, 0x72, // out 0x72, al   -> datamatch 2 misses: exits
		0xb0, 0x02, // mov al, 2
		0xe6, 0x72, // out 0x72, al   -> datamatch hits: no exit
		0xe6, 0x73, // out 0x73, al   -> plain exit
		0xf4, // hlt
	})
	anyValue := IOEventFD{FD: newEventFD(t), Addr: 0x70, Len: 1, PIO: true}
	two := uint64(2)
	matchTwo := IOEventFD{FD: newEventFD(t), Addr: 0x72, Len: 1, PIO: true, DataMatch: &two}
	require.NoError(t, vm.RegisterIOEventFD(anyValue))
	require.NoError(t, vm.RegisterIOEventFD(matchTwo))

	assert.Equal(t, IOOut{Port: 0x72, Size: 1, Count: 1, Data: []byte{1}}, nextExit(t, c))
	assert.Equal(t, IOOut{Port: 0x73, Size: 1, Count: 1, Data: []byte{2}}, nextExit(t, c))
	assert.Equal(t, HLT{}, nextExit(t, c))
	assert.Equal(t, uint64(1), eventCount(t, anyValue.FD), "OUT 0x70 signalled the eventfd")
	assert.Equal(t, uint64(1), eventCount(t, matchTwo.FD), "only the matching OUT 0x72 signalled")

	require.NoError(t, vm.UnregisterIOEventFD(anyValue))
	require.NoError(t, vm.UnregisterIOEventFD(matchTwo))
	err := vm.UnregisterIOEventFD(anyValue)
	require.ErrorIs(t, err, ErrIoctl, "it is gone")
	assert.Contains(t, err.Error(), "KVM_IOEVENTFD port 0x70")

	require.ErrorIs(t, vm.RegisterIOEventFD(IOEventFD{FD: -1, Addr: 0x70, Len: 1, PIO: true}), ErrInvalidArg)
}

func TestMMIOEventFD(t *testing.T) {
	vm, _, c := realModeGuest(t, []byte{
		0xb8, 0x00, 0xd0, // mov ax, 0xd000
		0x8e, 0xd8, // mov ds, ax (DS base 0xd0000, no RAM)
		0xc7, 0x06, 0x50, 0x00, 0x01, 0x00, // mov word [0x50], 1 -> eventfd
		0xc7, 0x06, 0x54, 0x00, 0x02, 0x00, // mov word [0x54], 2 -> exit
		0xf4, // hlt
	})
	ev := IOEventFD{FD: newEventFD(t), Addr: 0xd0050, Len: 2}
	require.NoError(t, vm.RegisterIOEventFD(ev))
	assert.Equal(t, MMIOWrite{Addr: 0xd0054, Data: []byte{2, 0}}, nextExit(t, c))
	assert.Equal(t, HLT{}, nextExit(t, c))
	assert.Equal(t, uint64(1), eventCount(t, ev.FD))
}

func TestMemoryRegionErrors(t *testing.T) {
	vm := testVM(t)
	// Not page aligned: the kernel refuses it, and the error says which slot.
	err := vm.SetUserMemoryRegion(UserspaceMemoryRegion{Slot: 3, GuestPhysAddr: 0x123, MemorySize: 0x1000, UserspaceAddr: 0x1000})
	require.ErrorIs(t, err, ErrIoctl)
	require.ErrorIs(t, err, unix.EINVAL)
	assert.Contains(t, err.Error(), "KVM_SET_USER_MEMORY_REGION slot 3")

	require.ErrorIs(t, vm.SetTSSAddr(1<<32), ErrInvalidArg)
}

func TestVMCheckExtensionAndClose(t *testing.T) {
	sys := openSystem(t)
	vm, err := sys.CreateVM()
	require.NoError(t, err)
	n, err := vm.CheckExtension(CapUserMemory)
	require.NoError(t, err)
	assert.Positive(t, n)
	require.NoError(t, vm.Close())
	_, err = vm.CreateVCPU(0)
	require.ErrorIs(t, err, ErrClosed)
}
