package main

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/vmm-dev/vmm/tests/bench/internal/results"
)

// markTick is the line the guest prints every 20 ms with bench.tick=1.
const markTick = "@@BENCH tick"

// snapshotSize is one guest size of the snapshot benchmark and the
// metrics it fills.
type snapshotSize struct {
	mib                int
	create, mem, state string
	run, load, tick    string
}

var snapshotSizes = []snapshotSize{
	{mib: 256, create: results.SnapCreate256, mem: results.SnapMem256, state: results.SnapState,
		run: results.RestoreRun256, load: results.RestoreLoad256, tick: results.RestoreTick256},
	{mib: 1024, create: results.SnapCreate1G, mem: results.SnapMem1G,
		run: results.RestoreRun1G, tick: results.RestoreTick1G},
}

// snapshotBench runs the snapshot benchmark once: for each size, a
// fresh boot through the API to the guest's ticks, a Full snapshot of the
// paused guest, then one `vmm restore` timed to the guest's next
// instruction and next tick; for the first size also Clones restores at
// once, for the memory they share. One sample for all of it.
func (r *runner) snapshotBench(k results.KernelSpec, round int) *results.Sample {
	s := &results.Sample{Kernel: k.Name, VMM: results.VMM, Kind: results.KindSnapshot, Round: round}
	for i, size := range snapshotSizes {
		dir := r.scratch(fmt.Sprintf("snap-%d", size.mib))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			s.Error = err.Error()
			return s
		}
		err := r.snapshotSize(s, k, size, dir, i == 0)
		// The files are level 1's RAM: gone before the next size.
		if rerr := os.RemoveAll(dir); rerr != nil && err == nil {
			err = rerr
		}
		if err != nil {
			s.Error = fmt.Sprintf("%d MiB guest: %v", size.mib, err)
			return s
		}
	}
	if boot, restore := s.Metrics[results.SnapBootTick], s.Metrics[results.RestoreTick256]; boot > 0 && restore > 0 {
		s.SetMetric(results.RestoreVsBoot, restore/boot)
	}
	return s
}

func (r *runner) snapshotSize(s *results.Sample, k results.KernelSpec, size snapshotSize, dir string, first bool) error {
	timeout := time.Duration(r.cfg.BootTimeoutSeconds * float64(time.Second))
	state, mem := filepath.Join(dir, "vm.snap"), filepath.Join(dir, "vm.mem")
	bootTick, create, err := r.bootAndSnapshot(k, size.mib, dir, state, mem, timeout)
	if err != nil {
		return err
	}
	if first {
		s.SetMetric(results.SnapBootTick, ms(bootTick))
	}
	s.SetMetric(size.create, ms(create))
	var st syscall.Stat_t
	if err := syscall.Stat(mem, &st); err != nil {
		return fmt.Errorf("memory file: %w", err)
	}
	s.SetMetric(size.mem, float64(st.Blocks*512)/(1<<20))
	if size.state != "" {
		fi, err := os.Stat(state)
		if err != nil {
			return fmt.Errorf("state file: %w", err)
		}
		s.SetMetric(size.state, float64(fi.Size())/1024)
	}

	// One restore, alone.
	p, tick, err := restoreToTick(r.cfg.VMM, state, mem, time.Now().Add(timeout))
	if p != nil {
		defer func() {
			p.kill()
			p.wait(5 * time.Second)
		}()
	}
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	s.SetMetric(size.tick, ms(tick))
	rep := waitRestoreReport(p, 2*time.Second)
	if rep.RunUnixNano == 0 {
		return fmt.Errorf("restore: vmm never said when the guest ran again: %s", tailText(p.otherOutput(), 5))
	}
	s.SetMetric(size.run, float64(rep.RunUnixNano-p.fork.UnixNano())/1e6)
	if size.load != "" {
		s.SetMetric(size.load, ms(rep.Load))
	}
	p.kill()
	p.wait(5 * time.Second)

	if first && r.cfg.Snapshot.Clones > 0 {
		return r.clones(s, state, mem, r.cfg.Snapshot.Clones, timeout)
	}
	return nil
}

