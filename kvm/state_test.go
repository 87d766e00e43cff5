package kvm

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// skipIfRefused skips when this host's KVM refuses a state ioctl outright
// (kvm_pvm does not implement every one), naming the ioctl.
func skipIfRefused(t *testing.T, err error, what string) {
	t.Helper()
	if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOTTY) || errors.Is(err, unix.ENXIO) {
		t.Skipf("this host's KVM refuses %s: %v", what, err)
	}
}

// irqchipVM is a test VM with the in-kernel irqchip and PIT, as the
// machine builds it.
func irqchipVM(t *testing.T) *VM {
	t.Helper()
	vm := testVM(t)
	require.NoError(t, vm.CreateIRQChip())
	require.NoError(t, vm.CreatePIT2())
	return vm
}

func TestVCPUStateRoundTrips(t *testing.T) {
	lockThread(t)
	vm := irqchipVM(t)
	c := newTestVCPU(t, vm, 0)

	t.Run("debugregs", func(t *testing.T) {
		d, err := c.DebugRegs()
		skipIfRefused(t, err, "KVM_GET_DEBUGREGS")
		require.NoError(t, err)
		d.DB = [4]uint64{0x1000, 0x2000, 0x3000, 0x4000}
		require.NoError(t, c.SetDebugRegs(d))
		got, err := c.DebugRegs()
		require.NoError(t, err)
		assert.Equal(t, d.DB, got.DB)
	})
	t.Run("xcrs", func(t *testing.T) {
		x, err := c.XCRs()
		skipIfRefused(t, err, "KVM_GET_XCRS")
		require.NoError(t, err)
		require.NotZero(t, x.NrXCRs, "XCR0 is always reported")
		require.NoError(t, c.SetXCRs(x))
		got, err := c.XCRs()
		require.NoError(t, err)
		assert.Equal(t, x, got)
	})
	t.Run("xsave", func(t *testing.T) {
		size, err := vm.XSaveSize()
		require.NoError(t, err)
		require.GreaterOrEqual(t, size, 4096)
		area, err := c.XSave(size)
		skipIfRefused(t, err, "KVM_GET_XSAVE")
		require.NoError(t, err)
		// The legacy region's MXCSR (offset 24, Intel SDM vol. 1
		// §10.5.1): set a rounding mode and read it back.
		area[24] = 0x80
		area[25] = 0x7f // 0x7f80: all exceptions masked, round to zero
		// The kernel takes MXCSR only with the SSE bit in the header's
		// XSTATE_BV (offset 512, §13.4.2).
		area[512] |= 1 << 1
		require.NoError(t, c.SetXSave(area))
		got, err := c.XSave(size)
		require.NoError(t, err)
		assert.Equal(t, area[24:28], got[24:28])
		_, err = c.XSave(100)
		assert.ErrorIs(t, err, ErrInvalidArg)
	})
	t.Run("events", func(t *testing.T) {
		e, err := c.VCPUEvents()
		skipIfRefused(t, err, "KVM_GET_VCPU_EVENTS")
		require.NoError(t, err)
		e.NMI.Masked = 1
		require.NoError(t, c.SetVCPUEvents(e))
		got, err := c.VCPUEvents()
		require.NoError(t, err)
		assert.Equal(t, uint8(1), got.NMI.Masked)
	})
	t.Run("mpstate", func(t *testing.T) {
		require.NoError(t, c.SetMPState(MPStateHalted))
		got, err := c.MPState()
		require.NoError(t, err)
		assert.Equal(t, MPStateHalted, got)
		require.NoError(t, c.SetMPState(MPStateRunnable))
	})
	t.Run("msrs", func(t *testing.T) {
		list, err := openSystem(t).MSRIndexList()
		require.NoError(t, err)
		got, err := c.MSRsReadable(list)
		require.NoError(t, err)
		require.NotEmpty(t, got)
		assert.LessOrEqual(t, len(got), len(list))
		for _, e := range got {
			assert.Contains(t, list, e.Index)
		}
	})
	t.Run("kvmclock ctrl", func(t *testing.T) {
		// The guest never enabled kvmclock: EINVAL is the documented answer.
		err := c.KVMClockCtrl()
		if err != nil {
			assert.ErrorIs(t, err, unix.EINVAL)
		}
	})
}

func TestVMStateRoundTrips(t *testing.T) {
	vm := irqchipVM(t)
	t.Run("pit2", func(t *testing.T) {
		s, err := vm.PIT2()
		skipIfRefused(t, err, "KVM_GET_PIT2")
		require.NoError(t, err)
		s.Channels[2].Gate = 1
		require.NoError(t, vm.SetPIT2(s))
		got, err := vm.PIT2()
		require.NoError(t, err)
		assert.Equal(t, uint8(1), got.Channels[2].Gate)
	})
	t.Run("clock", func(t *testing.T) {
		d, err := vm.Clock()
		skipIfRefused(t, err, "KVM_GET_CLOCK")
		require.NoError(t, err)
		set := ClockData{Clock: d.Clock + 5_000_000_000}
		require.NoError(t, vm.SetClock(set))
		got, err := vm.Clock()
		require.NoError(t, err)
		assert.GreaterOrEqual(t, got.Clock, set.Clock)
		assert.Less(t, got.Clock, set.Clock+1_000_000_000, "the clock moved by what was set, not more")
	})
	t.Run("irqchips", func(t *testing.T) {
		for _, chip := range []IRQChip{IRQChipPICMaster, IRQChipPICSlave, IRQChipIOAPIC} {
			s, err := vm.IRQChip(chip)
			skipIfRefused(t, err, "KVM_GET_IRQCHIP")
			require.NoError(t, err, chip)
			assert.Equal(t, chip, s.ChipID)
			require.NoError(t, vm.SetIRQChip(s), chip)
			got, err := vm.IRQChip(chip)
			require.NoError(t, err)
			assert.Equal(t, s, got, chip)
		}
	})
}

func TestDirtyLog(t *testing.T) {
	lockThread(t)
	vm := testVM(t)
	const size = 64 << 10
	mem, err := unix.Mmap(-1, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, unix.Munmap(mem)) })
	require.NoError(t, vm.SetUserMemoryRegion(UserspaceMemoryRegion{
		Slot: 0, Flags: MemLogDirtyPages, MemorySize: size, UserspaceAddr: HostAddr(mem),
	}))
	// Real mode at 0x1000: mov byte [0x5000], 1; mov byte [0x9000], 1; hlt.
	copy(mem[0x1000:], []byte{0xc6, 0x06, 0x00, 0x50, 0x01, 0xc6, 0x06, 0x00, 0x90, 0x01, 0xf4})
	c := realModeVCPU(t, vm, 0, 0x1000)
	_, err = vm.DirtyLog(0, size) // clear what loading the code dirtied
	require.NoError(t, err)
	_ = nextExit(t, c)
	bitmap, err := vm.DirtyLog(0, size)
	require.NoError(t, err)
	require.Len(t, bitmap, 1)
	assert.NotZero(t, bitmap[0]&(1<<5), "page 5 was written")
	assert.NotZero(t, bitmap[0]&(1<<9), "page 9 was written")
	assert.Zero(t, bitmap[0]&(1<<12), "page 12 was not")
	again, err := vm.DirtyLog(0, size)
	require.NoError(t, err)
	assert.Zero(t, again[0]&(1<<5|1<<9), "the read cleared the log")
}
