package sandbox

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// A download into the artifact cache (Debian's kernel) takes these
// steps: apt-get download into a temporary directory next to the entry,
// dpkg -x into its root, the caller's own checks and files, then the
// metadata, the completion marker, and a rename into place, so that a
// half-done entry is never taken for a whole one.

// unpackDebs downloads specs ("pkg=version", "pkg/suite") with apt-get,
// as the system's apt configuration has it, into a new
// temporary directory under parent, and unpacks them all into its root.
// The caller removes tmp when done, whatever happened.
func unpackDebs(ctx context.Context, parent string, specs ...string) (tmp, root string, err error) {
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return "", "", fmt.Errorf("sandbox: fetch %v: %w", specs, err)
	}
	if tmp, err = os.MkdirTemp(parent, ".fetch-*"); err != nil {
		return "", "", fmt.Errorf("sandbox: fetch %v: %w", specs, err)
	}
	download := exec.CommandContext(ctx, "apt-get", append([]string{"download"}, specs...)...)
	download.Dir = tmp
	if out, err := download.CombinedOutput(); err != nil {
		return tmp, "", fmt.Errorf("sandbox: apt-get download %v: %w: %s", specs, err, tail(string(out), 5))
	}
	debs, err := filepath.Glob(filepath.Join(tmp, "*.deb"))
	if err != nil || len(debs) != len(specs) {
		return tmp, "", fmt.Errorf("sandbox: apt-get download %v: found %v", specs, debs)
	}
	root = filepath.Join(tmp, "root")
	for _, deb := range debs {
		if out, err := exec.CommandContext(ctx, "dpkg", "-x", deb, root).CombinedOutput(); err != nil {
			return tmp, "", fmt.Errorf("sandbox: dpkg -x %s: %w: %s", deb, err, tail(string(out), 5))
		}
	}
	return tmp, root, nil
}

// commitCacheEntry writes meta to root/package and the completion marker,
// then replaces the cache entry into with root.
func commitCacheEntry(root, into, meta string) error {
	if err := os.WriteFile(filepath.Join(root, "package"), []byte(meta), 0o644); err != nil {
		return fmt.Errorf("sandbox: cache %s: %w", into, err)
	}
	if err := os.WriteFile(filepath.Join(root, completeMarker), nil, 0o644); err != nil {
		return fmt.Errorf("sandbox: cache %s: %w", into, err)
	}
	if err := os.RemoveAll(into); err != nil { // a partial entry, or one of an older layout
		return fmt.Errorf("sandbox: cache %s: %w", into, err)
	}
	if err := os.Rename(root, into); err != nil {
		return fmt.Errorf("sandbox: cache %s: %w", into, err)
	}
	return nil
}
