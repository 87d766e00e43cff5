package p9

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/hugelgupf/p9/p9"
	"github.com/stretchr/testify/require"
)

// BenchmarkWalkGetattr is one lstat of a file in a subdirectory as Linux's
// v9fs with cache=none does it: walk the path, read its attributes, clunk.
func BenchmarkWalkGetattr(b *testing.B) {
	dir := b.TempDir()
	require.NoError(b, os.Mkdir(filepath.Join(dir, "d"), 0o755))
	require.NoError(b, os.WriteFile(filepath.Join(dir, "d", "f"), []byte("x"), 0o644))
	root, _ := client(b, dir, true)
	b.ResetTimer()
	for range b.N {
		_, f, err := root.Walk([]string{"d", "f"})
		if err != nil {
			b.Fatal(err)
		}
		if _, _, _, err := f.GetAttr(p9.AttrMaskAll); err != nil {
			b.Fatal(err)
		}
		if err := f.Close(); err != nil {
			b.Fatal(err)
		}
	}
}
