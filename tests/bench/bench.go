package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/vmm-dev/vmm/tests/bench/internal/results"
	"github.com/vmm-dev/vmm/tests/guestkernel"
	"github.com/vmm-dev/vmm/tests/sandbox"
)

// The guest command line of both VMMs: the sandbox's, with "quiet" so that
// the kernel's boot log (one port I/O exit per character on the 8250)
// does not dominate boot time.
const defaultGuestCmdline = sandbox.DefaultGuestCmdline + " quiet"

// environment is what every subcommand needs.
type environment struct {
	repo, cache, tmp string
}

func newEnvironment(ctx context.Context) (*environment, error) {
	repo, err := sandbox.RepoRoot(ctx)
	if err != nil {
		return nil, err
	}
	cache, err := sandbox.CacheDir()
	if err != nil {
		return nil, err
	}
	return &environment{repo: repo, cache: cache}, nil
}

// goBuild builds a static binary of a package of the module.
func (e *environment) goBuild(ctx context.Context, pkg, out string) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags=-s -w", "-o", out, pkg)
	cmd.Dir = e.repo
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if msg, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("build %s: %w\n%s", pkg, err, strings.TrimSpace(string(msg)))
	}
	return nil
}

// report is the JSON file.
type report struct {
	Started  time.Time         `json:"started"`
	Meta     map[string]string `json:"meta"`
	Config   *results.Config   `json:"sandbox_config"`
	Summary  []results.Row     `json:"summary"`
	Samples  []*results.Sample `json:"samples"`
	Problems []string          `json:"problems,omitempty"`
}