// bootAndSnapshot boots the ticking guest through the API, pauses and
// snapshots it, and stops it; it returns the fork-to-first-tick time and
// the snapshot create call's.
func (r *runner) bootAndSnapshot(k results.KernelSpec, mib int, dir, state, mem string, timeout time.Duration) (time.Duration, time.Duration, error) {
	sock := filepath.Join(dir, "api.sock")
	p, err := start([]string{r.cfg.VMM, "firecracker", "--api-sock", sock, "--id", "bench-snap"}, false)
	if err != nil {
		return 0, 0, fmt.Errorf("start %s: %w", r.cfg.VMM, err)
	}
	defer func() {
		p.kill()
		p.wait(5 * time.Second)
	}()
	fail := func(err error) (time.Duration, time.Duration, error) {
		return 0, 0, fmt.Errorf("%w\n%s\n%s", err, strings.Join(p.tailLines(), "\n"), tailText(p.otherOutput(), 20))
	}
	deadline := time.Now().Add(timeout)
	c := unixClient(sock)
	if err := waitAPI(c, deadline); err != nil {
		return fail(err)
	}
	cmdline := r.cmdline(results.KernelSpec{Name: k.Name, Cmdline: k.Cmdline}, results.VMM) + " bench.tick=1"
	calls := []struct {
		method, path string
		body         any
	}{
		{"PUT", "/machine-config", map[string]any{"vcpu_count": r.cfg.CPUs, "mem_size_mib": mib}},
		{"PUT", "/boot-source", map[string]any{"kernel_image_path": k.BzImage, "initrd_path": r.cfg.Initrd, "boot_args": cmdline}},
		{"PUT", "/actions", map[string]string{"action_type": "InstanceStart"}},
	}
	for _, cl := range calls {
		if err := expectNoContent(c, cl.method, cl.path, cl.body); err != nil {
			return fail(err)
		}
	}
	tick, err := waitLine(p, markTick, deadline)
	if err != nil {
		return fail(err)
	}
	if err := expectNoContent(c, "PATCH", "/vm", map[string]string{"state": "Paused"}); err != nil {
		return fail(err)
	}
	began := time.Now()
	if err := expectNoContent(c, "PUT", "/snapshot/create", map[string]string{
		"snapshot_path": state, "mem_file_path": mem, "snapshot_type": "Full"}); err != nil {
		return fail(err)
	}
	return tick, time.Since(began), nil
}

func expectNoContent(c *http.Client, method, path string, body any) error {
	code, text, err := apiCall(c, method, path, body)
	if err != nil || code != http.StatusNoContent {
		return fmt.Errorf("%s %s: HTTP %d %s %v", method, path, code, text, err)
	}
	return nil
}

// waitLine waits for a whole line starting with prefix and returns when it
// came, from the fork.
func waitLine(p *proc, prefix string, deadline time.Time) (time.Duration, error) {
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	for {
		select {
		case l, ok := <-p.lines:
			if !ok {
				return 0, fmt.Errorf("the VMM's console closed before a %q line", prefix)
			}
			if !l.partial && strings.HasPrefix(l.text, prefix) {
				return l.at, nil
			}
		case <-timer.C:
			return 0, fmt.Errorf("no %q line in time", prefix)
		}
	}
}

// restoreToTick starts `vmm restore` of the snapshot and waits for the
// guest's next tick line; the process is returned running (nil if it
// did not start).
func restoreToTick(vmm, state, mem string, deadline time.Time) (*proc, time.Duration, error) {
	p, err := start([]string{vmm, "restore", "--snapshot-path", state, "--mem-file-path", mem}, false)
	if err != nil {
		return nil, 0, fmt.Errorf("start %s: %w", vmm, err)
	}
	tick, err := waitLine(p, markTick, deadline)
	if err != nil {
		return p, 0, fmt.Errorf("%w: %s", err, tailText(p.otherOutput(), 10))
	}
	return p, tick, nil
}

// waitRestoreReport reads the restore's stderr until it says when the
// guest ran again, for at most d: the line comes from a goroutine of vmm
// and can trail the guest's first console output.
func waitRestoreReport(p *proc, d time.Duration) results.RestoreReport {
	end := time.Now().Add(d)
	for {
		rep := results.ParseRestore(p.otherOutput())
		if rep.RunUnixNano != 0 || time.Now().After(end) {
			return rep
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// clones runs n restores of one snapshot at once and, once each has
// ticked, sums their Rss and Pss.
func (r *runner) clones(s *results.Sample, state, mem string, n int, timeout time.Duration) error {
	var procs []*proc
	defer func() {
		for _, p := range procs {
			p.kill()
		}
		for _, p := range procs {
			p.wait(5 * time.Second)
		}
	}()
	for i := 0; i < n; i++ {
		p, err := start([]string{r.cfg.VMM, "restore", "--snapshot-path", state, "--mem-file-path", mem}, false)
		if err != nil {
			return fmt.Errorf("clone %d: start: %w", i, err)
		}
		procs = append(procs, p)
	}
	deadline := time.Now().Add(timeout)
	for i, p := range procs {
		if _, err := waitLine(p, markTick, deadline); err != nil {
			return fmt.Errorf("clone %d: %w: %s", i, err, tailText(p.otherOutput(), 10))
		}
	}
	var rss, pss uint64
	var errs []error
	for i, p := range procs {
		f, err := os.Open(fmt.Sprintf("/proc/%d/smaps_rollup", p.cmd.Process.Pid))
		if err != nil {
			errs = append(errs, fmt.Errorf("clone %d: %w", i, err))
			continue
		}
		r, q, err := results.ParseSmapsRollup(f)
		errs = append(errs, f.Close())
		if err != nil {
			errs = append(errs, fmt.Errorf("clone %d: %w", i, err))
			continue
		}
		rss, pss = rss+r, pss+q
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	s.SetMetric(results.ClonesRSS, float64(rss)/1024)
	s.SetMetric(results.ClonesPSS, float64(pss)/1024)
	s.Notef("%d clones of the 256 MiB snapshot: %.1f MiB RSS and %.1f MiB PSS in all, %.1f MiB PSS each",
		n, float64(rss)/1024, float64(pss)/1024, float64(pss)/1024/float64(n))
	return nil
}
