package sandbox

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
)

// Level 1's QEMU. Debian 12's own QEMU is 7.2, whose TCG emulation of
// AMD-V delivers some of a level-2 guest's faults to level 1 after the
// world switch (level 1 dies with the guest's GS base and CR2 loaded;
// tests/README.md, "Faults of the nested sandbox"). QEMU 10 does that
// too, but the clean-clone runs with it repeated far fewer groups, so on
// Debian 12 the sandbox runs QEMU 10 from bookworm-backports, unpacked
// into the artifact cache without touching the system's apt
// configuration or its packages. A system QEMU of at least
// level1QEMUMinMajor is used as it is.
const (
	level1QEMUMinMajor = 10
	backportsSuite     = "bookworm-backports"
	backportsMirror    = "http://deb.debian.org/debian"
	qemuBinary         = "qemu-system-x86_64"
)

// The packages unpacked for level 1's QEMU: the emulator, its common and
// data files at its own version, and the SeaBIOS it needs.
var qemuPackages = []string{"qemu-system-x86", "qemu-system-common", "qemu-system-data"}

var (
	qemuMu     sync.Mutex
	qemuCached string
)

// Level1QEMU returns the QEMU binary that runs level 1: $VMM_QEMU, else a
// system qemu-system-x86_64 of version 10 or later, else (on Debian 12)
// QEMU from bookworm-backports in the artifact cache, downloaded and
// unpacked on first use. Offline ($VMM_OFFLINE, or apt unreachable) it
// takes the newest cached one. Elsewhere it falls back to the system's
// QEMU, whatever its version.
func Level1QEMU(ctx context.Context) (string, error) {
	if q := os.Getenv(QEMUEnv); q != "" {
		return q, nil
	}
	qemuMu.Lock()
	defer qemuMu.Unlock()
	if qemuCached != "" {
		return qemuCached, nil
	}
	q, err := level1QEMU(ctx)
	if err != nil {
		return "", err
	}
	qemuCached = q
	return q, nil
}

func level1QEMU(ctx context.Context) (string, error) {
	if major, err := qemuMajor(ctx, qemuBinary); err == nil && major >= level1QEMUMinMajor {
		return qemuBinary, nil
	}
	if !isDebian12() {
		return qemuBinary, nil
	}
	cache, err := CacheDir()
	if err != nil {
		return "", err
	}
	dir := filepath.Join(cache, "qemu")
	version, err := "", ErrOffline
	if os.Getenv(OfflineEnv) == "" {
		version, err = resolveBackportQEMU(ctx, dir)
	}
	if err != nil {
		cached, cacheErr := newestCachedQEMU(dir)
		if cacheErr != nil {
			return "", fmt.Errorf("sandbox: QEMU %d from %s: %w (and none cached: %v); set %s=%s to use the system's QEMU",
				level1QEMUMinMajor, backportsSuite, err, cacheErr, QEMUEnv, qemuBinary)
		}
		return cached, nil
	}
	into := filepath.Join(dir, strings.NewReplacer(":", "_", "~", "_", "+", "_").Replace(version))
	if _, err := os.Stat(filepath.Join(into, completeMarker)); err != nil {
		err = withLock(filepath.Join(dir, ".lock"), func() error {
			if _, err := os.Stat(filepath.Join(into, completeMarker)); err == nil {
				return nil
			}
			return fetchQEMU(ctx, dir, version, into)
		})
		if err != nil {
			return "", err
		}
	}
	return filepath.Join(into, "usr", "bin", qemuBinary), nil
}

var qemuVersionRE = regexp.MustCompile(`QEMU emulator version ([0-9]+)\.`)

// qemuMajor runs binary --version and returns its major version.
func qemuMajor(ctx context.Context, binary string) (int, error) {
	out, err := exec.CommandContext(ctx, binary, "--version").Output()
	if err != nil {
		return 0, fmt.Errorf("sandbox: %s --version: %w", binary, err)
	}
	return parseQEMUMajor(string(out))
}

