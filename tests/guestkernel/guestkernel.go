// Package guestkernel builds the test suite's own guest kernels from
// Debian's linux-source-6.1 and caches them: a base configuration (make
// tinyconfig, plus kvm_guest.config for the kind kernel developers
// build), a fragment from tests/guest/kernel merged over it, then
// bzImage. The cache entry is keyed by the source package's version, the
// fragment's settings and the recipe, so CI builds each kernel once.
package guestkernel

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"syscall"
)

const (
	kernelSourcePackage = "linux-source-6.1"
	kernelSourceTarball = "/usr/src/linux-source-6.1.tar.xz"
)

// ErrNotBuilt reports a kernel the cache lacks when building is not allowed.
var ErrNotBuilt = errors.New("guest kernel not built yet")

// Spec is one kernel: its base make targets, its fragment and what its
// configuration must not have.
type Spec struct {
	// Name prefixes the cache entry.
	Name string
	// Fragment is the config fragment, relative to the repository root.
	Fragment string
	// Base are the make targets that make the starting configuration.
	Base []string
	// Recipe goes into the cache key: change it when the steps change.
	Recipe string
	// Forbidden options must end up unset.
	Forbidden []string
	// Command is what builds it by hand, for messages.
	Command string
}

// Minimal is the benchmarks' minimal kernel: tinyconfig with virtio-mmio
// (tests/guest/kernel/minimal.config).
var Minimal = Spec{
	Name:     "minimal",
	Fragment: "tests/guest/kernel/minimal.config",
	Base:     []string{"tinyconfig"},
	Recipe:   "tinyconfig+merge+olddefconfig v1",
	Command:  "make guest-kernel",
}

// KVMGuest is the kind of kernel kernel developers build (`make
// tinyconfig kvm_guest.config` plus tests/guest/kernel/kvmguest.config):
// virtio over PCI only, all built in, no modules.
var KVMGuest = Spec{
	Name:      "kvmguest",
	Fragment:  "tests/guest/kernel/kvmguest.config",
	Base:      []string{"tinyconfig", "kvm_guest.config"},
	Recipe:    "tinyconfig kvm_guest.config+merge+olddefconfig v1",
	Forbidden: []string{"CONFIG_VIRTIO_MMIO"},
	Command:   "make prepare",
}

// buildPackages are what building a kernel needs besides the source
// (Debian package names; gcc and make come with build-essential).
var buildPackages = []string{kernelSourcePackage, "build-essential", "flex", "bison", "bc", "libelf-dev", "libssl-dev", "lz4", "xz-utils"}

// buildTools are checked before building: one per package above.
var buildTools = []string{"gcc", "make", "flex", "bison", "bc", "lz4", "xz", "perl"}

// Path returns the cached bzImage of s, building it first (with build
// set) when the cache has none for this source version and fragment. The
// build runs under `nice -n 19`: 10 to 35 minutes on 2 cores.
func Path(ctx context.Context, repo, cache string, s Spec, build bool, log io.Writer) (string, error) {
	fragment, err := os.ReadFile(filepath.Join(repo, s.Fragment))
	if err != nil {
		return "", fmt.Errorf("%s kernel: %w", s.Name, err)
	}
	version, err := packageVersion(ctx, kernelSourcePackage)
	if err != nil && build {
		if err := installPackages(ctx, log, buildPackages); err != nil {
			return "", fmt.Errorf("%s kernel: %w", s.Name, err)
		}
		version, err = packageVersion(ctx, kernelSourcePackage)
	}
	if err != nil {
		return "", fmt.Errorf("%s kernel: %w (install it: apt-get install --no-install-recommends %s)", s.Name, err, strings.Join(buildPackages, " "))
	}
	dir := filepath.Join(cache, "guest-kernels", fmt.Sprintf("%s_%s_%s", s.Name, version, ConfigKey(s.Recipe, fragment)))
	bzImage := filepath.Join(dir, "bzImage")
	if _, err := os.Stat(filepath.Join(dir, ".complete")); err == nil {
		return bzImage, nil
	}
	if !build {
		return "", fmt.Errorf("%s kernel: %w (%s); run `%s`", s.Name, ErrNotBuilt, dir, s.Command)
	}
	if missing := missingTools(); len(missing) > 0 {
		if err := installPackages(ctx, log, buildPackages); err != nil {
			return "", fmt.Errorf("%s kernel: missing %v: %w", s.Name, missing, err)
		}
	}
	if err := buildKernel(ctx, s, fragment, dir, log); err != nil {
		return "", fmt.Errorf("%s kernel: %w", s.Name, err)
	}
	return bzImage, nil
}

// ConfigKey hashes the fragment's settings (comments and order do not
// matter) and the recipe.
func ConfigKey(recipe string, fragment []byte) string {
	var lines []string
	sc := bufio.NewScanner(strings.NewReader(string(fragment)))
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if l != "" && !strings.HasPrefix(l, "#") {
			lines = append(lines, l)
		}
	}
	sort.Strings(lines)
	sum := sha256.Sum256([]byte(recipe + "\n" + strings.Join(lines, "\n")))
	return hex.EncodeToString(sum[:])[:12]
}

func packageVersion(ctx context.Context, pkg string) (string, error) {
	out, err := exec.CommandContext(ctx, "dpkg-query", "-W", "-f=${Version}", pkg).Output()
	v := strings.TrimSpace(string(out))
	if err != nil || v == "" {
		return "", fmt.Errorf("package %s is not installed", pkg)
	}
	if _, err := os.Stat(kernelSourceTarball); err != nil {
		return "", fmt.Errorf("package %s: %w", pkg, err)
	}
	return v, nil
}