func benchAction(c *cli.Context) error {
	ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
	defer stop()
	started := time.Now()
	env, err := newEnvironment(ctx)
	if err != nil {
		return err
	}
	if env.tmp, err = os.MkdirTemp("", "vmm-bench-"); err != nil {
		return err
	}
	defer os.RemoveAll(env.tmp)
	rep := &report{Started: started, Meta: map[string]string{}}
	log := os.Stderr

	mode := sandbox.Mode(c.String("mode"))
	why := "--mode"
	if mode == "" {
		if mode, why, err = sandbox.DetectMode(); err != nil {
			return err
		}
	}
	fmt.Fprintf(log, "bench: sandbox in %s mode (%s)\n", mode, why)
	rep.Meta["mode"] = string(mode)

	// Binaries: vmm, the level-1 runner, the guest helper.
	bins := filepath.Join(env.tmp, "bin")
	vmm := c.String("vmm")
	if vmm == "" {
		vmm = filepath.Join(bins, "vmm")
		if err := env.goBuild(ctx, "./cmd/vmm", vmm); err != nil {
			return err
		}
	}
	benchrun := filepath.Join(bins, "benchrun")
	benchguest := filepath.Join(bins, "benchguest")
	for pkg, out := range map[string]string{"./tests/bench/benchrun": benchrun, "./tests/guest/benchguest": benchguest} {
		if err := env.goBuild(ctx, pkg, out); err != nil {
			return err
		}
	}
	rep.Meta["vmm_commit"] = gitCommit(ctx, env.repo)

	kernel, err := sandbox.Kernel(ctx)
	if err != nil {
		return err
	}
	rep.Meta["debian_kernel"] = kernel.Package + " " + kernel.Version
	guest, err := guestOptions(benchguest)
	if err != nil {
		return err
	}

	cfg := &results.Config{
		Rounds: c.Int("runs"), Initrd: "$GUEST_INITRD", VMM: "$VMM",
		CPUs: c.Int("cpus"), MemoryMiB: c.Int("memory-mib"),
		IdleSeconds: c.Float64("idle"), IOSeconds: c.Float64("io-seconds"),
		NetBytes: c.Int64("net-mib") << 20, NetDownBytes: c.Int64("net-down-mib") << 20,
		BootTimeoutSeconds: 120, Work: "$WORK",
		ShowGuestConsole: c.Bool("guest-console"), PCI: c.Bool("pci"),
	}
	if c.Bool("snapshot") {
		cfg.Snapshot = &results.SnapshotSpec{Clones: c.Int("clones")}
	}
	var files []sandbox.File
	if c.Bool("command") {
		spec, more, problem, err := commandSpec(ctx, env, kernel, c, log)
		if err != nil {
			return err
		}
		if problem != "" {
			rep.Meta["command_9p"] = problem
			fmt.Fprintln(log, "bench:", problem)
		}
		cfg.Command = spec
		files = append(files, more...)
	}
	guestCmdline := c.String("cmdline")
	for i, name := range c.StringSlice("kernels") {
		switch name {
		case "debian":
			cfg.Kernels = append(cfg.Kernels, results.KernelSpec{Name: "debian", BzImage: "$GUEST_BZIMAGE", Cmdline: guestCmdline, IO: i == 0})
		case "minimal":
			bz, err := minimalKernel(ctx, env.repo, env.cache, c.Bool("build-kernel"), log)
			if err != nil {
				return err
			}
			files = append(files, sandbox.File{Name: "minimal-bzImage", HostPath: bz})
			cfg.Kernels = append(cfg.Kernels, results.KernelSpec{Name: "minimal", BzImage: "$DATA/minimal-bzImage", Cmdline: guestCmdline, IO: i == 0})
			rep.Meta["minimal_kernel"] = bz
		case "kvmguest":
			// No virtio-mmio in it: over MMIO it boots without devices.
			bz, err := guestkernel.Path(ctx, env.repo, env.cache, guestkernel.KVMGuest, c.Bool("build-kernel"), log)
			if err != nil {
				return err
			}
			files = append(files, sandbox.File{Name: "kvmguest-bzImage", HostPath: bz})
			cfg.Kernels = append(cfg.Kernels, results.KernelSpec{Name: "kvmguest", BzImage: "$DATA/kvmguest-bzImage", Cmdline: guestCmdline, IO: i == 0})
			rep.Meta["kvmguest_kernel"] = bz
		default:
			return cli.Exit(fmt.Sprintf("--kernels: unknown kernel %q (debian, minimal, kvmguest)", name), 2)
		}
	}
	if len(cfg.Kernels) == 0 || cfg.Rounds < 1 {
		return cli.Exit("nothing to run: give --kernels and --runs >= 1", 2)
	}
	if c.Int("disk-mib") > 0 {
		cfg.Disk = "$WORK/disk.img"
	}
	if c.Int64("net-mib") > 0 {
		cfg.Net = &results.NetSpec{Port: 5201, Links: map[string]results.NetLink{
			results.VMM:  {Tap: "tapv", HostIP: "10.0.1.1", GuestIP: "10.0.1.2", MAC: "02:00:00:00:01:02"},
			results.QEMU: {Tap: "tapq", HostIP: "10.0.2.1", GuestIP: "10.0.2.2", MAC: "02:00:00:00:02:02"},
		}}
	}

	// QEMU and strace with their libraries, the runner, the config.
	qemu, bios, err := hostQEMU()
	if err != nil {
		return err
	}
	rep.Meta["qemu"] = firstLine(ctx, qemu, "--version")
	b := newBundle()
	if cfg.QEMU, err = b.add(ctx, qemu); err != nil {
		return err
	}
	b.addData(bios, "bios-microvm.bin")
	cfg.QEMUDataDir = "$DATA/" + bundleDir + "/share"
	if strace, err := exec.LookPath("strace"); err == nil {
		if cfg.Strace, err = b.add(ctx, strace); err != nil {
			return err
		}
	} else {
		rep.Problems = append(rep.Problems, "strace not found (Debian: apt-get install strace): no strace start-up measurement")
	}
	files = append(files, b.files...)
	files = append(files, sandbox.File{Name: "benchrun", HostPath: benchrun, Mode: 0o755})
	cfgJSON, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return err
	}
	files = append(files, sandbox.File{Name: "bench-config.json", Data: cfgJSON})
	rep.Config = cfg

	// Start-up on this machine's /dev/kvm first, while the host is quiet.
	if n := c.Int("host-runs"); n > 0 {
		samples, problem := runHostStartup(ctx, env, kernel, guest, vmm, qemu, filepath.Dir(bios), cfg, n)
		rep.Samples = append(rep.Samples, samples...)
		if problem != "" {
			rep.Problems = append(rep.Problems, problem)
			fmt.Fprintln(log, "bench:", problem)
		}
	}

	fmt.Fprintf(log, "bench: sandbox run: %d rounds x %d kernels x 2 VMMs\n", cfg.Rounds, len(cfg.Kernels))
	sc := sandbox.Scenario{
		Name: "bench", VMM: vmm, Script: level1Script(cfg, c.Int("disk-mib")),
		Guest: guest, Files: files, WithoutVmlinux: true,
		Timeout: c.Duration("timeout"), StepTimeout: c.Duration("timeout"),
		Mode: mode, Kernel: kernel, Console: progressWriter{},
	}
	if c.Bool("console") {
		sc.Console = os.Stdout
	}
	res, runErr := sandbox.Run(ctx, sc)
	if res != nil {
		rep.Meta["level1_ready"] = res.L1Ready.Round(time.Millisecond).String()
		rep.Meta["sandbox_wall"] = res.Wall.Round(time.Millisecond).String()
		for _, l := range res.Console {
			s, ok, err := results.ParseLine(l.Text)
			switch {
			case err != nil:
				rep.Problems = append(rep.Problems, err.Error())
			case ok:
				rep.Samples = append(rep.Samples, s)
			case strings.Contains(l.Text, "@@BENCH-FATAL"):
				rep.Problems = append(rep.Problems, l.Text)
			}
		}
	}
	if runErr != nil {
		rep.Problems = append(rep.Problems, runErr.Error())
	}
	return finish(c, rep, started)
}

