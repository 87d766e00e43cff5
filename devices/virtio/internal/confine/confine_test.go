package confine

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

func TestCheckName(t *testing.T) {
	for name, want := range map[string]error{
		"a": nil, "file.txt": nil, "...": nil, "-": nil,
		"": unix.EINVAL, ".": unix.EINVAL, "..": unix.EINVAL, "a/b": unix.EINVAL, "/": unix.EINVAL,
		"a\x00b": unix.EINVAL, strings.Repeat("x", 255): nil, strings.Repeat("x", 256): unix.ENAMETOOLONG,
	} {
		assert.Equal(t, want, CheckName(name), "%q", name)
	}
}

func TestOpenBeneath(t *testing.T) {
	parent := t.TempDir()
	dir := filepath.Join(parent, "share")
	require.NoError(t, os.Mkdir(dir, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(parent, "secret"), []byte("s"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "f"), []byte("f"), 0o644))
	require.NoError(t, os.Symlink("../secret", filepath.Join(dir, "rel")))
	require.NoError(t, os.Symlink(filepath.Join(parent, "secret"), filepath.Join(dir, "abs")))
	dfd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	require.NoError(t, err)
	defer unix.Close(dfd)

	fd, err := OpenBeneath(dfd, "f", unix.O_RDONLY, 0)
	require.NoError(t, err)
	require.NoError(t, unix.Close(fd))
	for _, name := range []string{"rel", "abs"} {
		_, err := OpenBeneath(dfd, name, unix.O_RDONLY, 0)
		assert.Error(t, err, "%s: a symlink is never followed", name)
		fd, err := OpenBeneath(dfd, name, unix.O_PATH, 0)
		require.NoError(t, err, "O_PATH opens the link itself")
		var st unix.Stat_t
		require.NoError(t, Fstat(fd, &st))
		assert.Equal(t, uint32(unix.S_IFLNK), st.Mode&unix.S_IFMT)
		require.NoError(t, unix.Close(fd))
	}
	for _, name := range []string{"..", "../secret", "/etc/passwd", "rel/x"} {
		_, err := OpenBeneath(dfd, name, unix.O_RDONLY, 0)
		assert.Error(t, err, name)
	}
	fd, err = OpenBeneath(dfd, "new", unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL, 0o644)
	require.NoError(t, err)
	require.NoError(t, unix.Close(fd))
	assert.FileExists(t, filepath.Join(dir, "new"))
	_, err = OpenBeneath(dfd, "new", unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL, 0o644)
	assert.Equal(t, unix.EEXIST, err)
}

func TestOpenableAndFlags(t *testing.T) {
	assert.NoError(t, Openable(unix.S_IFREG, false))
	assert.NoError(t, Openable(unix.S_IFDIR, true))
	assert.Equal(t, unix.EISDIR, Openable(unix.S_IFDIR, false))
	assert.Equal(t, unix.ENOTDIR, Openable(unix.S_IFREG, true))
	assert.Equal(t, unix.ELOOP, Openable(unix.S_IFLNK, false))
	for _, m := range []uint32{unix.S_IFBLK, unix.S_IFCHR, unix.S_IFIFO, unix.S_IFSOCK} {
		assert.Equal(t, unix.ENXIO, Openable(m, false), "%o", m)
	}
	for m, want := range map[uint32]bool{unix.S_IFREG: true, unix.S_IFIFO: true, unix.S_IFSOCK: true,
		unix.S_IFBLK: false, unix.S_IFCHR: false, unix.S_IFDIR: false, unix.S_IFLNK: false} {
		assert.Equal(t, want, MknodAllowed(m|0o644), "%o", m)
	}
	f, err := OpenFlags(unix.O_RDWR|unix.O_CREAT|unix.O_NOFOLLOW|unix.O_DIRECT|unix.O_APPEND, false)
	require.NoError(t, err)
	assert.Equal(t, unix.O_RDWR|unix.O_APPEND|unix.O_CLOEXEC, f)
	for _, fl := range []uint32{unix.O_WRONLY, unix.O_RDWR, unix.O_RDONLY | unix.O_TRUNC} {
		_, err := OpenFlags(fl, true)
		assert.Equal(t, unix.EROFS, err, "%o", fl)
	}
	_, err = OpenFlags(unix.O_RDONLY, true)
	assert.NoError(t, err)
}
