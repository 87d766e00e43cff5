// Package initramfs builds the guest's initial RAM filesystem for
// `vmm run -- CMD` in memory: a newc cpio archive (the format Linux
// unpacks, Documentation/driver-api/early-userspace/buffer-format.rst),
// the kernel modules it needs in the order they must load, and the
// kernel's release string, read from its image, that names its modules.
//
// The cpio writer is our own rather than u-root's pkg/cpio: the kernel
// needs only newc entries for directories and regular files, which is
// a 110-byte header and two paddings, and u-root's module would pull a
// large dependency tree into a binary that ships inside every guest.
package initramfs

import (
	"errors"
	"fmt"
	"io"
	"strings"
)

// newc header: magic, then 13 fields of 8 hex digits (buffer-format.rst).
const (
	newcMagic      = "070701"
	newcHeaderSize = 110
	trailerName    = "TRAILER!!!"
)

// File modes (the st_mode type bits).
const (
	ModeDir     = 0o040000
	ModeFile    = 0o100000
	ModeCharDev = 0o020000
)

// ErrName: an entry name that cannot be in an archive.
var ErrName = errors.New("invalid cpio entry name")

// Writer writes a newc archive.
type Writer struct {
	w      io.Writer
	ino    uint32
	off    int64
	err    error
	closed bool
	rdev   [2]uint32 // major, minor of the entry being written
}

// NewWriter returns a Writer on w.
func NewWriter(w io.Writer) *Writer { return &Writer{w: w, ino: 1} }

// Dir adds a directory.
func (cw *Writer) Dir(name string, perm uint32) error {
	return cw.entry(name, ModeDir|perm&0o7777, nil)
}

// File adds a regular file with data.
func (cw *Writer) File(name string, perm uint32, data []byte) error {
	return cw.entry(name, ModeFile|perm&0o7777, data)
}

// CharDev adds a character device node. The kernel opens /dev/console
// of the initramfs for init's stdin, stdout and stderr before devtmpfs
// is mounted (init/main.c, console_on_rootfs), so an archive for an init
// needs that node.
func (cw *Writer) CharDev(name string, perm, major, minor uint32) error {
	cw.rdev = [2]uint32{major, minor}
	defer func() { cw.rdev = [2]uint32{} }()
	return cw.entry(name, ModeCharDev|perm&0o7777, nil)
}

// Close writes the trailer; the archive is complete after it.
func (cw *Writer) Close() error {
	if cw.closed {
		return cw.err
	}
	cw.closed = true
	cw.header(trailerName, 0, 0, 0)
	return cw.err
}

func (cw *Writer) entry(name string, mode uint32, data []byte) error {
	name = strings.TrimPrefix(name, "/")
	if name == "" || name == trailerName || strings.ContainsRune(name, 0) {
		return fmt.Errorf("%w: %q", ErrName, name)
	}
	if cw.closed {
		return fmt.Errorf("cpio entry %s: archive already closed", name)
	}
	nlink := uint32(1)
	if mode&ModeDir != 0 {
		nlink = 2
	}
	cw.ino++
	cw.header(name, mode, nlink, uint32(len(data)))
	cw.write(data)
	cw.pad()
	if cw.err != nil {
		return fmt.Errorf("cpio entry %s: %w", name, cw.err)
	}
	return nil
}

// header writes an entry's header and name, padded to 4 bytes. Owner
// root, mtime 0: the archive is the same for the same inputs.
func (cw *Writer) header(name string, mode, nlink, size uint32) {
	ino := cw.ino
	if name == trailerName {
		ino = 0
	}
	h := fmt.Sprintf("%s%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x",
		newcMagic, ino, mode, 0, 0, nlink, 0, size, 0, 0, cw.rdev[0], cw.rdev[1], len(name)+1, 0)
	cw.write([]byte(h))
	cw.write(append([]byte(name), 0))
	cw.pad()
}

func (cw *Writer) pad() {
	if n := cw.off % 4; n != 0 {
		cw.write(make([]byte, 4-n))
	}
}

func (cw *Writer) write(b []byte) {
	if cw.err != nil || len(b) == 0 {
		return
	}
	n, err := cw.w.Write(b)
	cw.off += int64(n)
	cw.err = err
}
