package tests

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vmm-dev/vmm/tests/sandbox"
)

// group is a set of vmm runs that share one sandbox run (one level-1 boot,
// ~5-10 s in nested mode). Each Go test asserts on its own named step, so a
// failure still names one scenario. The group runs on first use, so
// `go test -run TestX` boots only the groups that TestX needs.
type group struct {
	name string
	// script is the level-1 script; its run_vmm NAME calls are the steps.
	script string
	// guestScripts are selected in the guest with vmmtest=NAME.
	guestScripts map[string]string
	// guestFiles are added to the guest initramfs (programs, data).
	guestFiles []sandbox.File
	// timeout bounds the whole group; stepTimeout each vmm run.
	timeout, stepTimeout time.Duration
	// files go to $DATA in level 1.
	files []sandbox.File
	// needsVmlinux carries the 50 MB ELF kernel ($GUEST_VMLINUX) into level 1.
	needsVmlinux bool
	// noRepeat: never run the group again (soak runs count every failure).
	noRepeat bool

	once sync.Once
	res  *sandbox.Result
	err  error
}

// run boots the group's sandbox once and returns its result; a failed
// sandbox run fails the test.
func (g *group) run(t *testing.T) *sandbox.Result {
	t.Helper()
	res, err := g.result(t)
	require.NoError(t, err, "sandbox run of group %q", g.name)
	return res
}

// result boots the group's sandbox once and returns what it got, even
// from a run that failed (a soak then still reports each step it ran).
func (g *group) result(t *testing.T) (*sandbox.Result, error) {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end scenario: skipped with -short")
	}
	vmm := vmmBinary(t)
	g.once.Do(func() {
		var console io.Writer
		if os.Getenv("VMM_CONSOLE") != "" {
			console = os.Stdout // watch the consoles live
		}
		guestFaults, level1Faults := 0, 0
		for attempt := 1; ; attempt++ {
			g.res, g.err = g.runOnce(vmm, console)
			if g.res != nil {
				path, err := writeConsoleLog(g.res, attempt)
				if err != nil {
					t.Logf("console log: %v", err)
				} else {
					t.Logf("group %q: console log in %s", g.name, path)
				}
			}
			fault := sandboxFault(g.res, g.err)
			if errors.Is(g.err, sandbox.ErrFrozen) || errors.Is(g.err, sandbox.ErrIncomplete) {
				level1Faults++
			} else if fault != "" {
				guestFaults++
			}
			if fault == "" || g.noRepeat || guestFaults > maxSandboxRetries || level1Faults > maxLevel1Retries {
				break
			}
			t.Logf("group %q: attempt %d failed as the nested sandbox makes runs fail (%s): running the whole group again", g.name, attempt, fault)
			recordRetry(g.name, fault)
		}
		if g.res != nil {
			recordGroup(g.res)
		}
	})
	return g.res, g.err
}

func (g *group) runOnce(vmm string, console io.Writer) (*sandbox.Result, error) {
	ctx, cancel := context.WithTimeout(context.Background(), g.timeout+time.Minute)
	defer cancel()
	return sandbox.Run(ctx, sandbox.Scenario{
		Name:           g.name,
		VMM:            vmm,
		Script:         g.script,
		Guest:          sandbox.GuestOptions{Scripts: g.guestScripts, Files: g.guestFiles},
		Files:          g.files,
		WithoutVmlinux: !g.needsVmlinux,
		StepTimeout:    g.stepTimeout,
		Timeout:        g.timeout,
		Console:        console,
	})
}

// maxSandboxRetries bounds the reruns of a group after sandboxFault: one.
// A second fault of the same group in one run fails it (issue: a repeat
// can hide a bug, so two are never taken as luck).
const maxSandboxRetries = 1

