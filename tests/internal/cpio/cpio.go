// Package cpio writes initramfs archives in the "newc" cpio format that the
// Linux kernel unpacks into its root file system.
//
// Format: Documentation/driver-api/early-userspace/buffer-format.rst — each
// entry is a 110-byte ASCII header ("070701" then 13 fields of 8 hex digits),
// the NUL-terminated name, padding to 4 bytes, the data, padding to 4 bytes.
// The archive ends with an entry named "TRAILER!!!".
package cpio

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"
)

// Mode bits of the file type (stat.h), as stored in the header's mode field.
const (
	typeRegular   = 0o100000
	typeDirectory = 0o040000
	typeSymlink   = 0o120000
)

const (
	newcMagic   = "070701"
	trailerName = "TRAILER!!!"
)

// ErrInvalidName is returned for names that would escape the archive root.
var ErrInvalidName = errors.New("cpio: invalid name")

// Writer appends entries to a newc archive. Close writes the trailer; it does
// not close the underlying writer.
type Writer struct {
	w      io.Writer
	inode  uint32
	offset int64
	closed bool
}

// NewWriter returns a Writer that writes the archive to w.
func NewWriter(w io.Writer) *Writer {
	return &Writer{w: w, inode: 1}
}

// Dir adds a directory.
func (w *Writer) Dir(name string, perm uint32) error {
	return w.entry(name, typeDirectory|perm&0o7777, 2, nil, 0)
}

// Symlink adds a symbolic link name -> target.
func (w *Writer) Symlink(name, target string) error {
	return w.entry(name, typeSymlink|0o777, 1, strings.NewReader(target), int64(len(target)))
}

// File adds a regular file whose size bytes are read from r.
func (w *Writer) File(name string, perm uint32, r io.Reader, size int64) error {
	return w.entry(name, typeRegular|perm&0o7777, 1, r, size)
}

// Bytes adds a regular file with the given content.
func (w *Writer) Bytes(name string, perm uint32, data []byte) error {
	return w.File(name, perm, bytes.NewReader(data), int64(len(data)))
}

// Close writes the trailer entry.
func (w *Writer) Close() error {
	if w.closed {
		return nil
	}
	if err := w.header(trailerName, 0, 1, 0, 0); err != nil {
		return err
	}
	w.closed = true
	return nil
}

// CleanName turns a path into the relative form stored in archives
// ("/bin/sh" -> "bin/sh") and rejects empty names and ".." components.
func CleanName(name string) (string, error) {
	clean := strings.TrimPrefix(path.Clean("/"+name), "/")
	if clean == "" || clean == "." || clean == trailerName {
		return "", fmt.Errorf("%w: %q", ErrInvalidName, name)
	}
	for _, part := range strings.Split(name, "/") {
		if part == ".." {
			return "", fmt.Errorf("%w: %q", ErrInvalidName, name)
		}
	}
	return clean, nil
}

func (w *Writer) entry(name string, mode, nlink uint32, r io.Reader, size int64) error {
	if w.closed {
		return fmt.Errorf("cpio: write %q after Close", name)
	}
	clean, err := CleanName(name)
	if err != nil {
		return err
	}
	if size < 0 || size > 0xffffffff {
		return fmt.Errorf("cpio: %q: size %d does not fit the newc header", name, size)
	}
	w.inode++
	if err := w.header(clean, mode, nlink, w.inode, uint32(size)); err != nil {
		return err
	}
	if size == 0 {
		return nil
	}
	n, err := io.CopyN(w.w, r, size)
	w.offset += n
	if err != nil {
		return fmt.Errorf("cpio: %q: copy data: %w", name, err)
	}
	return w.pad()
}

func (w *Writer) header(name string, mode, nlink, inode, size uint32) error {
	// Fields in order: ino, mode, uid, gid, nlink, mtime, filesize,
	// devmajor, devminor, rdevmajor, rdevminor, namesize (with NUL), check.
	// mtime is 0 so that archives are reproducible.
	hdr := fmt.Sprintf("%s%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x",
		newcMagic, inode, mode, 0, 0, nlink, 0, size, 0, 0, 0, 0, len(name)+1, 0)
	if err := w.write([]byte(hdr + name + "\x00")); err != nil {
		return fmt.Errorf("cpio: %q: write header: %w", name, err)
	}
	return w.pad()
}

func (w *Writer) pad() error {
	if rem := w.offset % 4; rem != 0 {
		return w.write(make([]byte, 4-rem))
	}
	return nil
}

func (w *Writer) write(b []byte) error {
	n, err := w.w.Write(b)
	w.offset += int64(n)
	return err
}
