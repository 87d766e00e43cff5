// Command sandbox boots vmm guests where the host cannot: in a nested
// QEMU-TCG machine whose kernel has a real /dev/kvm, or directly on hosts
// with hardware virtualization.
//
//	go run ./tests/cmd/sandbox boot [-- extra vmm run arguments]
//	go run ./tests/cmd/sandbox prepare
//	go run ./tests/cmd/sandbox script FILE [-- script arguments]
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/vmm-dev/vmm/tests/guestkernel"
	"github.com/vmm-dev/vmm/tests/sandbox"
)

func main() {
	app := &cli.App{
		Name:  "sandbox",
		Usage: "boot vmm guests in the nested-KVM sandbox",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "mode", Usage: "nested or direct (default: detect; also $VMM_SANDBOX)"},
			&cli.StringFlag{Name: "vmm", Usage: "use this static vmm binary instead of building ./cmd/vmm"},
			&cli.DurationFlag{Name: "timeout", Value: 10 * time.Minute, Usage: "limit for the whole run"},
		},
		Commands: []*cli.Command{
			{
				Name:      "boot",
				Usage:     "boot the reference guest (Debian's cloud kernel) and show its console",
				ArgsUsage: "[-- extra vmm run arguments]",
				Flags: []cli.Flag{
					&cli.BoolFlag{Name: "pvh", Usage: "boot the extracted vmlinux (PVH entry) instead of the bzImage"},
					&cli.StringFlag{Name: "cmdline", Value: sandbox.DefaultGuestCmdline, Usage: "guest kernel command line"},
				},
				Action: boot,
			},
			{
				Name:   "prepare",
				Usage:  "download and build the artifacts the sandbox needs",
				Action: prepare,
			},
			{
				Name:      "script",
				Usage:     "run a level-1 script (busybox sh with run_vmm and friends) and show the console",
				ArgsUsage: "FILE [-- script arguments]",
				Action:    script,
			},
		},
	}
	if err := app.Run(os.Args); err != nil {
		var exit cli.ExitCoder
		if !errors.As(err, &exit) {
			fmt.Fprintln(os.Stderr, "sandbox:", err)
			os.Exit(1)
		}
		if msg := exit.Error(); msg != "" {
			fmt.Fprintln(os.Stderr, "sandbox:", msg)
		}
		os.Exit(exit.ExitCode())
	}
}

func boot(c *cli.Context) error {
	kernelVar := "GUEST_BZIMAGE"
	if c.Bool("pvh") {
		kernelVar = "GUEST_VMLINUX"
	}
	// "$@" are the extra vmm arguments; they come after ours so they win.
	body := fmt.Sprintf(`run_vmm boot run --kernel "$%s" --initrd "$GUEST_INITRD" --cmdline "$BOOT_CMDLINE" "$@"`, kernelVar)
	return runScript(c, "boot", body, c.Args().Slice(), map[string]string{"BOOT_CMDLINE": c.String("cmdline")}, !c.Bool("pvh"))
}

func script(c *cli.Context) error {
	if c.NArg() < 1 {
		return cli.Exit("script: missing FILE", 2)
	}
	body, err := os.ReadFile(c.Args().First())
	if err != nil {
		return cli.Exit(err.Error(), 1)
	}
	return runScript(c, "script", string(body), c.Args().Tail(), nil, false)
}

func runScript(c *cli.Context, name, body string, args []string, env map[string]string, withoutVmlinux bool) error {
	if len(args) > 0 && args[0] == "--" {
		args = args[1:] // urfave/cli keeps the separator after a command
	}
	ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
	defer stop()
	mode, why, err := mode(c)
	if err != nil {
		return cli.Exit(err.Error(), 2)
	}
	fmt.Fprintf(os.Stderr, "sandbox: %s mode (%s)\n", mode, why)
	vmm, cleanup, err := vmmBinary(ctx, c.String("vmm"))
	if err != nil {
		return cli.Exit(err.Error(), 1)
	}
	defer cleanup()

	res, err := sandbox.Run(ctx, sandbox.Scenario{
		Name:           name,
		VMM:            vmm,
		Script:         body,
		Args:           args,
		Env:            env,
		WithoutVmlinux: withoutVmlinux,
		StepTimeout:    c.Duration("timeout"),
		Timeout:        c.Duration("timeout"),
		Console:        os.Stdout,
		Mode:           mode,
	})
	if err != nil {
		return cli.Exit(err.Error(), 1)
	}
	fmt.Fprintf(os.Stderr, "sandbox: level 1 ready after %.2fs, whole run %.2fs\n", res.L1Ready.Seconds(), res.Wall.Seconds())
	for _, s := range res.Steps {
		fmt.Fprintf(os.Stderr, "sandbox: %s: vmm exit %d after %.2fs", s.Name, s.RC, s.VMMTime.Seconds())
		if s.InitReached > 0 {
			fmt.Fprintf(os.Stderr, ", guest init after %.2fs", s.InitReached.Seconds())
		}
		fmt.Fprintln(os.Stderr)
		if s.ErrorLine != "" {
			fmt.Fprintf(os.Stderr, "sandbox: %s: %s\n", s.Name, s.ErrorLine)
		}
		if s.RC != 0 {
			return cli.Exit("", s.RC)
		}
	}
	if res.ScriptRC != 0 {
		return cli.Exit("", res.ScriptRC)
	}
	return nil
}

