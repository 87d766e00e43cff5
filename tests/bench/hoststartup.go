package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"syscall"
	"time"

	"github.com/vmm-dev/vmm/tests/bench/internal/results"
)

// hostStartup measures VMM start-up (process start to the first KVM_RUN)
// on this machine's own /dev/kvm, where the VMM process runs at native
// speed; the guest need not boot (here it cannot: see ENVIRONMENT.md).
type hostStartup struct {
	vmm, qemu, qemuDataDir string
	kernel, initrd, disk   string
	cmdline                string
	memoryMiB, cpus        int
}

func (h *hostStartup) vmmArgs(stats bool) []string {
	args := []string{h.vmm, "run", "--allow-emulated", "--kernel", h.kernel, "--initrd", h.initrd,
		"--cmdline", h.cmdline, "--cpus", fmt.Sprint(h.cpus), "--memory", fmt.Sprintf("%dM", h.memoryMiB),
		"--console", "none", "--disk", h.disk}
	if stats {
		args = append(args, "--stats")
	}
	return args
}

func (h *hostStartup) qemuArgs() []string {
	return []string{h.qemu, "-L", h.qemuDataDir,
		"-M", qemuMachine, "-enable-kvm", "-cpu", "host",
		"-smp", fmt.Sprint(h.cpus), "-m", fmt.Sprintf("%dM", h.memoryMiB),
		"-nodefaults", "-no-user-config", "-nographic", "-no-reboot", "-serial", "null",
		"-kernel", h.kernel, "-initrd", h.initrd, "-append", h.cmdline,
		"-drive", "id=d0,file=" + h.disk + ",format=raw,if=none", "-device", "virtio-blk-device,drive=d0"}
}

// qemuMachine matches the level-1 runner's (tests/bench/benchrun).
const qemuMachine = "microvm,x-option-roms=off,pit=off,pic=off,isa-serial=on,rtc=off,acpi=on"

// run measures rounds times, alternating the VMMs: strace for both, and
// vmm's own --stats line.
func (h *hostStartup) run(ctx context.Context, rounds int, log io.Writer) []*results.Sample {
	var out []*results.Sample
	// A VMM that cannot start on this host at all (QEMU on a /dev/kvm
	// without the MSRs it sets, for one) fails once, not every round.
	broken := map[string]bool{}
	for round := 0; round < rounds; round++ {
		order := []string{results.VMM, results.QEMU}
		if round%2 == 1 {
			order = []string{results.QEMU, results.VMM}
		}
		for _, v := range order {
			if broken[v] {
				continue
			}
			s := &results.Sample{Kernel: "debian", VMM: v, Kind: results.KindStartup, Round: round, Where: "host"}
			argv := h.qemuArgs()
			if v == results.VMM {
				argv = h.vmmArgs(false)
			}
			d, err := straceStartup(ctx, argv)
			if err != nil {
				s.Error = err.Error()
				if round == 0 {
					broken[v] = true
					s.Error += " (not tried again on this host)"
				}
			} else {
				s.SetMetric(results.StartupStrace, ms(d))
			}
			self := h.vmmSelfStartup
			if v == results.QEMU {
				self = h.qemuSelfStartup
			}
			if d, err := self(ctx); err != nil {
				s.Notef("self-reported start-up: %v", err)
			} else {
				s.SetMetric(results.StartupSelf, ms(d))
			}
			fmt.Fprintf(log, "bench: host start-up %s round %d: %v %v\n", v, round, s.Metrics, s.Error)
			out = append(out, s)
		}
	}
	return out
}

// straceStartup runs argv under strace and stops it at the first KVM_RUN.
func straceStartup(ctx context.Context, argv []string) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	args := append(append([]string(nil), results.StraceArgs...), argv...)
	cmd := exec.CommandContext(ctx, "strace", args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return 0, err
	}
	cmd.Stdout = io.Discard
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("strace: %w", err)
	}
	trace, tail := results.WatchStrace(stderr)
	// Stop the VMM (and strace) at its first KVM_RUN.
	// Errors do not matter here: the group may be gone already, and the
	// rest of the output is not needed (only read so that Wait can end).
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	_, _ = io.Copy(io.Discard, stderr)
	waitErr := cmd.Wait()
	if !trace.Done() {
		return 0, fmt.Errorf("no KVM_RUN in strace output (%v): %q", waitErr, tail)
	}
	return trace.Startup(), nil
}

// vmmSelfStartup runs vmm with --stats, stops it with SIGTERM once the
// guest runs, and reads its "first KVM_RUN ... unix-ns=N" line.
func (h *hostStartup) vmmSelfStartup(ctx context.Context) (time.Duration, error) {
	argv := h.vmmArgs(true)
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	cmd.Stdout = io.Discard
	fork := time.Now()
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	select {
	case err := <-exited:
		return 0, fmt.Errorf("vmm exited early (%v): %s", err, tailOf(stderr.String(), 3))
	case <-time.After(time.Second):
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return 0, err
	}
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		if err := cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
			return 0, err
		}
		<-exited
	}
	st := results.ParseVMMStats(stderr.String())
	if st.FirstRunUnixNano == 0 {
		return 0, fmt.Errorf("no start-up line in vmm --stats: %s", tailOf(stderr.String(), 3))
	}
	return time.Unix(0, st.FirstRunUnixNano).Sub(fork), nil
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// qemuSelfStartup runs QEMU with its vCPU ioctls traced and stops it at
// the first KVM_RUN.
func (h *hostStartup) qemuSelfStartup(ctx context.Context) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	argv := append(h.qemuArgs(), results.QEMUTraceArgs...)
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Stdout = io.Discard
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return 0, err
	}
	fork := time.Now()
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	var first time.Time
	var tail []string
	sc := bufio.NewScanner(stderr)
	for sc.Scan() {
		if at, ok := results.QEMUFirstRun(sc.Text()); ok {
			first = at
			break
		}
		tail = append(tail, sc.Text())
		if len(tail) > 3 {
			tail = tail[1:]
		}
	}
	// Stopped at its first KVM_RUN; the kill and the drain only let Wait
	// end, their errors do not matter.
	_ = cmd.Process.Kill()
	_, _ = io.Copy(io.Discard, stderr)
	waitErr := cmd.Wait()
	if first.IsZero() {
		return 0, fmt.Errorf("no KVM_RUN in QEMU's trace (%v): %q", waitErr, tail)
	}
	return first.Sub(fork), nil
}