// maxLevel1Retries bounds the reruns after level 1 itself died or froze
// (its kernel's oops, its heartbeat stopping): two. No guest ran to a
// result then, and the evidence (level 1's oops or registers) is in the
// log and the summary; each such repeat is listed like any other.
const maxLevel1Retries = 2

// sandboxFault names a failure of the kind the nested sandbox itself
// causes, after which the whole group runs again from scratch: a new level
// 1 and the whole script, host side included (servers, files, TAPs), never
// half of it. Measured (tests/README.md): under QEMU's TCG emulation of
// AMD-V, guests of vmm and of QEMU's own microvm alike triple-fault or hang
// at random points of a run, in a few percent of boots, and level 1's own
// kernel sometimes dies in the KVM_RUN path; none of these repeat when the
// same run is repeated. So in nested mode a triple fault, a step that ran
// out of time, level 1 dying or the group running out of time repeat the
// group once; a vmm bug that does this fails the repeat too, and so fails
// the test. The summary lists every repeat with its cause. Any other
// failure, and any failure on hardware KVM (direct mode), repeats nothing.
// foreignRegisters is how vmm's stop report flags registers that cannot be
// the guest's (vcpu.StopState.ForeignCR3).
const foreignRegisters = "these registers are not the guest's"

func sandboxFault(res *sandbox.Result, err error) string {
	if res == nil || res.Mode != sandbox.ModeNested {
		return ""
	}
	switch {
	case errors.Is(err, sandbox.ErrFrozen):
		return "level 1 froze (its heartbeat stopped; registers in the log)"
	case errors.Is(err, sandbox.ErrIncomplete):
		return "level 1 died before its script finished"
	case errors.Is(err, sandbox.ErrTimeout):
		return "the group ran out of time"
	}
	for _, s := range res.Steps {
		switch {
		case s.Contains(foreignRegisters):
			// vmm's stop report: the vCPU's CR3 was outside guest RAM.
			// Each time (1m24s to 6m41s without an exit) RIP was level
			// 1's kvm-amd right after its VMRUN and CR3 one of level
			// 1's own page tables (tests/README.md).
			return fmt.Sprintf("step %q: a vCPU held level 1's registers, not the guest's (%s)", s.Name, s.ErrorLine)
		case strings.Contains(s.ErrorLine, "guest triple fault"):
			return fmt.Sprintf("step %q: %s", s.Name, s.ErrorLine)
		case s.TimedOut:
			return fmt.Sprintf("step %q: the vmm ran out of time (%s)", s.Name, s.ErrorLine)
		}
	}
	return ""
}

// step returns the named step of the group; it fails the test when the step
// never ran or never finished.
func (g *group) step(t *testing.T, name string) *sandbox.Step {
	t.Helper()
	res := g.run(t)
	s := res.Step(name)
	require.NotNil(t, s, "group %q has no step %q; console tail:\n%s", g.name, name, res.Tail(40))
	recordStep(t.Name(), g.name, s)
	t.Logf("step %q: vmm exit %d, vmm wall %v, vmm start to guest init %v",
		name, s.RC, s.VMMTime, s.InitReached.Round(time.Millisecond))
	require.True(t, s.Finished, s.Describe())
	return s
}

// requireCleanExit checks that the vmm exited with status 0 after the guest
// printed want.
func requireCleanExit(t *testing.T, s *sandbox.Step, want string) {
	t.Helper()
	require.False(t, s.TimedOut, s.Describe())
	require.Equal(t, 0, s.RC, s.Describe())
	require.True(t, s.Contains(want), "console lacks %q\n%s", want, s.Describe())
}

// vmmRun is the run_vmm line of a step booting the reference guest.
func vmmRun(step, kernelVar, cmdline string, extra ...string) string {
	args := []string{"run_vmm", step, "run",
		"--kernel", `"$` + kernelVar + `"`,
		"--initrd", `"$GUEST_INITRD"`,
		"--cmdline", `"` + cmdline + `"`}
	return strings.Join(append(args, extra...), " ")
}