// finish prints the table and the failures and writes the JSON.
func finish(c *cli.Context, rep *report, started time.Time) error {
	rep.Summary = results.Summarize(rep.Samples)
	fmt.Println()
	if err := results.WriteTable(os.Stdout, rep.Summary); err != nil {
		return err
	}
	failed := 0
	for _, s := range rep.Samples {
		if s.Error != "" {
			failed++
			fmt.Printf("FAILED %s %s %s %s round %d: %s\n", s.Where, s.Kind, s.Kernel, s.VMM, s.Round, s.Error)
			for _, l := range s.ConsoleTail {
				fmt.Printf("    %s\n", l)
			}
		}
	}
	for _, p := range rep.Problems {
		fmt.Printf("PROBLEM %s\n", p)
	}
	rep.Meta["wall"] = time.Since(started).Round(time.Second).String()
	data, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(c.String("json"), data, 0o644); err != nil {
		return err
	}
	fmt.Printf("\nbench: %d samples (%d failed) in %s; results in %s\n", len(rep.Samples), failed, rep.Meta["wall"], c.String("json"))
	if len(rep.Samples) == 0 || len(rep.Problems) > 0 {
		return cli.Exit("", 1)
	}
	return nil
}

// level1Script prepares level 1 (debugfs for KVM's counters, the TAPs,
// the disk image) and starts the runner.
func level1Script(cfg *results.Config, diskMiB int) string {
	var b strings.Builder
	b.WriteString("mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null\n")
	if cfg.Net != nil {
		for _, v := range []string{results.VMM, results.QEMU} {
			l := cfg.Net.Links[v]
			fmt.Fprintf(&b, "tunctl -t %s >/dev/null && ip addr add %s/24 dev %s && ip link set %s up || echo \"@@BENCH-FATAL cannot set up TAP %s\"\n",
				l.Tap, l.HostIP, l.Tap, l.Tap, l.Tap)
		}
	}
	if diskMiB > 0 {
		fmt.Fprintf(&b, "dd if=/dev/zero of=\"$WORK/disk.img\" bs=1M count=%d 2>/dev/null || echo \"@@BENCH-FATAL cannot create the disk image\"\n", diskMiB)
	}
	if c := cfg.Command; c != nil {
		// The share: a big file of random bytes, and a tree of empty
		// files in ShareDirs directories.
		fmt.Fprintf(&b, `mkdir -p %[1]s/tree && dd if=/dev/urandom of=%[1]s/big bs=1M count=%[2]d 2>/dev/null || echo "@@BENCH-FATAL cannot create the share"
d=0; while [ $d -lt %[3]d ]; do mkdir %[1]s/tree/$d; f=0; while [ $f -lt %[4]d ]; do : > %[1]s/tree/$d/$f; f=$((f + 1)); done; d=$((d + 1)); done
`, c.Dir, c.ShareMiB, results.ShareDirs, c.ShareFiles/results.ShareDirs)
	}
	b.WriteString("\"$DATA/benchrun\" \"$DATA/bench-config.json\"\n")
	return b.String()
}

// progressWriter shows the runner's progress lines of level 1's console.
type progressWriter struct{}

func (progressWriter) Write(p []byte) (int, error) {
	text := string(p)
	if strings.HasPrefix(text, "bench:") || strings.Contains(text, "@@BENCH-FATAL") || strings.HasPrefix(text, "@@L1") {
		if _, err := os.Stderr.Write(p); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

func gitCommit(ctx context.Context, repo string) string {
	out, err := exec.CommandContext(ctx, "git", "-C", repo, "rev-parse", "--short", "HEAD").Output()
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(out))
}

func firstLine(ctx context.Context, name string, args ...string) string {
	out, err := exec.CommandContext(ctx, name, args...).Output()
	if err != nil {
		return "unknown"
	}
	line, _, _ := strings.Cut(string(out), "\n")
	return strings.TrimSpace(line)
}

// runHostStartup measures start-up on this machine's /dev/kvm; problem
// says why it could not.
func runHostStartup(ctx context.Context, env *environment, k *sandbox.KernelFiles, guest sandbox.GuestOptions,
	vmm, qemu, qemuData string, cfg *results.Config, rounds int) ([]*results.Sample, string) {
	if _, err := exec.LookPath("strace"); err != nil {
		return nil, "host start-up skipped: strace not found"
	}
	f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Sprintf("host start-up skipped: /dev/kvm: %v", err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Sprintf("host start-up skipped: /dev/kvm: %v", err)
	}
	initrd := filepath.Join(env.tmp, "guest-initrd.gz")
	if err := sandbox.BuildGuestInitramfs(k, guest, initrd); err != nil {
		return nil, fmt.Sprintf("host start-up skipped: %v", err)
	}
	disk := filepath.Join(env.tmp, "disk.img")
	if err := os.WriteFile(disk, nil, 0o644); err != nil {
		return nil, fmt.Sprintf("host start-up skipped: %v", err)
	}
	if err := os.Truncate(disk, 256<<20); err != nil {
		return nil, fmt.Sprintf("host start-up skipped: %v", err)
	}
	h := &hostStartup{vmm: vmm, qemu: qemu, qemuDataDir: qemuData, kernel: k.BzImage, initrd: initrd, disk: disk,
		cmdline: cfg.Kernels[0].Cmdline, memoryMiB: cfg.MemoryMiB, cpus: cfg.CPUs}
	return h.run(ctx, rounds, os.Stderr), ""
}
