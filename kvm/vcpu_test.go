package kvm

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func newTestVCPU(t *testing.T, vm *VM, id int) *VCPU {
	t.Helper()
	c, err := vm.CreateVCPU(id)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, c.Close()) })
	return c
}

func TestRegsRoundTrip(t *testing.T) {
	lockThread(t)
	c := newTestVCPU(t, testVM(t), 0)
	assert.Equal(t, 0, c.ID())

	want := Regs{
		RAX: 1, RBX: 2, RCX: 3, RDX: 4, RSI: 5, RDI: 6, RSP: 7, RBP: 8,
		R8: 9, R9: 10, R10: 11, R11: 12, R12: 13, R13: 14, R14: 15, R15: 0xffff_ffff_ffff_ffff,
		RIP: 0x1234, RFLAGS: 0x2 | 0x1, // bit 1 is reserved and always set; CF
	}
	require.NoError(t, c.SetRegs(want))
	got, err := c.Regs()
	require.NoError(t, err)
	assert.Equal(t, want, got)
}

func TestSregsRoundTrip(t *testing.T) {
	lockThread(t)
	c := newTestVCPU(t, testVM(t), 0)
	s, err := c.Sregs()
	require.NoError(t, err)
	// The reset state (Intel SDM vol. 3 §9.1.1): CS base 0xffff0000, real mode.
	assert.Equal(t, uint64(0xffff_0000), s.CS.Base)
	assert.Equal(t, uint16(0xf000), s.CS.Selector)
	assert.Zero(t, s.CR0&cr0PE)

	s.CS.Base, s.CS.Selector = 0x1_0000, 0x1000
	s.DS.Base, s.DS.Selector = 0x2_0000, 0x2000
	s.GDT = DTable{Base: 0x500, Limit: 0x17}
	s.IDT = DTable{Base: 0x0, Limit: 0x3ff}
	s.CR2 = 0xdead_0000
	require.NoError(t, c.SetSregs(s))
	got, err := c.Sregs()
	require.NoError(t, err)
	assert.Equal(t, s, got)
}

func TestFPURoundTrip(t *testing.T) {
	lockThread(t)
	c := newTestVCPU(t, testVM(t), 0)
	f, err := c.FPU()
	require.NoError(t, err)
	f.FCW = 0x037f // the FNINIT default
	for i := range f.XMM[3] {
		f.XMM[3][i] = byte(i + 1)
	}
	require.NoError(t, c.SetFPU(f))
	got, err := c.FPU()
	require.NoError(t, err)
	assert.Equal(t, f.FCW, got.FCW)
	assert.Equal(t, f.XMM, got.XMM)
}

func TestMSRs(t *testing.T) {
	lockThread(t)
	c := newTestVCPU(t, testVM(t), 0)
	const (
		sysenterCS  = 0x174
		sysenterESP = 0x175
		bogus       = 0xdead_beef
	)
	require.NoError(t, c.SetMSRs([]MSREntry{{Index: sysenterCS, Data: 0x10}, {Index: sysenterESP, Data: 0x8000}}))
	got, err := c.MSRs([]uint32{sysenterCS, sysenterESP})
	require.NoError(t, err)
	assert.Equal(t, []MSREntry{{Index: sysenterCS, Data: 0x10}, {Index: sysenterESP, Data: 0x8000}}, got)

	// KVM_SET_MSRS stops at the first MSR it rejects.
	err = c.SetMSRs([]MSREntry{{Index: sysenterCS, Data: 0x18}, {Index: bogus, Data: 1}, {Index: sysenterESP, Data: 0}})
	require.ErrorIs(t, err, ErrMSR)
	assert.Contains(t, err.Error(), "0xdeadbeef")
	assert.Contains(t, err.Error(), "set 1 of 3")

	_, err = c.MSRs([]uint32{sysenterCS, bogus})
	require.ErrorIs(t, err, ErrMSR)
	assert.Contains(t, err.Error(), "0xdeadbeef")

	require.NoError(t, c.SetMSRs(nil))
	none, err := c.MSRs(nil)
	require.NoError(t, err)
	assert.Empty(t, none)
}

