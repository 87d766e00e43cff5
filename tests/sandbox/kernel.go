package sandbox

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
)

// ErrNoKernelPackage means apt knows no Debian cloud kernel package and the
// cache holds none either.
var ErrNoKernelPackage = errors.New("sandbox: no linux-image-*-cloud-amd64-unsigned package found")

// ErrOffline is the reason apt is not asked when $VMM_OFFLINE is set.
var ErrOffline = errors.New("sandbox: " + OfflineEnv + " is set")

// OfflineEnv, when set, makes Kernel use the newest cached kernel without
// asking apt (machines without network access).
const OfflineEnv = "VMM_OFFLINE"

// kernelPackagePattern matches Debian's cloud kernel packages, for example
// linux-image-6.1.0-57-cloud-amd64-unsigned.
const kernelPackagePattern = `^linux-image-[0-9.-]+-cloud-amd64-unsigned$`

var kernelPackageRE = regexp.MustCompile(kernelPackagePattern)

// completeMarker is written last into a kernel's cache directory.
const completeMarker = ".complete"

// KernelFiles are the files of one unpacked Debian cloud kernel package. The
// same kernel serves as the level-1 kernel of the nested sandbox and as the
// reference guest.
type KernelFiles struct {
	Package    string // linux-image-6.1.0-57-cloud-amd64-unsigned
	Version    string // the package version, 6.1.192-3
	Release    string // `uname -r` of the kernel, 6.1.0-57-cloud-amd64
	Dir        string // the cache directory of this package version
	BzImage    string // boot/vmlinuz-<release>
	Vmlinux    string // the ELF kernel extracted from the bzImage (PVH entry)
	ModulesDir string // lib/modules/<release>
}

// Module returns the path of an uncompressed module, given its path under
// lib/modules/<release>/kernel (for example "drivers/virtio/virtio.ko").
// Compressed modules (.ko.xz) are decompressed into the cache once.
func (k *KernelFiles) Module(rel string) (string, error) {
	plain := filepath.Join(k.ModulesDir, "kernel", rel)
	if _, err := os.Stat(plain); err == nil {
		return plain, nil
	}
	xz := plain + ".xz"
	if _, err := os.Stat(xz); err != nil {
		return "", fmt.Errorf("sandbox: module %s not found in %s", rel, k.ModulesDir)
	}
	out := filepath.Join(k.Dir, "modules-unxz", rel)
	if _, err := os.Stat(out); err == nil {
		return out, nil
	}
	data, err := unxz(xz)
	if err != nil {
		return "", fmt.Errorf("sandbox: module %s: %w", rel, err)
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return "", fmt.Errorf("sandbox: module %s: %w", rel, err)
	}
	if err := writeFileAtomic(out, data, 0o644); err != nil {
		return "", fmt.Errorf("sandbox: module %s: %w", rel, err)
	}
	return out, nil
}

func unxz(path string) ([]byte, error) {
	var out, stderr bytes.Buffer
	cmd := exec.Command("xz", "-dc", path)
	if _, err := exec.LookPath("xz"); err != nil {
		cmd = exec.Command(busyboxPath, "xzcat", path)
	}
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("decompress %s: %w: %s", path, err, bytes.TrimSpace(stderr.Bytes()))
	}
	return out.Bytes(), nil
}

var (
	kernelMu     sync.Mutex
	kernelCached *KernelFiles
)

// Kernel returns the newest Debian cloud kernel, downloading and unpacking
// it into the cache on first use. Safe for concurrent processes.
func Kernel(ctx context.Context) (*KernelFiles, error) {
	kernelMu.Lock()
	defer kernelMu.Unlock()
	if kernelCached != nil {
		return kernelCached, nil
	}
	cache, err := CacheDir()
	if err != nil {
		return nil, err
	}
	kernelsDir := filepath.Join(cache, "kernels")
	pkg, version, err := "", "", ErrOffline
	if os.Getenv(OfflineEnv) == "" {
		pkg, version, err = resolveKernelPackage(ctx)
	}
	if err != nil {
		// Offline: fall back to the newest kernel already in the cache.
		k, cacheErr := newestCachedKernel(kernelsDir)
		if cacheErr != nil {
			return nil, fmt.Errorf("%w (and no cached kernel: %v)", err, cacheErr)
		}
		kernelCached = k
		return k, nil
	}
	dir := filepath.Join(kernelsDir, pkg+"_"+version)
	if _, err := os.Stat(filepath.Join(dir, completeMarker)); err != nil {
		err = withLock(filepath.Join(kernelsDir, ".lock"), func() error {
			if _, err := os.Stat(filepath.Join(dir, completeMarker)); err == nil {
				return nil // another process filled it while we waited
			}
			return fetchKernel(ctx, pkg, version, dir)
		})
		if err != nil {
			return nil, err
		}
	}
	k, err := loadKernel(dir)
	if err != nil {
		return nil, err
	}
	kernelCached = k
	return k, nil
}

