package tests

import (
	"context"
	"errors"
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

	once sync.Once
	res  *sandbox.Result
	err  error
}

// run boots the group's sandbox once and returns its result.
func (g *group) run(t *testing.T) *sandbox.Result {
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
			if fault == "" || attempt > maxSandboxRetries {
				break
			}
			t.Logf("group %q: attempt %d hit a fault of the nested sandbox itself (%s): running the group again", g.name, attempt, fault)
			recordRetry(g.name+" (whole group)", fault)
		}
		if g.res != nil {
			recordGroup(g.res)
			for _, s := range g.res.Steps {
				for _, fault := range s.Retries {
					t.Logf("group %q: step %q was repeated after a fault of the nested sandbox: %s", g.name, s.Name, fault)
					recordRetry(g.name+"/"+s.Name, fault)
				}
			}
		}
	})
	require.NoError(t, g.err, "sandbox run of group %q", g.name)
	return g.res
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

// maxSandboxRetries bounds the reruns of a group after sandboxFault.
const maxSandboxRetries = 2

// sandboxFault names a failure of the nested sandbox itself after which
// the whole group runs again: the level-1 machine dying in the middle of
// the script. Seen here: its kernel panicking ("corrupted stack end
// detected inside scheduler") in the vmm's KVM_RUN path, in a few percent
// of runs; QEMU's TCG emulation of AMD-V is not perfect. The other fault
// seen, a guest triple-faulting at a random point of its boot, costs one
// boot, not the group: run_vmm repeats that boot (scripts/lib.sh). The
// summary lists every repeat; direct mode (hardware KVM) never repeats.
func sandboxFault(res *sandbox.Result, err error) string {
	if res == nil || res.Mode != sandbox.ModeNested {
		return ""
	}
	if errors.Is(err, sandbox.ErrIncomplete) {
		return "level 1 died before its script finished"
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
