package main

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
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

// The minimal guest kernel: `make tinyconfig` of Debian's linux-source-6.1
// with tests/guest/kernel/minimal.config merged over it.
const (
	kernelSourcePackage = "linux-source-6.1"
	kernelSourceTarball = "/usr/src/linux-source-6.1.tar.xz"
	minimalConfigPath   = "tests/guest/kernel/minimal.config"
	// recipeVersion changes the cache key when the build steps change.
	recipeVersion = "tinyconfig+merge+olddefconfig v1"
)

// kernelBuildPackages are what building the kernel needs besides the
// source (Debian package names; gcc and make come with build-essential).
var kernelBuildPackages = []string{kernelSourcePackage, "build-essential", "flex", "bison", "bc", "libelf-dev", "libssl-dev", "lz4", "xz-utils"}

// kernelBuildTools are checked before building: one per package above.
var kernelBuildTools = []string{"gcc", "make", "flex", "bison", "bc", "lz4", "xz", "perl"}

// minimalKernel returns the cached bzImage of the minimal kernel, building
// it first when the cache has none for this source version and config.
// The build runs under `nice -n 19` and takes 3 to 10 minutes on 2 cores.
func minimalKernel(ctx context.Context, repo, cache string, build bool, log io.Writer) (string, error) {
	fragment, err := os.ReadFile(filepath.Join(repo, minimalConfigPath))
	if err != nil {
		return "", fmt.Errorf("minimal kernel: %w", err)
	}
	version, err := packageVersion(ctx, kernelSourcePackage)
	if err != nil && build {
		if err := installPackages(ctx, log, kernelBuildPackages); err != nil {
			return "", err
		}
		version, err = packageVersion(ctx, kernelSourcePackage)
	}
	if err != nil {
		return "", fmt.Errorf("minimal kernel: %w (install it: apt-get install --no-install-recommends %s)", err, strings.Join(kernelBuildPackages, " "))
	}
	dir := filepath.Join(cache, "guest-kernels", fmt.Sprintf("minimal_%s_%s", version, configKey(fragment)))
	bzImage := filepath.Join(dir, "bzImage")
	if _, err := os.Stat(filepath.Join(dir, ".complete")); err == nil {
		return bzImage, nil
	}
	if !build {
		return "", fmt.Errorf("minimal kernel: not built yet (%s); run `make guest-kernel`", dir)
	}
	if missing := missingTools(); len(missing) > 0 {
		if err := installPackages(ctx, log, kernelBuildPackages); err != nil {
			return "", fmt.Errorf("minimal kernel: missing %v: %w", missing, err)
		}
	}
	if err := buildKernel(ctx, fragment, dir, log); err != nil {
		return "", fmt.Errorf("minimal kernel: %w", err)
	}
	return bzImage, nil
}

// configKey hashes the fragment's settings (comments and order do not
// matter) and the recipe.
func configKey(fragment []byte) string {
	var lines []string
	sc := bufio.NewScanner(strings.NewReader(string(fragment)))
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if l != "" && !strings.HasPrefix(l, "#") {
			lines = append(lines, l)
		}
	}
	sort.Strings(lines)
	sum := sha256.Sum256([]byte(recipeVersion + "\n" + strings.Join(lines, "\n")))
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
	for _, t := range kernelBuildTools {
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
	fmt.Fprintf(log, "bench: apt-get install --no-install-recommends %s\n", strings.Join(pkgs, " "))
	args := append([]string{"install", "-y", "--no-install-recommends"}, pkgs...)
	cmd := exec.CommandContext(ctx, "apt-get", args...)
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	if out, err := cmd.CombinedOutput(); err != nil {
		// The package lists may be empty on a fresh machine.
		if upd, updErr := exec.CommandContext(ctx, "apt-get", "update").CombinedOutput(); updErr != nil {
			return fmt.Errorf("apt-get update: %w: %s", updErr, tailOf(string(upd), 5))
		}
		cmd = exec.CommandContext(ctx, "apt-get", args...)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		if out, err = cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("apt-get install: %w: %s", err, tailOf(string(out), 5))
		}
	}
	return nil
}

// buildKernel unpacks the source, configures and builds bzImage, and
// moves the result into dir.
func buildKernel(ctx context.Context, fragment []byte, dir string, log io.Writer) error {
	parent := filepath.Dir(dir)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(parent, ".build-*")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)

	fmt.Fprintf(log, "bench: building the minimal guest kernel in %s (3 to 10 minutes on 2 cores)\n", tmp)
	if err := runLogged(ctx, io.Discard, tmp, "nice", "-n", "19", "tar", "xf", kernelSourceTarball); err != nil {
		return err
	}
	src := filepath.Join(tmp, strings.TrimSuffix(filepath.Base(kernelSourceTarball), ".tar.xz"))
	fragmentPath := filepath.Join(tmp, "minimal.config")
	if err := os.WriteFile(fragmentPath, fragment, 0o644); err != nil {
		return err
	}
	jobs := fmt.Sprint(runtime.NumCPU())
	steps := [][]string{
		{"make", "tinyconfig"},
		{"scripts/kconfig/merge_config.sh", "-m", ".config", fragmentPath},
		{"make", "olddefconfig"},
	}
	for _, s := range steps {
		if err := runLogged(ctx, io.Discard, src, s[0], s[1:]...); err != nil {
			return err
		}
	}
	config, err := os.ReadFile(filepath.Join(src, ".config"))
	if err != nil {
		return err
	}
	if missing := unmetSettings(string(fragment), string(config)); len(missing) > 0 {
		return fmt.Errorf("olddefconfig dropped settings of %s (dependencies unmet?): %s", minimalConfigPath, strings.Join(missing, ", "))
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

// unmetSettings lists the fragment's "CONFIG_X=v" lines that the final
// configuration lacks.
func unmetSettings(fragment, config string) []string {
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
		return fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args, " "), err, tailOf(tail.String(), 20))
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

func tailOf(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
