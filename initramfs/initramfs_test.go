package initramfs

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// readNewc parses an archive back: name -> (mode, data).
func readNewc(t *testing.T, b []byte) (names []string, modes map[string]uint32, data map[string][]byte) {
	t.Helper()
	modes, data = map[string]uint32{}, map[string][]byte{}
	off := 0
	field := func(i int) int {
		v, err := strconv.ParseUint(string(b[off+6+8*i:off+14+8*i]), 16, 32)
		require.NoError(t, err)
		return int(v)
	}
	for {
		require.Equal(t, "070701", string(b[off:off+6]), "magic at %d", off)
		mode, size, nameSize := field(1), field(6), field(11)
		if mode&ModeCharDev != 0 && mode&ModeFile == 0 {
			require.Equal(t, [2]int{5, 1}, [2]int{field(9), field(10)}, "rdev major, minor")
		}
		name := string(b[off+110 : off+110+nameSize-1])
		require.Zero(t, b[off+110+nameSize-1], "name is NUL-terminated")
		off = (off + 110 + nameSize + 3) &^ 3
		if name == "TRAILER!!!" {
			require.Equal(t, len(b), (off+3)&^3)
			return
		}
		names = append(names, name)
		modes[name] = uint32(mode)
		data[name] = b[off : off+size]
		off = (off + size + 3) &^ 3
	}
}

func TestCpioNewc(t *testing.T) {
	var buf bytes.Buffer
	w := NewWriter(&buf)
	require.NoError(t, w.Dir("lib", 0o755))
	require.NoError(t, w.File("/init", 0o755, []byte("#!elf")))
	require.NoError(t, w.File("lib/a.ko", 0o644, bytes.Repeat([]byte{0, 1, 2}, 1001)))
	require.NoError(t, w.File("empty", 0o600, nil))
	require.NoError(t, w.CharDev("console", 0o600, 5, 1))
	assert.ErrorIs(t, w.File("", 0o644, nil), ErrName)
	assert.ErrorIs(t, w.File("TRAILER!!!", 0o644, nil), ErrName)
	require.NoError(t, w.Close())
	assert.Error(t, w.File("late", 0o644, nil))

	names, modes, data := readNewc(t, buf.Bytes())
	assert.Equal(t, []string{"lib", "init", "lib/a.ko", "empty", "console"}, names)
	assert.Equal(t, uint32(ModeCharDev|0o600), modes["console"])
	assert.Equal(t, uint32(ModeDir|0o755), modes["lib"])
	assert.Equal(t, uint32(ModeFile|0o755), modes["init"])
	assert.Equal(t, []byte("#!elf"), data["init"])
	assert.Len(t, data["lib/a.ko"], 3003)
	assert.Empty(t, data["empty"])

	// GNU cpio, where installed, reads the same archive.
	if _, err := exec.LookPath("cpio"); err == nil {
		cmd := exec.Command("cpio", "-t", "--quiet")
		cmd.Stdin = bytes.NewReader(buf.Bytes())
		out, err := cmd.Output()
		require.NoError(t, err)
		assert.Equal(t, "lib\ninit\nlib/a.ko\nempty\nconsole\n", string(out))
	}
}

func TestParseModulesDep(t *testing.T) {
	deps, err := ParseModulesDep(strings.NewReader(
		"kernel/drivers/virtio/virtio_mmio.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko\n" +
			"kernel/drivers/virtio/virtio.ko: kernel/drivers/virtio/virtio_ring.ko\n" +
			"kernel/drivers/virtio/virtio_ring.ko:\n" +
			"kernel/fs/fuse/virtiofs.ko.xz: kernel/fs/fuse/fuse.ko.xz\n"))
	require.NoError(t, err)
	assert.Equal(t, map[string][]string{
		"virtio_mmio": {"virtio", "virtio_ring"},
		"virtio":      {"virtio_ring"},
		"virtio_ring": nil,
		"virtiofs":    {"fuse"},
	}, deps)
	_, err = ParseModulesDep(strings.NewReader("no colon here\n"))
	assert.Error(t, err)
}