func mode(c *cli.Context) (sandbox.Mode, string, error) {
	switch m := c.String("mode"); m {
	case "":
		return sandbox.DetectMode()
	case string(sandbox.ModeNested), string(sandbox.ModeDirect):
		return sandbox.Mode(m), "--mode", nil
	default:
		return "", "", fmt.Errorf("--mode %q: want nested or direct", m)
	}
}

// vmmBinary returns the vmm to run: the given one, or ./cmd/vmm built
// static into a temporary directory.
func vmmBinary(ctx context.Context, given string) (string, func(), error) {
	if given != "" {
		return given, func() {}, nil
	}
	root, err := sandbox.RepoRoot(ctx)
	if err != nil {
		return "", nil, err
	}
	dir, err := os.MkdirTemp("", "vmm-sandbox-bin-")
	if err != nil {
		return "", nil, err
	}
	cleanup := func() {
		if err := os.RemoveAll(dir); err != nil {
			fmt.Fprintln(os.Stderr, "sandbox:", err)
		}
	}
	vmm, err := sandbox.BuildVMM(ctx, root, dir)
	if err != nil {
		cleanup()
		return "", nil, err
	}
	return vmm, cleanup, nil
}

// prepare fills the cache (kernel package, vmlinux, modules) and checks the
// host tools, so that a test run starts with nothing to download.
func prepare(c *cli.Context) error {
	ctx := c.Context
	for _, tool := range []string{"qemu-system-x86_64", "lz4", "cpio", "go"} {
		if _, err := exec.LookPath(tool); err != nil {
			return cli.Exit(fmt.Sprintf("prepare: %s not found (apt-get install qemu-system-x86 lz4 cpio busybox-static)", tool), 1)
		}
	}
	start := time.Now()
	k, err := sandbox.Kernel(ctx)
	if err != nil {
		return cli.Exit(err.Error(), 1)
	}
	tmp, err := os.MkdirTemp("", "vmm-prepare-")
	if err != nil {
		return cli.Exit(err.Error(), 1)
	}
	defer os.RemoveAll(tmp)
	// Building a guest initramfs resolves every module and busybox.
	if err := sandbox.BuildGuestInitramfs(k, sandbox.GuestOptions{}, tmp+"/guest.gz"); err != nil {
		return cli.Exit(err.Error(), 1)
	}
	// The kvm_guest.config kernel of the virtio-pci scenarios: built once
	// (10 to 35 minutes on 2 cores), cached while its fragment stays.
	repo, err := sandbox.RepoRoot(ctx)
	if err != nil {
		return cli.Exit(err.Error(), 1)
	}
	cache, err := sandbox.CacheDir()
	if err != nil {
		return cli.Exit(err.Error(), 1)
	}
	kvmGuest, err := guestkernel.Path(ctx, repo, cache, guestkernel.KVMGuest, true, os.Stderr)
	if err != nil {
		return cli.Exit(err.Error(), 1)
	}
	mode, why, err := sandbox.DetectMode()
	if err != nil {
		return cli.Exit(err.Error(), 1)
	}
	qemu := "(not used in direct mode)"
	if mode == sandbox.ModeNested {
		if qemu, err = sandbox.Level1QEMU(ctx); err != nil {
			return cli.Exit(err.Error(), 1)
		}
	}
	fmt.Printf("kernel:  %s %s (%s)\n", k.Package, k.Version, k.Release)
	fmt.Printf("bzImage: %s\nvmlinux: %s\nmodules: %s\n", k.BzImage, k.Vmlinux, k.ModulesDir)
	fmt.Printf("kvm_guest kernel: %s\n", kvmGuest)
	fmt.Printf("mode:    %s (%s)\n", mode, why)
	fmt.Printf("level-1 QEMU: %s\n", qemu)
	fmt.Printf("ready in %.1fs\n", time.Since(start).Seconds())
	return nil
}
