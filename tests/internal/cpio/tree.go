package cpio

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
)

// Tree collects the entries of an archive before writing it, so callers can
// add files in any order: parent directories are created implicitly, and a
// later entry with the same name replaces an earlier one.
type Tree struct {
	entries map[string]treeEntry
}

type treeEntry struct {
	perm     uint32
	dir      bool
	target   string // symlink target
	hostPath string // file content from the host
	data     []byte // file content in memory
}

// NewTree returns an empty tree.
func NewTree() *Tree {
	return &Tree{entries: map[string]treeEntry{}}
}

// Dir adds a directory.
func (t *Tree) Dir(name string, perm uint32) error {
	return t.add(name, treeEntry{dir: true, perm: perm})
}

// Symlink adds a symbolic link name -> target.
func (t *Tree) Symlink(name, target string) error {
	if target == "" {
		return fmt.Errorf("%w: symlink %q has an empty target", ErrInvalidName, name)
	}
	return t.add(name, treeEntry{target: target})
}

// Bytes adds a file with the given content.
func (t *Tree) Bytes(name string, perm uint32, data []byte) error {
	return t.add(name, treeEntry{perm: perm, data: data})
}

// HostFile adds a file whose content is read from hostPath when the tree is
// written; perm 0 keeps the host file's permissions.
func (t *Tree) HostFile(name, hostPath string, perm uint32) error {
	if perm == 0 {
		info, err := os.Stat(hostPath)
		if err != nil {
			return fmt.Errorf("cpio: add %q: %w", name, err)
		}
		perm = uint32(info.Mode().Perm())
	}
	return t.add(name, treeEntry{perm: perm, hostPath: hostPath})
}

// Has reports whether name was added.
func (t *Tree) Has(name string) bool {
	clean, err := CleanName(name)
	if err != nil {
		return false
	}
	_, ok := t.entries[clean]
	return ok
}

func (t *Tree) add(name string, e treeEntry) error {
	clean, err := CleanName(name)
	if err != nil {
		return err
	}
	t.entries[clean] = e
	return nil
}

// WriteTo writes the archive (parents before children, then the trailer).
func (t *Tree) WriteTo(out io.Writer) (int64, error) {
	names := make(map[string]bool, len(t.entries))
	for name := range t.entries {
		names[name] = true
		for dir := path.Dir(name); dir != "."; dir = path.Dir(dir) {
			names[dir] = true
		}
	}
	sorted := make([]string, 0, len(names))
	for name := range names {
		sorted = append(sorted, name)
	}
	// Sorting by path puts every directory before its content.
	sort.Strings(sorted)

	counter := &countingWriter{w: out}
	w := NewWriter(counter)
	for _, name := range sorted {
		if err := t.writeEntry(w, name); err != nil {
			return counter.n, err
		}
	}
	err := w.Close()
	return counter.n, err
}

func (t *Tree) writeEntry(w *Writer, name string) error {
	e, ok := t.entries[name]
	switch {
	case !ok:
		return w.Dir(name, 0o755)
	case e.dir:
		return w.Dir(name, e.perm)
	case e.target != "":
		return w.Symlink(name, e.target)
	case e.hostPath != "":
		f, err := os.Open(e.hostPath)
		if err != nil {
			return fmt.Errorf("cpio: %q: %w", name, err)
		}
		defer f.Close()
		info, err := f.Stat()
		if err != nil {
			return fmt.Errorf("cpio: %q: %w", name, err)
		}
		if !info.Mode().IsRegular() {
			return fmt.Errorf("cpio: %q: %s is not a regular file", name, e.hostPath)
		}
		return w.File(name, e.perm, f, info.Size())
	default:
		return w.File(name, e.perm, bytes.NewReader(e.data), int64(len(e.data)))
	}
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
