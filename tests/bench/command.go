package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/vmm-dev/vmm/initramfs"
	"github.com/vmm-dev/vmm/tests/bench/internal/results"
	"github.com/vmm-dev/vmm/tests/guestkernel"
	"github.com/vmm-dev/vmm/tests/sandbox"
)

// commandModules are the drivers `vmm run -- CMD` needs from Debian's
// kernel, where they are modules; their dependencies come with them.
var commandModules = []string{"virtio_mmio", "virtio_console", "virtiofs", "overlay"}

// commandSpec is the workflow benchmark: Debian's kernel with its
// modules over virtio-fs, and the kvm_guest kernel over 9p when it is
// built (or --build-kernel builds it); it returns the files level 1
// needs, and a problem to report when the 9p half is left out.
func commandSpec(ctx context.Context, env *environment, k *sandbox.KernelFiles, c *cli.Context, log io.Writer) (*results.CommandSpec, []sandbox.File, string, error) {
	spec := &results.CommandSpec{ShareMiB: c.Int("share-mib"), ShareFiles: c.Int("share-files"),
		Dir: "$WORK/share", Rounds: min(c.Int("command-runs"), c.Int("runs")),
		// A 9p read in the nested sandbox runs at about 1.4 MiB/s.
		TimeoutSeconds: 120 + float64(c.Int("share-mib")) + float64(c.Int("share-files"))/20}
	if spec.ShareMiB < 1 || spec.ShareFiles < results.ShareDirs {
		return nil, nil, "", cli.Exit(fmt.Sprintf("--share-mib must be 1 or more and --share-files %d or more", results.ShareDirs), 2)
	}
	tree, err := initramfs.OpenTree(k.ModulesDir)
	if err != nil {
		return nil, nil, "", err
	}
	mods, missing := tree.Resolve(commandModules)
	if len(missing) > 0 {
		return nil, nil, "", fmt.Errorf("bench: Debian's kernel lacks the modules %v", missing)
	}
	var files []sandbox.File
	for _, m := range mods {
		rel, err := filepath.Rel(k.ModulesDir, m.Path)
		if err != nil {
			return nil, nil, "", err
		}
		files = append(files, sandbox.File{Name: "cmd-modules/" + rel, HostPath: m.Path})
	}
	spec.Kernels = append(spec.Kernels, results.CommandKernel{Name: "debian", BzImage: "$GUEST_BZIMAGE",
		Modules: "$DATA/cmd-modules", Transport: "mmio", Proto: "fs"})
	bz, err := guestkernel.Path(ctx, env.repo, env.cache, guestkernel.KVMGuest, c.Bool("build-kernel"), log)
	if err != nil {
		return spec, files, fmt.Sprintf("the workflow over 9p left out: no kvm_guest kernel (%v)", err), nil
	}
	// The suite's kvm_guest kernel is tinyconfig-based: it may lack what
	// the guest's init (vmm, a Go program) and its host root need, which
	// a defconfig build has.
	if lacks := missingOptions(filepath.Join(filepath.Dir(bz), "config"), commandOptions); len(lacks) > 0 {
		return spec, files, fmt.Sprintf("the workflow over 9p left out: the kvm_guest kernel %s lacks %v", bz, lacks), nil
	}
	files = append(files, sandbox.File{Name: "cmd-kvmguest-bzImage", HostPath: bz})
	spec.Kernels = append(spec.Kernels, results.CommandKernel{Name: "kvmguest", BzImage: "$DATA/cmd-kvmguest-bzImage",
		Transport: "pci", Proto: "9p"})
	return spec, files, "", nil
}

// commandOptions are the kernel options `vmm run -- CMD` needs beyond
// the drivers: epoll and eventfd for Go's runtime in the guest's init,
// overlayfs for the writable layer over the host's root.
var commandOptions = []string{"CONFIG_EPOLL", "CONFIG_EVENTFD", "CONFIG_OVERLAY_FS"}

// missingOptions returns the options that the .config at path does not
// set to y; all of them when it cannot be read.
func missingOptions(path string, options []string) []string {
	data, err := os.ReadFile(path)
	if err != nil {
		return options
	}
	set := map[string]bool{}
	for _, line := range strings.Split(string(data), "\n") {
		if name, ok := strings.CutSuffix(strings.TrimSpace(line), "=y"); ok {
			set[name] = true
		}
	}
	var missing []string
	for _, o := range options {
		if !set[o] {
			missing = append(missing, o)
		}
	}
	return missing
}
