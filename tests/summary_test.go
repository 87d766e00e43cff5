package tests

import (
	"fmt"
	"io"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/vmm-dev/vmm/tests/sandbox"
)

// timings collects what the summary table prints at the end of the run.
var timings struct {
	mu     sync.Mutex
	steps  []stepTiming
	groups []*sandbox.Result
	// retries are the sandbox faults after which a whole group ran again.
	retries []string
}

type stepTiming struct {
	test, group string
	step        *sandbox.Step
}

func recordStep(test, group string, s *sandbox.Step) {
	timings.mu.Lock()
	defer timings.mu.Unlock()
	timings.steps = append(timings.steps, stepTiming{test: test, group: group, step: s})
}

func recordGroup(res *sandbox.Result) {
	timings.mu.Lock()
	defer timings.mu.Unlock()
	timings.groups = append(timings.groups, res)
}

func recordRetry(group, fault string) {
	timings.mu.Lock()
	defer timings.mu.Unlock()
	timings.retries = append(timings.retries, group+": "+fault)
}

// printSummary prints every scenario's vmm wall time and boot time (vmm
// start to the guest's first user-space line), then the sandbox runs.
func printSummary(w io.Writer) {
	timings.mu.Lock()
	defer timings.mu.Unlock()
	if len(timings.groups) == 0 {
		return
	}
	tw := tabwriter.NewWriter(w, 2, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "\nSCENARIO\tGROUP/STEP\tVMM EXIT\tVMM WALL\tTO GUEST INIT")
	for _, st := range timings.steps {
		exit := fmt.Sprint(st.step.RC)
		if st.step.TimedOut {
			exit = "timeout"
		} else if !st.step.Finished {
			exit = "unfinished"
		}
		fmt.Fprintf(tw, "%s\t%s/%s\t%s\t%s\t%s\n", st.test, st.group, st.step.Name, exit,
			fmtDuration(st.step.VMMTime), fmtDuration(st.step.InitReached))
	}
	fmt.Fprintln(tw, "\nSANDBOX RUN\tMODE\tLEVEL 1 READY\tWALL\t")
	var total time.Duration
	for _, g := range timings.groups {
		total += g.Wall
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t\n", g.Scenario, g.Mode, fmtDuration(g.L1Ready), fmtDuration(g.Wall))
	}
	fmt.Fprintf(tw, "total\t\t\t%s\t\n", fmtDuration(total))
	_ = tw.Flush()
	if len(timings.retries) > 0 {
		fmt.Fprintf(w, "\n%d group(s) repeated from scratch after a failure of the kind the nested sandbox causes (tests/README.md):\n", len(timings.retries))
		for _, r := range timings.retries {
			fmt.Fprintf(w, "  %s\n", r)
		}
	}
}

func fmtDuration(d time.Duration) string {
	if d == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2fs", d.Seconds())
}
