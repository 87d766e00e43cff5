package vcpu

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vmm-dev/vmm/kvm"
)

// resetSregs is what KVM leaves after an INIT: the state an AMD host
// reports after KVM_EXIT_SHUTDOWN.
func resetSregs(cr0 uint64) kvm.Sregs {
	var s kvm.Sregs
	s.CS.Selector, s.CS.Base = 0xf000, 0xffff_0000
	s.CR0 = cr0
	return s
}

func TestIsResetState(t *testing.T) {
	long := kvm.Sregs{CR0: 0x8005_0033, EFER: 0xd01}
	long.CS.Base = 0
	tests := []struct {
		name  string
		regs  kvm.Regs
		sregs kvm.Sregs
		want  bool
	}{
		{"INIT, caches on (seen on an AMD host)", kvm.Regs{RIP: 0xfff0}, resetSregs(0x10), true},
		{"RESET, caches off", kvm.Regs{RIP: 0xfff0}, resetSregs(0x6000_0010), true},
		{"a 64-bit kernel", kvm.Regs{RIP: 0xffff_ffff_8100_0000}, long, false},
		{"another RIP", kvm.Regs{RIP: 0xfff1}, resetSregs(0x10), false},
		{"protected mode", kvm.Regs{RIP: 0xfff0}, resetSregs(0x11), false},
		{"real mode elsewhere", kvm.Regs{RIP: 0xfff0}, kvm.Sregs{CR0: 0x10}, false},
		{"EFER set", kvm.Regs{RIP: 0xfff0}, func() kvm.Sregs { s := resetSregs(0x10); s.EFER = 0x500; return s }(), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, isResetState(tt.regs, tt.sregs))
		})
	}
}

func TestDiagnose(t *testing.T) {
	guest := kvm.Sregs{CR0: 0x8005_0033, EFER: 0xd01}
	lastOut := kvm.IOOut{Port: 0x3f8, Size: 1, Count: 1, Data: []byte{'x'}}
	tests := []struct {
		name     string
		cause    error
		regs     kvm.Regs
		sregs    kvm.Sregs
		code     []byte
		last     kvm.Exit
		want     string
		wantNot  string
		wantRoot error
	}{
		{
			name: "triple fault on AMD: registers are KVM's", cause: ErrTripleFault,
			regs: kvm.Regs{RIP: 0xfff0}, sregs: resetSregs(0x10), last: lastOut,
			want:    "guest triple fault (the guest's registers are lost: KVM reset the vCPU when it reported the shutdown, as it does on AMD hosts); the guest's last exit to vmm before it: port I/O write to 0x3f8 (size 1, count 1)",
			wantNot: "RIP", wantRoot: ErrTripleFault,
		},
		{
			name: "triple fault on Intel: the guest's registers", cause: ErrTripleFault,
			regs: kvm.Regs{RIP: 0xffffffff81001234}, sregs: guest, code: []byte{0xcc}, last: kvm.MMIORead{Addr: 0xd0000070, Data: make([]byte, 4)},
			want:     "guest triple fault at RIP 0xffffffff81001234 (CS base 0x0, CR0 0x80050033, EFER 0xd01), instruction bytes cc; the guest's last exit to vmm before it: MMIO read from 0xd0000070 (4 bytes)",
			wantRoot: ErrTripleFault,
		},
		{
			name: "emulation failure at the reset vector is quoted as is", cause: ErrEmulationFailure,
			regs: kvm.Regs{RIP: 0xfff0}, sregs: resetSregs(0x10),
			want:     "KVM instruction emulation failed at RIP 0xfff0 (CS base 0xffff0000, CR0 0x10, EFER 0x0); no exit to vmm before it",
			wantRoot: ErrEmulationFailure,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := diagnose(tt.cause, errors.Is(tt.cause, ErrTripleFault), tt.regs, tt.sregs, tt.code, tt.last)
			require.ErrorIs(t, err, tt.wantRoot)
			assert.Equal(t, tt.want, err.Error())
			if tt.wantNot != "" {
				assert.NotContains(t, err.Error(), tt.wantNot)
			}
		})
	}
}

func TestExitSummaryLeavesDataOut(t *testing.T) {
	assert.Equal(t, "port I/O read from 0x64 (size 1, count 1)", exitSummary(kvm.IOIn{Port: 0x64, Size: 1, Count: 1, Data: []byte{1}}))
	assert.Equal(t, "MMIO write to 0xfee000b0 (4 bytes)", exitSummary(kvm.MMIOWrite{Addr: 0xfee000b0, Data: []byte{1, 2, 3, 4}}))
	assert.Equal(t, "HLT", exitSummary(kvm.HLT{}))
}
