package boot

import (
	"bytes"
	"errors"
	"fmt"
	"io"

	"github.com/vmm-dev/vmm/memory"
)

// kernelFile is an open kernel image of known size.
type kernelFile struct {
	r    io.ReaderAt
	size uint64
}

// readAt fills p from offset off, straight into p (which is usually guest
// memory), and reports a file shorter than the headers promised as
// ErrTruncated.
func (k kernelFile) readAt(p []byte, off uint64) error {
	if off > k.size || uint64(len(p)) > k.size-off {
		return fmt.Errorf("%w: need %d bytes at offset %#x, file has %d", ErrTruncated, len(p), off, k.size)
	}
	n, err := k.r.ReadAt(p, int64(off))
	if n == len(p) {
		return nil
	}
	if err == nil || errors.Is(err, io.EOF) {
		return fmt.Errorf("%w: read %d of %d bytes at offset %#x", ErrTruncated, n, len(p), off)
	}
	return fmt.Errorf("read %d bytes at offset %#x: %w", len(p), off, err)
}

// segment is a piece of the file loaded at a guest address; the part of
// memSize past fileSize is zeroed (ELF bss).
type segment struct {
	fileOff  uint64
	addr     memory.GuestAddr
	fileSize uint64
	memSize  uint64
}

// kernel is what a format parser found: where the kernel goes, how it is
// entered and what it accepts. Nothing is in guest memory yet.
type kernel struct {
	format   Format
	mode     Mode
	entry    memory.GuestAddr
	start    memory.GuestAddr // lowest loaded address
	end      memory.GuestAddr // first address past what the kernel needs (init_size, bss)
	protocol uint16           // boot protocol version, bzImage only
	segments []segment
	// setupHeader is the bzImage's struct setup_header, from offset 0x1f1
	// to its end, to be copied into the zero page.
	setupHeader []byte
	cmdlineMax  uint64           // longest command line, terminator excluded
	initrdLimit memory.GuestAddr // the initrd must end at or below this
}

// headSize is how much of the file detection and header parsing need: the
// ELF header and the bzImage setup header both lie in the first KiB.
const headSize = 1024

var elfMagic = []byte("\x7fELF")

// parseKernel detects the format from the file's first bytes and parses
// its headers against the low RAM that ends at lowLimit.
func parseKernel(kf kernelFile, lowLimit memory.GuestAddr) (*kernel, error) {
	head := make([]byte, min(kf.size, headSize))
	if err := kf.readAt(head, 0); err != nil {
		return nil, &opError{op: "load kernel", err: err}
	}
	switch {
	case bytes.HasPrefix(head, elfMagic):
		k, err := parseELF(kf, head, lowLimit)
		if err != nil {
			return nil, &opError{op: "load ELF", err: err}
		}
		return k, nil
	case len(head) >= hdrMagic+len(headerMagic) && string(head[hdrMagic:hdrMagic+len(headerMagic)]) == headerMagic:
		k, err := parseBzImage(kf, head, lowLimit)
		if err != nil {
			return nil, &opError{op: "load bzImage", err: err}
		}
		return k, nil
	}
	return nil, &opError{op: "load kernel", err: ErrNotKernel}
}

// loadSegments reads the kernel into guest memory without intermediate
// copies: the file is read straight into the guest's pages.
func loadSegments(mem *memory.Memory, kf kernelFile, segs []segment) error {
	for _, s := range segs {
		dst, err := mem.Slice(s.addr, s.fileSize)
		if err != nil {
			return fmt.Errorf("load %d bytes at %v: %w", s.fileSize, s.addr, err)
		}
		if err := kf.readAt(dst, s.fileOff); err != nil {
			return fmt.Errorf("load %d bytes at %v: %w", s.fileSize, s.addr, err)
		}
		if s.memSize > s.fileSize {
			if err := mem.Zero(s.addr+memory.GuestAddr(s.fileSize), s.memSize-s.fileSize); err != nil {
				return fmt.Errorf("zero %d bytes at %v: %w", s.memSize-s.fileSize, s.addr, err)
			}
		}
	}
	return nil
}

func alignUp(v, align uint64) uint64   { return (v + align - 1) &^ (align - 1) }
func alignDown(v, align uint64) uint64 { return v &^ (align - 1) }