func parseQEMUMajor(out string) (int, error) {
	m := qemuVersionRE.FindStringSubmatch(out)
	if m == nil {
		return 0, fmt.Errorf("sandbox: no QEMU version in %q", firstLine(out))
	}
	return strconv.Atoi(m[1])
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

func isDebian12() bool {
	b, err := os.ReadFile("/etc/os-release")
	return err == nil && isBookworm(string(b))
}

func isBookworm(osRelease string) bool {
	for _, line := range strings.Split(osRelease, "\n") {
		if v, ok := strings.CutPrefix(line, "VERSION_CODENAME="); ok {
			return strings.Trim(strings.TrimSpace(v), `"`) == "bookworm"
		}
	}
	return false
}

// aptArgs point apt at a private sources list (bookworm-backports only)
// and private package lists under dir, so the system's configuration and
// its lists stay as they are.
func aptArgs(dir string) []string {
	return []string{
		"-o", "Dir::Etc::sourcelist=" + filepath.Join(dir, "apt", "sources.list"),
		"-o", "Dir::Etc::sourceparts=-",
		"-o", "Dir::State::Lists=" + filepath.Join(dir, "apt", "lists"),
		"-o", "Dir::Cache=" + filepath.Join(dir, "apt", "cache"),
		"-o", "APT::Get::List-Cleanup=0",
	}
}

// resolveBackportQEMU updates the private lists and returns the newest
// qemu-system-x86 version in bookworm-backports.
func resolveBackportQEMU(ctx context.Context, dir string) (string, error) {
	apt := filepath.Join(dir, "apt")
	for _, d := range []string{filepath.Join(apt, "lists", "partial"), filepath.Join(apt, "cache", "archives", "partial")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return "", fmt.Errorf("sandbox: QEMU apt state: %w", err)
		}
	}
	src := fmt.Sprintf("deb %s %s main\n", backportsMirror, backportsSuite)
	if err := writeFileAtomic(filepath.Join(apt, "sources.list"), []byte(src), 0o644); err != nil {
		return "", fmt.Errorf("sandbox: QEMU apt sources: %w", err)
	}
	update := exec.CommandContext(ctx, "apt-get", append(aptArgs(dir), "update")...)
	if out, err := update.CombinedOutput(); err != nil {
		return "", fmt.Errorf("sandbox: apt-get update (%s): %w: %s", backportsSuite, err, tail(string(out), 5))
	}
	out, err := exec.CommandContext(ctx, "apt-cache", append(aptArgs(dir), "madison", qemuPackages[0])...).Output()
	if err != nil {
		return "", fmt.Errorf("sandbox: apt-cache madison %s: %w", qemuPackages[0], err)
	}
	return backportVersion(string(out))
}

// backportVersion picks the newest bookworm-backports version out of
// apt-cache madison's lines ("pkg | version | source").
func backportVersion(madison string) (string, error) {
	best := ""
	for _, line := range strings.Split(madison, "\n") {
		f := strings.Split(line, "|")
		if len(f) != 3 || !strings.Contains(f[2], backportsSuite) {
			continue
		}
		if v := strings.TrimSpace(f[1]); best == "" || versionLess(best, v) {
			best = v
		}
	}
	if best == "" {
		return "", fmt.Errorf("sandbox: %s has no %s", backportsSuite, qemuPackages[0])
	}
	return best, nil
}

// fetchQEMU downloads the packages at version (SeaBIOS at the suite's
// newest), unpacks them into a temporary directory, links the firmware
// where QEMU looks for it (its data directory, relative to the binary),
// checks that the binary runs, and renames the directory to into.
func fetchQEMU(ctx context.Context, dir, version, into string) error {
	var specs []string
	for _, p := range qemuPackages {
		specs = append(specs, p+"="+version)
	}
	specs = append(specs, "seabios/"+backportsSuite)
	tmp, root, err := unpackDebs(ctx, dir, aptArgs(dir), specs...)
	defer os.RemoveAll(tmp)
	if err != nil {
		return err
	}
	if err := linkFirmware(root); err != nil {
		return err
	}
	bin := filepath.Join(root, "usr", "bin", qemuBinary)
	major, err := qemuMajor(ctx, bin)
	if err != nil {
		return fmt.Errorf("%w (its libraries come from Debian 12's qemu-system-x86: make deps)", err)
	}
	if major < level1QEMUMinMajor {
		return fmt.Errorf("sandbox: %s %s is QEMU %d, want %d or later", backportsSuite, version, major, level1QEMUMinMajor)
	}
	return commitCacheEntry(root, into, version+"\n")
}

// linkFirmware links SeaBIOS's images into QEMU's data directory, where
// Debian's packages leave that to the system-wide seabios package.
func linkFirmware(root string) error {
	data := filepath.Join(root, "usr", "share", "qemu")
	bios, err := filepath.Glob(filepath.Join(root, "usr", "share", "seabios", "*.bin"))
	if err != nil || len(bios) == 0 {
		return fmt.Errorf("sandbox: fetch QEMU: no SeaBIOS images unpacked")
	}
	for _, b := range bios {
		link := filepath.Join(data, filepath.Base(b))
		if err := os.Remove(link); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("sandbox: fetch QEMU: %w", err)
		}
		if err := os.Symlink(filepath.Join("..", "seabios", filepath.Base(b)), link); err != nil {
			return fmt.Errorf("sandbox: fetch QEMU: %w", err)
		}
	}
	return nil
}

// newestCachedQEMU returns the newest complete QEMU in the cache.
func newestCachedQEMU(dir string) (string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return "", err
	}
	best := ""
	for _, e := range entries {
		if !e.IsDir() || strings.HasPrefix(e.Name(), ".") || e.Name() == "apt" {
			continue
		}
		if _, err := os.Stat(filepath.Join(dir, e.Name(), completeMarker)); err != nil {
			continue
		}
		if best == "" || versionLess(best, e.Name()) {
			best = e.Name()
		}
	}
	if best == "" {
		return "", fmt.Errorf("no complete QEMU in %s", dir)
	}
	return filepath.Join(dir, best, "usr", "bin", qemuBinary), nil
}