func TestParseModinfoDepends(t *testing.T) {
	mi := []byte("license=GPL\x00depends=virtio,virtio-ring\x00intree=Y\x00")
	assert.Equal(t, []string{"virtio", "virtio_ring"}, ParseModinfoDepends(mi))
	assert.Empty(t, ParseModinfoDepends([]byte("depends=\x00")))
}

func TestOrderModules(t *testing.T) {
	paths := map[string]string{}
	for _, n := range []string{"a", "b", "c", "d", "x", "y"} {
		paths[n] = n + ".ko"
	}
	tests := []struct {
		name        string
		want        []string
		deps        map[string][]string
		wantOrder   []string
		wantMissing []string
	}{
		{"chain", []string{"a"}, map[string][]string{"a": {"b"}, "b": {"c"}}, []string{"c", "b", "a"}, nil},
		{"diamond once", []string{"a", "d"}, map[string][]string{"a": {"b", "c"}, "b": {"d"}, "c": {"d"}}, []string{"d", "b", "c", "a"}, nil},
		{"cycle cut", []string{"x"}, map[string][]string{"x": {"y"}, "y": {"x"}}, []string{"y", "x"}, nil},
		{"missing and builtin", []string{"nope", "a", "built-in"}, nil, []string{"a"}, []string{"nope"}},
		{"dash is underscore", []string{"a"}, map[string][]string{"a": {"b"}}, []string{"b", "a"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mods, missing := OrderModules(tt.want, tt.deps, paths, map[string]bool{"built_in": true})
			var got []string
			for _, m := range mods {
				got = append(got, m.Name)
			}
			assert.Equal(t, tt.wantOrder, got)
			assert.Equal(t, tt.wantMissing, missing)
		})
	}
}

// debianKernel is the cached Debian cloud kernel package (make prepare).
func debianKernel(t *testing.T) string {
	home, _ := os.UserHomeDir()
	m, _ := filepath.Glob(filepath.Join(home, ".cache/vmm/kernels/linux-image-*-cloud-amd64-unsigned_*"))
	if len(m) == 0 {
		t.Skip("no Debian cloud kernel in ~/.cache/vmm (make prepare)")
	}
	return m[len(m)-1]
}

// The real package: no modules.dep, and virtio.ko's depends= omits
// virtio_ring (docs: ENVIRONMENT), so the order must come from symbols.
func TestDebianModules(t *testing.T) {
	pkg := debianKernel(t)
	vmlinuz, _ := filepath.Glob(filepath.Join(pkg, "boot/vmlinuz-*"))
	require.NotEmpty(t, vmlinuz)
	rel, err := KernelRelease(vmlinuz[0])
	require.NoError(t, err)
	assert.Equal(t, strings.TrimPrefix(filepath.Base(vmlinuz[0]), "vmlinuz-"), rel)

	dir, err := FindModuleDir(pkg, rel)
	require.NoError(t, err)
	tree, err := OpenTree(dir)
	require.NoError(t, err)
	mods, missing := tree.Resolve([]string{"virtio_mmio", "virtio_console", "virtiofs", "overlay", "9pnet_virtio"})
	assert.Equal(t, []string{"9pnet_virtio"}, missing, "Debian's cloud kernel has no 9p")
	pos := map[string]int{}
	for i, m := range mods {
		pos[m.Name] = i + 1
	}
	for _, before := range [][2]string{{"virtio_ring", "virtio"}, {"virtio", "virtio_mmio"}, {"virtio", "virtio_console"}, {"fuse", "virtiofs"}} {
		require.NotZero(t, pos[before[0]], before[0])
		require.NotZero(t, pos[before[1]], before[1])
		assert.Less(t, pos[before[0]], pos[before[1]], "%s before %s", before[0], before[1])
	}
	assert.NotZero(t, pos["overlay"])
	t.Logf("load order: %v", mods)
}

func TestKernelReleaseErrors(t *testing.T) {
	p := filepath.Join(t.TempDir(), "junk")
	require.NoError(t, os.WriteFile(p, []byte("not a kernel"), 0o644))
	_, err := KernelRelease(p)
	assert.ErrorIs(t, err, ErrNoRelease)
	_, err = KernelRelease(filepath.Join(t.TempDir(), "absent"))
	assert.Error(t, err)
}