// resolveKernelPackage asks apt for the highest cloud kernel package and its
// candidate version, running apt-get update once if apt knows none.
func resolveKernelPackage(ctx context.Context) (pkg, version string, err error) {
	names, err := searchKernelPackages(ctx)
	if err == nil && len(names) == 0 {
		if out, updErr := exec.CommandContext(ctx, "apt-get", "update").CombinedOutput(); updErr != nil {
			return "", "", fmt.Errorf("sandbox: apt-get update: %w: %s", updErr, tail(string(out), 5))
		}
		names, err = searchKernelPackages(ctx)
	}
	if err != nil {
		return "", "", err
	}
	if len(names) == 0 {
		return "", "", ErrNoKernelPackage
	}
	pkg = names[len(names)-1]
	out, err := exec.CommandContext(ctx, "apt-cache", "show", "--no-all-versions", pkg).Output()
	if err != nil {
		return "", "", fmt.Errorf("sandbox: apt-cache show %s: %w", pkg, err)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if v, ok := strings.CutPrefix(line, "Version: "); ok {
			return pkg, strings.TrimSpace(v), nil
		}
	}
	return "", "", fmt.Errorf("sandbox: apt-cache show %s: no Version field", pkg)
}

// searchKernelPackages returns matching package names, oldest first.
func searchKernelPackages(ctx context.Context) ([]string, error) {
	out, err := exec.CommandContext(ctx, "apt-cache", "search", "--names-only", kernelPackagePattern).Output()
	if err != nil {
		return nil, fmt.Errorf("sandbox: apt-cache search: %w", err)
	}
	var names []string
	for _, line := range strings.Split(string(out), "\n") {
		name, _, _ := strings.Cut(line, " ")
		if kernelPackageRE.MatchString(name) {
			names = append(names, name)
		}
	}
	sort.Slice(names, func(i, j int) bool { return versionLess(names[i], names[j]) })
	return names, nil
}

// versionLess compares the runs of digits in two names numerically, so that
// linux-image-6.1.0-100-... sorts after linux-image-6.1.0-99-....
func versionLess(a, b string) bool {
	na, nb := numbers(a), numbers(b)
	for i := 0; i < len(na) && i < len(nb); i++ {
		if na[i] != nb[i] {
			return na[i] < nb[i]
		}
	}
	if len(na) != len(nb) {
		return len(na) < len(nb)
	}
	return a < b
}

var digitsRE = regexp.MustCompile(`[0-9]+`)

func numbers(s string) []uint64 {
	var out []uint64
	for _, d := range digitsRE.FindAllString(s, -1) {
		n, err := strconv.ParseUint(d, 10, 64)
		if err != nil {
			n = ^uint64(0) // absurdly long digit runs sort last
		}
		out = append(out, n)
	}
	return out
}

// fetchKernel downloads and unpacks a package, extracts vmlinux, and
// puts the directory in place (deb.go).
func fetchKernel(ctx context.Context, pkg, version, dir string) error {
	tmp, root, err := unpackDebs(ctx, filepath.Dir(dir), pkg+"="+version)
	defer os.RemoveAll(tmp)
	if err != nil {
		return err
	}
	bzImages, err := filepath.Glob(filepath.Join(root, "boot", "vmlinuz-*"))
	if err != nil || len(bzImages) != 1 {
		return fmt.Errorf("sandbox: %s: expected one boot/vmlinuz-*, found %v", pkg, bzImages)
	}
	if err := ExtractVmlinux(ctx, bzImages[0], filepath.Join(root, "vmlinux")); err != nil {
		return err
	}
	return commitCacheEntry(root, dir, fmt.Sprintf("%s\n%s\n", pkg, version))
}

// loadKernel describes an unpacked kernel directory.
func loadKernel(dir string) (*KernelFiles, error) {
	meta, err := os.ReadFile(filepath.Join(dir, "package"))
	if err != nil {
		return nil, fmt.Errorf("sandbox: kernel cache %s: %w", dir, err)
	}
	fields := strings.Fields(string(meta))
	if len(fields) != 2 {
		return nil, fmt.Errorf("sandbox: kernel cache %s: malformed package file", dir)
	}
	bzImages, err := filepath.Glob(filepath.Join(dir, "boot", "vmlinuz-*"))
	if err != nil || len(bzImages) != 1 {
		return nil, fmt.Errorf("sandbox: kernel cache %s: expected one boot/vmlinuz-*, found %v", dir, bzImages)
	}
	release := strings.TrimPrefix(filepath.Base(bzImages[0]), "vmlinuz-")
	k := &KernelFiles{
		Package:    fields[0],
		Version:    fields[1],
		Release:    release,
		Dir:        dir,
		BzImage:    bzImages[0],
		Vmlinux:    filepath.Join(dir, "vmlinux"),
		ModulesDir: filepath.Join(dir, "lib", "modules", release),
	}
	for _, p := range []string{k.Vmlinux, k.ModulesDir} {
		if _, err := os.Stat(p); err != nil {
			return nil, fmt.Errorf("sandbox: kernel cache %s: %w", dir, err)
		}
	}
	return k, nil
}

func newestCachedKernel(kernelsDir string) (*KernelFiles, error) {
	entries, err := os.ReadDir(kernelsDir)
	if err != nil {
		return nil, err
	}
	var complete []string
	for _, e := range entries {
		if _, err := os.Stat(filepath.Join(kernelsDir, e.Name(), completeMarker)); err == nil {
			complete = append(complete, e.Name())
		}
	}
	if len(complete) == 0 {
		return nil, fmt.Errorf("no complete kernel in %s", kernelsDir)
	}
	sort.Slice(complete, func(i, j int) bool { return versionLess(complete[i], complete[j]) })
	return loadKernel(filepath.Join(kernelsDir, complete[len(complete)-1]))
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
