// Package snapshot is the on-disk form of a paused VM: a versioned,
// checksummed state file of named sections, and the guest memory file
// (full, or only the pages dirtied since the last snapshot, sparse, at
// the same offsets). It knows nothing of what the sections hold: the
// machine fills and reads them.
//
// A snapshot file is untrusted input: Decode checks every length against
// the bytes present and refuses, before anything is restored, a file
// that is not a snapshot, of another format version, truncated, corrupt,
// from another vmm version or from another CPU, each with its own error.
package snapshot

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// Magic opens every snapshot file.
const Magic = "VMMSNAP\x00"

// FormatVersion is the layout this package writes and reads. A change
// of any section's meaning, not only of this container, bumps it.
const FormatVersion = 1

// MaxFileSize bounds the state file (guest memory is in the other file):
// far above what hundreds of vCPUs need, small enough to read at once.
const MaxFileSize = 64 << 20

// Limits of the container that keep a hostile file from asking for much.
const (
	maxSections = 256
	maxName     = 64
	maxText     = 256
)

// Sentinel errors, one for each reason a file is refused.
var (
	ErrNotSnapshot   = errors.New("not a vmm snapshot file")
	ErrFormatVersion = errors.New("snapshot format version not supported")
	ErrTruncated     = errors.New("snapshot file is truncated")
	ErrCorrupt       = errors.New("snapshot file is corrupt")
	ErrVMMVersion    = errors.New("snapshot was made by another vmm version")
	ErrCPU           = errors.New("snapshot was made on another CPU")
)

// Header says who made the snapshot and on what.
type Header struct {
	FormatVersion uint32
	VMMVersion    string
	// CPUVendor is CPUID leaf 0's vendor string ("AuthenticAMD"), and
	// CPUSignature leaf 1's EAX: family, model and stepping.
	CPUVendor    string
	CPUSignature uint32
}

// Section is one named part of the state.
type Section struct {
	Name string
	Data []byte
}

// File is a decoded state file.
type File struct {
	Header   Header
	Sections []Section
}

// Section returns the data of the named section.
func (f *File) Section(name string) ([]byte, bool) {
	for _, s := range f.Sections {
		if s.Name == name {
			return s.Data, true
		}
	}
	return nil, false
}

// Layout: magic (8), format version (u32), flags (u32, zero), total
// length (u64, checksum included); the VMM version and CPU vendor (u16
// length, bytes each), the CPU signature (u32); the section count (u32)
// and each section's name (u16 length, bytes) and data (u64 length,
// bytes); last, SHA-256 of everything before it. Little-endian.
const (
	fixedLen = 8 + 4 + 4 + 8
	sumLen   = sha256.Size
)

// Encode returns f as a state file, with FormatVersion in its header.
func Encode(f *File) ([]byte, error) {
	if len(f.Sections) > maxSections {
		return nil, fmt.Errorf("encode snapshot: %d sections, at most %d", len(f.Sections), maxSections)
	}
	le := binary.LittleEndian
	b := make([]byte, 0, fixedLen+1024)
	b = append(b, Magic...)
	b = le.AppendUint32(b, FormatVersion)
	b = le.AppendUint32(b, 0)
	b = le.AppendUint64(b, 0) // total length, filled in below
	for _, s := range []string{f.Header.VMMVersion, f.Header.CPUVendor} {
		if len(s) > maxText {
			return nil, fmt.Errorf("encode snapshot: header text %q longer than %d bytes", s, maxText)
		}
		b = le.AppendUint16(b, uint16(len(s)))
		b = append(b, s...)
	}
	b = le.AppendUint32(b, f.Header.CPUSignature)
	b = le.AppendUint32(b, uint32(len(f.Sections)))
	for _, s := range f.Sections {
		if len(s.Name) == 0 || len(s.Name) > maxName {
			return nil, fmt.Errorf("encode snapshot: section name %q must be 1 to %d bytes", s.Name, maxName)
		}
		b = le.AppendUint16(b, uint16(len(s.Name)))
		b = append(b, s.Name...)
		b = le.AppendUint64(b, uint64(len(s.Data)))
		b = append(b, s.Data...)
	}
	if len(b)+sumLen > MaxFileSize {
		return nil, fmt.Errorf("encode snapshot: %d bytes, more than the %d a state file may have", len(b)+sumLen, MaxFileSize)
	}
	le.PutUint64(b[16:], uint64(len(b)+sumLen))
	sum := sha256.Sum256(b)
	return append(b, sum[:]...), nil
}