func TestSetCPUID2(t *testing.T) {
	lockThread(t)
	vm := testVM(t)
	entries, err := openSystem(t).SupportedCPUID()
	require.NoError(t, err)
	c := newTestVCPU(t, vm, 0)
	require.NoError(t, c.SetCPUID2(entries))
}

func TestLAPICAndMPState(t *testing.T) {
	lockThread(t)
	vm := testVM(t)
	require.NoError(t, vm.CreateIRQChip())
	c0 := newTestVCPU(t, vm, 0)
	c1 := newTestVCPU(t, vm, 1)

	l, err := c0.LAPIC()
	require.NoError(t, err)
	assert.Equal(t, uint32(0), l.Reg(LAPICID)>>24, "vCPU 0 has APIC ID 0")
	assert.NotZero(t, l.Reg(LAPICVersion)&0xff, "the version register is set")
	l1, err := c1.LAPIC()
	require.NoError(t, err)
	assert.Equal(t, uint32(1), l1.Reg(LAPICID)>>24, "vCPU 1 has APIC ID 1")

	// LINT0 as ExtINT and LINT1 as NMI: the usual PC wiring.
	l.SetReg(LAPICLVT0, LAPICDeliveryExtINT)
	l.SetReg(LAPICLVT1, LAPICDeliveryNMI)
	require.NoError(t, c0.SetLAPIC(l))
	got, err := c0.LAPIC()
	require.NoError(t, err)
	assert.Equal(t, uint32(LAPICDeliveryExtINT), got.Reg(LAPICLVT0)&0x700)
	assert.Equal(t, uint32(LAPICDeliveryNMI), got.Reg(LAPICLVT1)&0x700)

	st, err := c0.MPState()
	require.NoError(t, err)
	assert.Equal(t, MPStateRunnable, st, "the BSP starts runnable")
	require.NoError(t, c0.SetMPState(MPStateHalted))
	st, err = c0.MPState()
	require.NoError(t, err)
	assert.Equal(t, MPStateHalted, st)
	assert.Equal(t, "halted", st.String())
}

func TestLAPICRegHelpers(t *testing.T) {
	var l LAPICState
	l.SetReg(LAPICSVR, 0x1ff)
	assert.Equal(t, uint32(0x1ff), l.Reg(LAPICSVR))
	assert.Equal(t, []byte{0xff, 0x01, 0, 0}, l.Regs[LAPICSVR:LAPICSVR+4])
	l.SetReg(1020, 0xdead_beef)
	assert.Equal(t, uint32(0xdead_beef), l.Reg(1020))
}

func TestLAPICWithoutIRQChip(t *testing.T) {
	lockThread(t)
	c := newTestVCPU(t, testVM(t), 0)
	_, err := c.LAPIC()
	require.ErrorIs(t, err, ErrIoctl)
	assert.Contains(t, err.Error(), "KVM_GET_LAPIC")
	assert.Contains(t, err.Error(), "vCPU 0")
}

func TestVCPUClosed(t *testing.T) {
	lockThread(t)
	vm := testVM(t)
	c, err := vm.CreateVCPU(0)
	require.NoError(t, err)
	require.NoError(t, c.Close())
	require.NoError(t, c.Close(), "closing twice is harmless")
	_, err = c.Run()
	require.ErrorIs(t, err, ErrClosed)
	_, err = c.Regs()
	require.ErrorIs(t, err, ErrClosed)
	c.SetImmediateExit(true) // a no-op, not a crash
	assert.False(t, c.ImmediateExit())

	_, err = vm.CreateVCPU(-1)
	require.ErrorIs(t, err, ErrInvalidArg)
}
