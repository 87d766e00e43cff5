package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vmm-dev/vmm/tests/bench/internal/results"
)

const lddOut = `	linux-vdso.so.1 (0x00007ffd2a9f3000)
	libz.so.1 => /lib/x86_64-linux-gnu/libz.so.1 (0x00007f1a0a000000)
	libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f1a09e00000)
	/lib64/ld-linux-x86-64.so.2 (0x00007f1a0a1c0000)
`

func TestParseLdd(t *testing.T) {
	libs, loader, err := parseLdd(lddOut)
	require.NoError(t, err)
	assert.Equal(t, map[string]string{
		"libz.so.1": "/lib/x86_64-linux-gnu/libz.so.1",
		"libc.so.6": "/lib/x86_64-linux-gnu/libc.so.6",
	}, libs)
	assert.Equal(t, "/lib64/ld-linux-x86-64.so.2", loader)
}

func TestParseLddErrors(t *testing.T) {
	_, _, err := parseLdd("\tlibfoo.so.1 => not found\n")
	require.Error(t, err)
	_, _, err = parseLdd("\tlibz.so.1 => /lib/libz.so.1 (0x1)\n")
	require.Error(t, err, "libraries without a loader")
	libs, loader, err := parseLdd("\tstatically linked\n")
	require.NoError(t, err)
	assert.Empty(t, libs)
	assert.Empty(t, loader)
}

func TestLevel1Script(t *testing.T) {
	cfg := &results.Config{Net: &results.NetSpec{Port: 5201, Links: map[string]results.NetLink{
		results.VMM:  {Tap: "tapv", HostIP: "10.0.1.1"},
		results.QEMU: {Tap: "tapq", HostIP: "10.0.2.1"},
	}}}
	s := level1Script(cfg, 64)
	assert.Contains(t, s, "tunctl -t tapv >/dev/null && ip addr add 10.0.1.1/24 dev tapv")
	assert.Contains(t, s, "tunctl -t tapq")
	assert.Contains(t, s, "count=64")
	assert.True(t, strings.HasSuffix(s, "\"$DATA/benchrun\" \"$DATA/bench-config.json\"\n"))

	s = level1Script(&results.Config{}, 0)
	assert.NotContains(t, s, "tunctl")
	assert.NotContains(t, s, "disk.img")
}

func TestGuestOptionsReplaceInit(t *testing.T) {
	opts, err := guestOptions("/bin/true")
	require.NoError(t, err)
	names := map[string]bool{}
	for _, f := range opts.Files {
		names[f.Name] = true
	}
	assert.True(t, names["/init"] && names["/bench-init.sh"] && names["/bin/benchguest"])
	assert.Contains(t, guestInitScript, "@@BENCH idle")
	assert.Contains(t, guestInitScript, "@@BENCH done")
}

func TestMissingOptions(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config")
	require.NoError(t, os.WriteFile(cfg, []byte("CONFIG_EPOLL=y\n# CONFIG_EVENTFD is not set\nCONFIG_OVERLAY_FS=m\n"), 0o644))
	assert.Equal(t, []string{"CONFIG_EVENTFD", "CONFIG_OVERLAY_FS"}, missingOptions(cfg, commandOptions))
	assert.Equal(t, commandOptions, missingOptions(filepath.Join(dir, "none"), commandOptions))
}
