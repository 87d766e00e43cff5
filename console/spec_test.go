package console

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseSpec(t *testing.T) {
	tests := []struct {
		in      string
		want    Spec
		wantErr bool
	}{
		{"stdio", Spec{Kind: Stdio}, false},
		{"none", Spec{Kind: None}, false},
		{"file=/tmp/console.log", Spec{Kind: File, Path: "/tmp/console.log"}, false},
		{"file=a=b", Spec{Kind: File, Path: "a=b"}, false},
		{"file=", Spec{}, true},
		{"file", Spec{}, true},
		{"", Spec{}, true},
		{"STDIO", Spec{}, true},
		{"stdio ", Spec{}, true},
		{"pty", Spec{}, true},
		{"socket=/tmp/s", Spec{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseSpec(tt.in)
			if tt.wantErr {
				require.ErrorIs(t, err, ErrBadConsoleSpec)
				assert.Contains(t, err.Error(), tt.in)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
			assert.Equal(t, tt.in, got.String())
		})
	}
}

func TestOutputFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "console.log")
	require.NoError(t, os.WriteFile(path, []byte("old contents"), 0o644))
	w, err := Output("file=" + path)
	require.NoError(t, err)
	_, err = w.Write([]byte("boot\r\n"))
	require.NoError(t, err)
	require.NoError(t, w.Close())
	got, err := os.ReadFile(path)
	require.NoError(t, err)
	assert.Equal(t, "boot\r\n", string(got), "the file is truncated")
}

func TestOutputErrors(t *testing.T) {
	_, err := Output("serial")
	require.ErrorIs(t, err, ErrBadConsoleSpec)

	_, err = Output("file=" + filepath.Join(t.TempDir(), "missing", "console.log"))
	require.ErrorIs(t, err, os.ErrNotExist)
}

func TestOutputNoneAndStdio(t *testing.T) {
	w, err := Output("none")
	require.NoError(t, err)
	n, err := w.Write([]byte("dropped"))
	require.NoError(t, err)
	assert.Equal(t, 7, n)
	require.NoError(t, w.Close())

	w, err = Output("stdio")
	require.NoError(t, err)
	require.NoError(t, w.Close())
	_, err = os.Stdout.Stat()
	require.NoError(t, err, "closing the stdio output leaves stdout open")
}
