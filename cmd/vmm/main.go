// Command vmm boots Linux micro-VMs on KVM.
package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/vmm-dev/vmm/guestinit"
)

// processStart is taken as the package initializes, before main: the
// reference for start-up timings in --stats.
var processStart = time.Now()

func main() {
	// In a guest of `vmm run -- CMD`, this binary is the kernel's /init.
	if guestinit.IsInit() {
		guestinit.Main()
	}
	// Tools that drive Firecracker start it by name: vmm installed (or
	// linked) as `firecracker` takes Firecracker's command line.
	if filepath.Base(os.Args[0]) == "firecracker" {
		os.Exit(runFirecracker(os.Args[1:]))
	}
	app := &cli.App{
		Name:  "vmm",
		Usage: "boot Linux micro-VMs on KVM",
		Description: "vmm boots a Linux kernel (bzImage or vmlinux) in a KVM virtual machine with a serial\n" +
			"console, virtio-blk disks and virtio-net interfaces, and exits when the guest powers off.",
		Commands:        []*cli.Command{runCommand(), checkCommand(), firecrackerCommand(), snapshotCommand(), restoreCommand()},
		HideHelpCommand: true,
		// --disk and --net values hold commas of their own.
		DisableSliceFlagSeparator: true,
		ExitErrHandler:            func(*cli.Context, error) {},
	}
	if err := app.Run(os.Args); err != nil {
		var ec cli.ExitCoder
		code := 1
		if errors.As(err, &ec) {
			code = ec.ExitCode()
		}
		if msg := err.Error(); msg != "" {
			fmt.Fprintf(os.Stderr, "vmm: %s\n", msg)
		}
		os.Exit(code)
	}
}