func missingTools() []string {
	var missing []string
	for _, t := range buildTools {
		if _, err := exec.LookPath(t); err != nil {
			missing = append(missing, t)
		}
	}
	return missing
}

// installPackages installs Debian packages when running as root.
func installPackages(ctx context.Context, log io.Writer, pkgs []string) error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("not root: install %s yourself", strings.Join(pkgs, " "))
	}
	fmt.Fprintf(log, "guest kernel: apt-get install --no-install-recommends %s\n", strings.Join(pkgs, " "))
	args := append([]string{"install", "-y", "--no-install-recommends"}, pkgs...)
	cmd := exec.CommandContext(ctx, "apt-get", args...)
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	if out, err := cmd.CombinedOutput(); err != nil {
		// The package lists may be empty on a fresh machine.
		if upd, updErr := exec.CommandContext(ctx, "apt-get", "update").CombinedOutput(); updErr != nil {
			return fmt.Errorf("apt-get update: %w: %s", updErr, TailOf(string(upd), 5))
		}
		cmd = exec.CommandContext(ctx, "apt-get", args...)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		if out, err = cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("apt-get install: %w: %s", err, TailOf(string(out), 5))
		}
	}
	return nil
}

// buildKernel unpacks the source, configures and builds bzImage, and
// moves the result into dir.
func buildKernel(ctx context.Context, s Spec, fragment []byte, dir string, log io.Writer) error {
	parent := filepath.Dir(dir)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(parent, ".build-*")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)

	fmt.Fprintf(log, "guest kernel: building the %s kernel in %s (10 to 35 minutes on 2 cores)\n", s.Name, tmp)
	if err := runLogged(ctx, io.Discard, tmp, "nice", "-n", "19", "tar", "xf", kernelSourceTarball); err != nil {
		return err
	}
	src := filepath.Join(tmp, strings.TrimSuffix(filepath.Base(kernelSourceTarball), ".tar.xz"))
	fragmentPath := filepath.Join(tmp, "fragment.config")
	if err := os.WriteFile(fragmentPath, fragment, 0o644); err != nil {
		return err
	}
	jobs := fmt.Sprint(runtime.NumCPU())
	steps := [][]string{
		append([]string{"make"}, s.Base...),
		{"scripts/kconfig/merge_config.sh", "-m", ".config", fragmentPath},
		{"make", "olddefconfig"},
	}
	for _, st := range steps {
		if err := runLogged(ctx, io.Discard, src, st[0], st[1:]...); err != nil {
			return err
		}
	}
	config, err := os.ReadFile(filepath.Join(src, ".config"))
	if err != nil {
		return err
	}
	if missing := UnmetSettings(string(fragment), string(config)); len(missing) > 0 {
		return fmt.Errorf("olddefconfig dropped settings of %s (dependencies unmet?): %s", s.Fragment, strings.Join(missing, ", "))
	}
	if set := SetOptions(string(config), s.Forbidden); len(set) > 0 {
		return fmt.Errorf("the configuration of %s sets %s, which it must not", s.Fragment, strings.Join(set, ", "))
	}
	if err := runLogged(ctx, io.Discard, src, "nice", "-n", "19", "make", "-j"+jobs, "bzImage"); err != nil {
		return err
	}
	out := filepath.Join(tmp, "out")
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	for _, f := range []struct{ from, to string }{
		{"arch/x86/boot/bzImage", "bzImage"},
		{".config", "config"},
	} {
		data, err := os.ReadFile(filepath.Join(src, f.from))
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(out, f.to), data, 0o644); err != nil {
			return err
		}
	}
	if err := os.WriteFile(filepath.Join(out, ".complete"), nil, 0o644); err != nil {
		return err
	}
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	return os.Rename(out, dir)
}

// UnmetSettings lists the fragment's "CONFIG_X=v" lines that the final
// configuration lacks.
func UnmetSettings(fragment, config string) []string {
	have := map[string]bool{}
	for _, l := range strings.Split(config, "\n") {
		have[strings.TrimSpace(l)] = true
	}
	var missing []string
	for _, l := range strings.Split(fragment, "\n") {
		l = strings.TrimSpace(l)
		if strings.HasPrefix(l, "CONFIG_") && !have[l] {
			missing = append(missing, l)
		}
	}
	return missing
}

// SetOptions lists the options of names that config sets (to y, m or a
// value).
func SetOptions(config string, names []string) []string {
	var set []string
	for _, l := range strings.Split(config, "\n") {
		l = strings.TrimSpace(l)
		for _, n := range names {
			if strings.HasPrefix(l, n+"=") {
				set = append(set, l)
			}
		}
	}
	return set
}

// runLogged runs a command in dir; its output goes to log, and its tail
// comes with a failure.
func runLogged(ctx context.Context, log io.Writer, dir, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	// make's children (and nice's) die with it when ctx ends.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	var tail tailWriter
	cmd.Stdout = io.MultiWriter(log, &tail)
	cmd.Stderr = cmd.Stdout
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args, " "), err, TailOf(tail.String(), 20))
	}
	return nil
}

// tailWriter keeps the last 16 KiB written.
type tailWriter struct{ buf []byte }

func (t *tailWriter) Write(p []byte) (int, error) {
	t.buf = append(t.buf, p...)
	if len(t.buf) > 16<<10 {
		t.buf = t.buf[len(t.buf)-16<<10:]
	}
	return len(p), nil
}

func (t *tailWriter) String() string { return string(t.buf) }

// TailOf returns the last n lines of s.
func TailOf(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