// Decode parses a state file, checking the container only: magic,
// version, length and checksum, then the sections' bounds. Compare the
// header with Check before using the sections.
func Decode(b []byte) (*File, error) {
	le := binary.LittleEndian
	if len(b) < fixedLen {
		if len(b) > 0 && bytes.HasPrefix([]byte(Magic), b[:min(len(b), len(Magic))]) {
			return nil, fmt.Errorf("%w: %d bytes, shorter than the %d-byte header", ErrTruncated, len(b), fixedLen)
		}
		return nil, fmt.Errorf("%w: %d bytes", ErrNotSnapshot, len(b))
	}
	if string(b[:8]) != Magic {
		return nil, fmt.Errorf("%w: it starts with %q", ErrNotSnapshot, b[:8])
	}
	if v := le.Uint32(b[8:]); v != FormatVersion {
		return nil, fmt.Errorf("%w: the file has format version %d, this vmm reads version %d", ErrFormatVersion, v, FormatVersion)
	}
	if flags := le.Uint32(b[12:]); flags != 0 {
		return nil, fmt.Errorf("%w: unknown flags %#x", ErrCorrupt, flags)
	}
	total := le.Uint64(b[16:])
	switch {
	case total < fixedLen+sumLen || total > MaxFileSize:
		return nil, fmt.Errorf("%w: recorded length %d", ErrCorrupt, total)
	case uint64(len(b)) < total:
		return nil, fmt.Errorf("%w: %d of its %d bytes present", ErrTruncated, len(b), total)
	case uint64(len(b)) > total:
		return nil, fmt.Errorf("%w: %d bytes after its recorded end", ErrCorrupt, uint64(len(b))-total)
	}
	body := b[:total-sumLen]
	if sum := sha256.Sum256(body); !bytes.Equal(sum[:], b[total-sumLen:]) {
		return nil, fmt.Errorf("%w: SHA-256 checksum mismatch", ErrCorrupt)
	}
	r := reader{b: body, off: fixedLen}
	f := &File{Header: Header{FormatVersion: FormatVersion}}
	f.Header.VMMVersion = string(r.bytes16(maxText))
	f.Header.CPUVendor = string(r.bytes16(maxText))
	f.Header.CPUSignature = r.u32()
	n := r.u32()
	if n > maxSections {
		return nil, fmt.Errorf("%w: %d sections, at most %d", ErrCorrupt, n, maxSections)
	}
	for i := uint32(0); i < n && r.err == nil; i++ {
		name := string(r.bytes16(maxName))
		size := r.u64()
		data := r.take(size)
		if r.err != nil {
			break
		}
		if name == "" {
			return nil, fmt.Errorf("%w: section %d has no name", ErrCorrupt, i)
		}
		if _, dup := f.Section(name); dup {
			return nil, fmt.Errorf("%w: section %q twice", ErrCorrupt, name)
		}
		f.Sections = append(f.Sections, Section{Name: name, Data: data})
	}
	if r.err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCorrupt, r.err)
	}
	if r.off != len(body) {
		return nil, fmt.Errorf("%w: %d bytes after the last section", ErrCorrupt, len(body)-r.off)
	}
	return f, nil
}

