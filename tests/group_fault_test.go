package tests

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/vmm-dev/vmm/tests/sandbox"
	"github.com/vmm-dev/vmm/vcpu"
)

// In nested mode a triple fault, a step out of time, level 1 dying or the
// group out of time repeat the group (once); a VMM that fails in any other
// way, or any failure on hardware KVM, does not.
func TestSandboxFault(t *testing.T) {
	tripleFault := &sandbox.Step{Name: "s", ErrorLine: "vmm: vCPU 0: guest triple fault at RIP 0xfff0"}
	otherError := &sandbox.Step{Name: "s", ErrorLine: "vmm: guest kernel panic"}
	// A clone's counter stopped (a test failure, not a timeout) while its
	// vmm's stop report showed level 1's registers.
	foreign := &sandbox.Step{Name: "s", RC: 15, Console: []sandbox.Line{{Text: "vmm: stopped: vCPU 1: in the guest for 40s without an exit; " +
		"RIP 0xffffffffc03abdcc CR3 0x104e9c000 (outside guest RAM: " + foreignRegisters + "; KVM, or the machine under it, lost them)"}}}
	for _, tc := range []struct {
		name  string
		res   *sandbox.Result
		err   error
		fault bool
	}{
		{"no result", nil, sandbox.ErrLevel1, false},
		{"clean", &sandbox.Result{Mode: sandbox.ModeNested, Steps: []*sandbox.Step{{Name: "s"}}}, nil, false},
		{"level 1 died", &sandbox.Result{Mode: sandbox.ModeNested}, fmt.Errorf("run: %w", sandbox.ErrIncomplete), true},
		{"triple fault", &sandbox.Result{Mode: sandbox.ModeNested, Steps: []*sandbox.Step{tripleFault}}, nil, true},
		{"step out of time", &sandbox.Result{Mode: sandbox.ModeNested, Steps: []*sandbox.Step{{Name: "s", TimedOut: true}}}, nil, true},
		{"level 1's registers in a vCPU", &sandbox.Result{Mode: sandbox.ModeNested, Steps: []*sandbox.Step{foreign}}, nil, true},
		{"other vmm error", &sandbox.Result{Mode: sandbox.ModeNested, Steps: []*sandbox.Step{otherError}}, nil, false},
		{"group out of time", &sandbox.Result{Mode: sandbox.ModeNested}, sandbox.ErrTimeout, true},
		{"level 1 froze", &sandbox.Result{Mode: sandbox.ModeNested}, fmt.Errorf("run: %w", sandbox.ErrFrozen), true},
		{"direct mode", &sandbox.Result{Mode: sandbox.ModeDirect, Steps: []*sandbox.Step{tripleFault}}, sandbox.ErrIncomplete, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.fault, sandboxFault(tc.res, tc.err) != "")
		})
	}
}

// The harness reads the very words vmm prints.
func TestForeignRegistersMatchesVMM(t *testing.T) {
	assert.Contains(t, vcpu.StopState{ForeignCR3: true}.String(), foreignRegisters)
	assert.NotContains(t, vcpu.StopState{}.String(), foreignRegisters)
}
