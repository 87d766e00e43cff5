package main

import (
	"fmt"
	"os"

	"github.com/urfave/cli/v2"

	"github.com/vmm-dev/vmm/host"
	"github.com/vmm-dev/vmm/kvm"
)

func checkCommand() *cli.Command {
	return &cli.Command{
		Name:  "check",
		Usage: "report what this host's KVM can do, and whether guests can boot here",
		Description: "check opens /dev/kvm, lists the capabilities vmm relies on, and tells whether the CPU\n" +
			"offers hardware virtualization. It exits 0 when vmm can boot guests on this host, 1 when not.",
		Action: func(*cli.Context) error { return check() },
	}
}

func check() error {
	out := os.Stdout
	sys, err := kvm.Open()
	if err != nil {
		fmt.Fprintf(out, "/dev/kvm:            unusable\n")
		return cli.Exit(err.Error(), 1)
	}
	defer sys.Close()
	version, err := sys.APIVersion()
	if err != nil {
		return cli.Exit(err.Error(), 1)
	}
	fmt.Fprintf(out, "/dev/kvm:            open, API version %d\n", version)
	maxCPUs, err := sys.MaxVCPUs()
	if err != nil {
		return cli.Exit(err.Error(), 1)
	}
	fmt.Fprintf(out, "max vCPUs per VM:    %d\n", maxCPUs)
	missing := 0
	for _, c := range []struct {
		name string
		cap  kvm.Cap
	}{
		{"user memory", kvm.CapUserMemory},
		{"in-kernel irqchip", kvm.CapIRQChip},
		{"in-kernel PIT", kvm.CapPIT2},
		{"irqfd", kvm.CapIRQFD},
		{"ioeventfd", kvm.CapIOEventFD},
		{"immediate exit", kvm.CapImmediateExit},
	} {
		n, err := sys.CheckExtension(c.cap)
		state := "yes"
		if err != nil || n <= 0 {
			state, missing = "MISSING", missing+1
		}
		fmt.Fprintf(out, "%-20s %s\n", c.name+":", state)
	}
	virt, err := host.Detect()
	if err != nil {
		return cli.Exit(err.Error(), 1)
	}
	if virt.Hardware() {
		fmt.Fprintf(out, "hardware virt:       %s (%s, module %s)\n", virt.Vendor, virt.Flag, virt.Module)
	} else {
		fmt.Fprintf(out, "hardware virt:       NONE (module %s): guest ring-0 code is emulated\n", virt.Module)
	}
	switch {
	case missing > 0:
		return cli.Exit(fmt.Sprintf("this KVM lacks %d capabilities vmm needs: guests cannot boot here", missing), 1)
	case !virt.Hardware():
		fmt.Fprintf(out, "\n%s\n", virt.Explanation())
		return cli.Exit("guests cannot boot on this host", 1)
	}
	fmt.Fprintf(out, "\nverdict:             vmm can boot guests on this host\n")
	return nil
}
