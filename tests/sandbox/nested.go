package sandbox

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Level-1 machine: QEMU's TCG emulates AMD-V with nested paging, so KVM in
// the level-1 kernel (kvm-amd) runs guests with hardware-KVM semantics.
const (
	l1CPUs      = "2"
	l1MemoryMiB = "3072"
	l1Cmdline   = "console=ttyS0 panic=-1 quiet"
)

// L1AppendEnv adds to the level-1 kernel's command line, e.g. "loglevel=7"
// to see its whole boot log instead of "quiet".
const L1AppendEnv = "VMM_L1_APPEND"

// QEMUEnv overrides level 1's QEMU binary (default: Level1QEMU's choice).
const QEMUEnv = "VMM_QEMU"

// Level-1 machine overrides, for measuring the sandbox's own fault rate
// under other configurations (tests/README.md): VMM_L1_ACCEL replaces the
// -accel value, VMM_L1_CPU the -cpu model, VMM_L1_SMP the CPU count.
const (
	L1AccelEnv = "VMM_L1_ACCEL"
	L1CPUEnv   = "VMM_L1_CPU"
	L1SMPEnv   = "VMM_L1_SMP"
	// L1KVMAMDEnv gives level 1's kvm-amd module parameters ("vgif=0").
	L1KVMAMDEnv = "VMM_L1_KVM_AMD"
)

// Level-1 defaults, chosen by the fault-rate measurement in tests/README.md.
const (
	l1Accel = "tcg,thread=multi"
	l1CPU   = "EPYC,+svm,+npt"
)

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// afterDoneGrace is how long a run may go on after "@@L1 done".
var afterDoneGrace = 10 * time.Second

func qemuArgs(kernel, initrd string) []string {
	return []string{
		"-accel", envOr(L1AccelEnv, l1Accel),
		"-M", "q35",
		"-cpu", envOr(L1CPUEnv, l1CPU),
		"-smp", envOr(L1SMPEnv, l1CPUs),
		"-m", l1MemoryMiB,
		"-kernel", kernel,
		"-initrd", initrd,
		"-append", strings.TrimSpace(l1Cmdline + " " + os.Getenv(L1AppendEnv)),
		"-nographic", "-no-reboot", "-nodefaults",
		"-serial", "stdio",
	}
}

func runNested(ctx context.Context, p prepared) (*Result, error) {
	sc := p.sc
	env := p.env(ModeNested, l1VMM, l1BzImage, l1Vmlinux, l1Initrd, l1Work, l1Data, l1SandboxDir)
	if sc.WithoutVmlinux {
		env["GUEST_VMLINUX"] = ""
	}
	l1Initrd := filepath.Join(p.tmp, "l1-initrd.cpio.gz")
	err := buildL1Initramfs(l1Content{
		kernel:      p.kernel,
		vmm:         sc.VMM,
		guestInitrd: p.guestInitrd,
		withVmlinux: !sc.WithoutVmlinux,
		files:       sc.Files,
		envFile:     envFile(env, sc.Args),
		scenario:    p.scenarioScript(),
		// Measured: level 1 reached its init 3 s after boot with a gzip
		// initramfs of 70 MB, but 10 s with the same archive uncompressed
		// and 14 s with lz4.
		compress: true,
	}, l1Initrd)
	if err != nil {
		return nil, fmt.Errorf("sandbox: scenario %q: %w", sc.Name, err)
	}

	qemu, err := Level1QEMU(ctx)
	if err != nil {
		return nil, err
	}
	fw := newFreezeWatch(p.tmp)
	cmd := exec.CommandContext(ctx, qemu, append(qemuArgs(p.kernel.BzImage, l1Initrd), fw.qemuArgs()...)...)
	return supervise(ctx, cmd, sc, ModeNested, "qemu", fw)
}

// supervise runs cmd (QEMU or the direct-mode shell) in its own process
// group, streams its output into a Result and kills the whole group when
// ctx ends.
// fw, when set, ends a run whose level 1 froze.
func supervise(ctx context.Context, cmd *exec.Cmd, sc Scenario, mode Mode, what string, fw *freezeWatch) (*Result, error) {
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("sandbox: %s: %w", what, err)
	}
	if mode == ModeDirect {
		cmd.Stderr = cmd.Stdout // the script's stderr is console output too
	}
	stderr := &tailBuffer{max: 4096}
	if cmd.Stderr == nil {
		cmd.Stderr = stderr
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second

	start := time.Now()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("sandbox: start %s: %w", what, err)
	}
	c := newCollector(sc.Name, mode)
	var mu sync.Mutex
	streamed := make(chan struct{})
	go func() {
		stream(stdout, start, c, &mu, sc.Console)
		close(streamed)
	}()
	if fw != nil {
		fw.pid = cmd.Process.Pid
		wctx, stopWatch := context.WithCancel(ctx)
		defer stopWatch()
		go func() {
			report := fw.watch(wctx)
			if report == "" {
				return
			}
			mu.Lock()
			c.frozen = report
			for _, l := range strings.Split(strings.TrimRight(report, "\n"), "\n") {
				c.line(time.Since(start), "sandbox: "+l)
			}
			mu.Unlock()
			if sc.Console != nil {
				_, _ = fmt.Fprintln(sc.Console, "sandbox: "+report)
			}
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		}()
	}
	// A background process of the script may keep the console open after
	// "@@L1 done" (or QEMU may hang powering off): give it a grace period.
	select {
	case <-streamed:
	case <-c.finished:
		select {
		case <-streamed:
		case <-time.After(afterDoneGrace):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-streamed
		}
	}
	waitErr := cmd.Wait()
	// Children of the script (a vmm left behind) die with the group.
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	mu.Lock()
	defer mu.Unlock()
	if fw != nil && !c.done && c.frozen == "" {
		c.reset = fw.resetReport()
	}
	return outcome(ctx, c, start, waitErr, stderr, what)
}
