package cpio

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// parsedEntry is what readArchive finds in one newc header.
type parsedEntry struct {
	name string
	mode uint32
	data string
}

// readArchive is an independent newc parser used to check the writer.
func readArchive(t *testing.T, b []byte) []parsedEntry {
	t.Helper()
	var out []parsedEntry
	off := 0
	field := func(i int) uint32 {
		v, err := strconv.ParseUint(string(b[off+6+8*i:off+14+8*i]), 16, 32)
		require.NoError(t, err)
		return uint32(v)
	}
	align := func(n int) int { return (n + 3) &^ 3 }
	for {
		require.LessOrEqual(t, off+110, len(b), "truncated header")
		require.Equal(t, "070701", string(b[off:off+6]))
		mode, size, nameSize := field(1), int(field(6)), int(field(11))
		name := string(b[off+110 : off+110+nameSize-1])
		require.Equal(t, byte(0), b[off+110+nameSize-1], "name must be NUL-terminated")
		dataStart := align(off + 110 + nameSize)
		data := string(b[dataStart : dataStart+size])
		off = align(dataStart + size)
		if name == "TRAILER!!!" {
			require.Equal(t, len(b), off, "trailer must end the archive")
			return out
		}
		out = append(out, parsedEntry{name: name, mode: mode, data: data})
	}
}

func TestWriterLayout(t *testing.T) {
	var buf bytes.Buffer
	w := NewWriter(&buf)
	require.NoError(t, w.Dir("/etc", 0o755))
	require.NoError(t, w.Bytes("etc/motd", 0o644, []byte("hello")))
	require.NoError(t, w.Symlink("bin/sh", "busybox"))
	require.NoError(t, w.Close())
	require.Zero(t, buf.Len()%4)

	got := readArchive(t, buf.Bytes())
	assert.Equal(t, []parsedEntry{
		{name: "etc", mode: 0o040755},
		{name: "etc/motd", mode: 0o100644, data: "hello"},
		{name: "bin/sh", mode: 0o120777, data: "busybox"},
	}, got)
}

func TestWriteAfterClose(t *testing.T) {
	w := NewWriter(&bytes.Buffer{})
	require.NoError(t, w.Close())
	require.Error(t, w.Bytes("x", 0o644, nil))
}

func TestCleanName(t *testing.T) {
	tests := []struct {
		in      string
		want    string
		wantErr bool
	}{
		{in: "/init", want: "init"},
		{in: "bin//sh", want: "bin/sh"},
		{in: "./a/b/", want: "a/b"},
		{in: "", wantErr: true},
		{in: "/", wantErr: true},
		{in: "../etc", wantErr: true},
		{in: "a/../../b", wantErr: true},
		{in: "TRAILER!!!", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := CleanName(tt.in)
			if tt.wantErr {
				require.ErrorIs(t, err, ErrInvalidName)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
}

func TestTreeCreatesParentsInOrder(t *testing.T) {
	host := filepath.Join(t.TempDir(), "payload")
	require.NoError(t, os.WriteFile(host, []byte("from host"), 0o750))

	tree := NewTree()
	require.NoError(t, tree.Bytes("/usr/share/doc/readme", 0o600, []byte("doc")))
	require.NoError(t, tree.HostFile("/bin/payload", host, 0))
	require.NoError(t, tree.Symlink("/bin/sh", "busybox"))
	require.Error(t, tree.Symlink("/bin/bad", ""))
	assert.True(t, tree.Has("bin/sh"))
	assert.False(t, tree.Has("bin/bad"))

	var buf bytes.Buffer
	n, err := tree.WriteTo(&buf)
	require.NoError(t, err)
	assert.Equal(t, int64(buf.Len()), n)

	var names []string
	for _, e := range readArchive(t, buf.Bytes()) {
		names = append(names, e.name)
		if e.name == "bin/payload" {
			assert.Equal(t, "from host", e.data)
			assert.Equal(t, uint32(0o100750), e.mode)
		}
	}
	assert.Equal(t, []string{"bin", "bin/payload", "bin/sh", "usr", "usr/share", "usr/share/doc", "usr/share/doc/readme"}, names)
}

// TestTreeExtractsWithSystemCpio checks the archive against GNU cpio, an
// independent reader, when it is installed.
func TestTreeExtractsWithSystemCpio(t *testing.T) {
	cpioTool, err := exec.LookPath("cpio")
	if err != nil {
		t.Skip("cpio tool not installed")
	}
	tree := NewTree()
	require.NoError(t, tree.Bytes("a/b/c.txt", 0o644, []byte("odd length")))
	require.NoError(t, tree.Symlink("a/link", "b/c.txt"))
	require.NoError(t, tree.Dir("empty", 0o700))
	var buf bytes.Buffer
	_, err = tree.WriteTo(&buf)
	require.NoError(t, err)

	dir := t.TempDir()
	cmd := exec.Command(cpioTool, "-idm", "--quiet")
	cmd.Dir = dir
	cmd.Stdin = &buf
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, string(out))

	data, err := os.ReadFile(filepath.Join(dir, "a/link"))
	require.NoError(t, err)
	assert.Equal(t, "odd length", string(data))
	info, err := os.Stat(filepath.Join(dir, "empty"))
	require.NoError(t, err)
	assert.True(t, info.IsDir())
}
