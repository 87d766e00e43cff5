package sandbox

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseQEMUMajor(t *testing.T) {
	m, err := parseQEMUMajor("QEMU emulator version 10.0.2 (Debian 1:10.0.2+ds-2+deb13u1~bpo12+1)\nCopyright")
	require.NoError(t, err)
	assert.Equal(t, 10, m)
	m, err = parseQEMUMajor("QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)\n")
	require.NoError(t, err)
	assert.Equal(t, 7, m)
	_, err = parseQEMUMajor("bash: qemu: command not found")
	assert.Error(t, err)
}

func TestIsBookworm(t *testing.T) {
	assert.True(t, isBookworm("PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nVERSION_CODENAME=bookworm\nID=debian\n"))
	assert.True(t, isBookworm("VERSION_CODENAME=\"bookworm\""))
	assert.False(t, isBookworm("VERSION_CODENAME=trixie\n"))
	assert.False(t, isBookworm("ID=fedora\n"))
}

func TestNewestPatchedQEMU(t *testing.T) {
	dir := t.TempDir()
	_, err := newestPatchedQEMU(dir)
	assert.Error(t, err, "no build")
	mk := func(name string, complete bool, age time.Duration) {
		require.NoError(t, os.MkdirAll(filepath.Join(dir, name, "usr", "bin"), 0o755))
		if !complete {
			return
		}
		marker := filepath.Join(dir, name, patchedQEMUComplete)
		require.NoError(t, os.WriteFile(marker, []byte("1:10.0.13+ds-0+deb13u1\n"), 0o644))
		when := time.Now().Add(-age)
		require.NoError(t, os.Chtimes(marker, when, when))
	}
	mk("1_10.0.13_ds-0_deb13u1-aaaaaaaaaaaa", true, time.Hour)
	mk("1_10.0.13_ds-0_deb13u1-bbbbbbbbbbbb", true, time.Minute)
	mk("1_10.0.14_ds-0_deb13u1-cccccccccccc", false, 0)
	mk(".build-x", true, 0)
	q, err := newestPatchedQEMU(dir)
	require.NoError(t, err)
	assert.Equal(t, filepath.Join(dir, "1_10.0.13_ds-0_deb13u1-bbbbbbbbbbbb", "usr", "bin", qemuBinary), q, "the build that finished last; half-done and temporary ones are skipped")
}

func TestQEMUBuildFiles(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, writeQEMUBuild(dir))
	script, err := os.ReadFile(filepath.Join(dir, "build.sh"))
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(string(script), "#!/bin/bash\n"))
	patches, err := filepath.Glob(filepath.Join(dir, "*.patch"))
	require.NoError(t, err)
	var names []string
	for _, p := range patches {
		names = append(names, filepath.Base(p))
	}
	// Both fixes, and never the debugging patch of qemu/debug/.
	assert.ElementsMatch(t, []string{"fpu-ignne-hflags2-race.patch", "svm-vmrun-virq-bql.patch"}, names)
	assert.Equal(t, "/a/b/qemu-system-x86_64", lastLine("QEMU 10\n/a/b/qemu-system-x86_64\n"))
}

// TestQEMUBuildExtraPatchesDir checks that build.sh refuses an extra
// patch directory with no patches in it, before it fetches anything.
func TestQEMUBuildExtraPatchesDir(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, writeQEMUBuild(dir))
	cmd := exec.Command("bash", filepath.Join(dir, "build.sh"))
	cmd.Env = append(os.Environ(), "VMM_CACHE="+t.TempDir(), "VMM_QEMU_EXTRA_PATCHES="+t.TempDir())
	out, err := cmd.CombinedOutput()
	require.Error(t, err, "%s", out)
	assert.Contains(t, string(out), "build.sh: no patches in")
}
