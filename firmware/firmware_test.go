package firmware

import (
	"errors"
	"runtime"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vmm-dev/vmm/devices"
	"github.com/vmm-dev/vmm/devices/power"
	"github.com/vmm-dev/vmm/kvm"
	"github.com/vmm-dev/vmm/memory"
)

func TestResetVectorFitsBelow1MiB(t *testing.T) {
	assert.Equal(t, memory.GuestAddr(0x100000), ResetVectorAddr+ResetVectorSize)
	assert.Len(t, ResetVector(), ResetVectorSize)
}

func TestWrite(t *testing.T) {
	mem, err := memory.New(memory.MinSize)
	require.NoError(t, err)
	defer mem.Close()
	require.NoError(t, Write(mem))
	got := make([]byte, ResetVectorSize)
	require.NoError(t, mem.ReadAt(got, ResetVectorAddr))
	assert.Equal(t, ResetVector(), got)
}

// The vector runs as Linux's BOOT_BIOS reboot leaves the CPU: real mode,
// CS 0xf000 (base 0xf0000), IP 0xfff0. It must reset through 0xcf9 the
// way devices/power.ResetControl starts a reset, then halt.
func TestResetVectorRunsInRealMode(t *testing.T) {
	sys, err := kvm.Open()
	if errors.Is(err, kvm.ErrNoKVM) {
		t.Skipf("skipping: this test needs a usable /dev/kvm: %v", err)
	}
	require.NoError(t, err)
	defer sys.Close()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()

	vm, err := sys.CreateVM()
	require.NoError(t, err)
	defer vm.Close()
	require.NoError(t, vm.SetIdentityMapAddr(0xfffb_c000))
	require.NoError(t, vm.SetTSSAddr(0xfffb_d000))
	mem, err := memory.New(memory.MinSize)
	require.NoError(t, err)
	defer mem.Close()
	require.NoError(t, Write(mem))
	r := mem.Regions()[0]
	require.NoError(t, vm.SetUserMemoryRegion(kvm.UserspaceMemoryRegion{
		MemorySize: uint64(len(r.Host)), UserspaceAddr: kvm.HostAddr(r.Host)}))
	c, err := vm.CreateVCPU(0)
	require.NoError(t, err)
	defer c.Close()
	s, err := c.Sregs()
	require.NoError(t, err)
	s.CS.Selector, s.CS.Base = 0xf000, 0xf0000
	require.NoError(t, c.SetSregs(s))
	require.NoError(t, c.SetRegs(kvm.Regs{RIP: 0xfff0, RFLAGS: 0x2}))

	resets := 0
	rc := power.NewResetControl(func(a devices.PowerAction) {
		assert.Equal(t, devices.Reset, a)
		resets++
	})
	var outs []byte
	halted := false
run:
	for range 10 {
		e, err := c.Run()
		require.NoError(t, err)
		switch e := e.(type) {
		case kvm.Interrupted:
			continue
		case kvm.IOOut:
			require.Equal(t, uint16(power.ResetControlPort), e.Port, "%v", e)
			outs = append(outs, e.Data...)
			rc.Write(0, e.Data)
			continue
		case kvm.HLT:
			halted = true
			break run
		default:
			t.Fatalf("unexpected exit %v", e)
		}
	}
	assert.Equal(t, []byte{0x02, 0x0e}, outs)
	assert.Equal(t, 1, resets)
	assert.True(t, halted, "the vector did not halt after its reset request")
}