// Check refuses a header made by another vmm version or on another CPU
// (vendor, family or model: a guest's CPUID and XSAVE layout are only
// valid there). Stepping differences are allowed.
func Check(got, host Header) error {
	if got.VMMVersion != host.VMMVersion {
		return fmt.Errorf("%w: made by vmm %q, this is vmm %q", ErrVMMVersion, got.VMMVersion, host.VMMVersion)
	}
	if got.CPUVendor != host.CPUVendor {
		return fmt.Errorf("%w: made on a %q CPU, this host has %q", ErrCPU, got.CPUVendor, host.CPUVendor)
	}
	// Leaf 1 EAX: stepping in bits 0-3; model, family and their
	// extensions in bits 4-27 (Intel SDM vol. 2A, CPUID, figure 3-6).
	const familyModel = 0x0fff_fff0
	if got.CPUSignature&familyModel != host.CPUSignature&familyModel {
		return fmt.Errorf("%w: made on CPU family/model signature %#x, this host is %#x",
			ErrCPU, got.CPUSignature, host.CPUSignature)
	}
	return nil
}

// ReadFile reads and decodes a state file. It reads the fixed header
// first, so a file that is not a snapshot (a memory file given by
// mistake, say) is refused without reading it whole.
func ReadFile(path string) (*File, error) {
	fd, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open snapshot: %w", err)
	}
	defer fd.Close()
	head := make([]byte, fixedLen)
	n, err := io.ReadFull(fd, head)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("read snapshot %s: %w", path, err)
	}
	if n < fixedLen || string(head[:8]) != Magic || binary.LittleEndian.Uint32(head[8:]) != FormatVersion {
		_, err := Decode(head[:n]) // says which
		return nil, fmt.Errorf("snapshot %s: %w", path, err)
	}
	total := binary.LittleEndian.Uint64(head[16:])
	if total < fixedLen+sumLen || total > MaxFileSize {
		return nil, fmt.Errorf("snapshot %s: %w: recorded length %d", path, ErrCorrupt, total)
	}
	// One byte past the recorded end, so trailing bytes are seen.
	rest, err := io.ReadAll(io.LimitReader(fd, int64(total)-fixedLen+1))
	if err != nil {
		return nil, fmt.Errorf("read snapshot %s: %w", path, err)
	}
	f, err := Decode(append(head, rest...))
	if err != nil {
		return nil, fmt.Errorf("snapshot %s: %w", path, err)
	}
	return f, nil
}

// WriteFile writes f to path whole or not at all: to a temporary file
// beside it, synced, then renamed over path.
func WriteFile(path string, f *File) error {
	b, err := Encode(f)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("write snapshot: %w", err)
	}
	_, err = tmp.Write(b)
	if err == nil {
		err = tmp.Sync()
	}
	err = errors.Join(err, tmp.Close())
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		return errors.Join(fmt.Errorf("write snapshot %s: %w", path, err), os.Remove(tmp.Name()))
	}
	return nil
}

// reader takes bounded fields from a byte slice; the first failure
// sticks in err and every later read returns zeros.
type reader struct {
	b   []byte
	off int
	err error
}

func (r *reader) take(n uint64) []byte {
	if r.err != nil {
		return nil
	}
	if n > uint64(len(r.b)-r.off) {
		r.err = fmt.Errorf("field of %d bytes at offset %d runs past the end (%d)", n, r.off, len(r.b))
		return nil
	}
	s := r.b[r.off : r.off+int(n)]
	r.off += int(n)
	return s
}

func (r *reader) u16() uint16 {
	if b := r.take(2); b != nil {
		return binary.LittleEndian.Uint16(b)
	}
	return 0
}

func (r *reader) u32() uint32 {
	if b := r.take(4); b != nil {
		return binary.LittleEndian.Uint32(b)
	}
	return 0
}

func (r *reader) u64() uint64 {
	if b := r.take(8); b != nil {
		return binary.LittleEndian.Uint64(b)
	}
	return 0
}

func (r *reader) bytes16(limit int) []byte {
	n := r.u16()
	if r.err == nil && int(n) > limit {
		r.err = fmt.Errorf("text of %d bytes at offset %d, at most %d", n, r.off, limit)
		return nil
	}
	return r.take(uint64(n))
}
