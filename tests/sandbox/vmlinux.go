package sandbox

import (
	"bytes"
	"compress/gzip"
	"context"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
)

// Errors of vmlinux extraction; callers branch on them with errors.Is.
var (
	ErrNotBzImage       = errors.New("sandbox: not a bzImage")
	ErrUnknownPayload   = errors.New("sandbox: unknown bzImage payload compression")
	ErrNoPVHNote        = errors.New("sandbox: ELF has no PVH entry note")
	errPayloadTruncated = errors.New("sandbox: bzImage payload is truncated")
)

// Linux x86 boot protocol (Documentation/arch/x86/boot.rst), offsets in the
// file: setup_sects at 0x1f1, "HdrS" at 0x202, version at 0x206, and since
// version 2.08 payload_offset/payload_length at 0x248/0x24c, the offset
// counted from the start of the protected-mode code.
const (
	setupSectsOffset    = 0x1f1
	headerMagicOffset   = 0x202
	headerVersionOffset = 0x206
	payloadOffsetField  = 0x248
	payloadLengthField  = 0x24c
	minPayloadVersion   = 0x0208
)

// Magic numbers that start a compressed kernel payload.
var (
	lz4LegacyMagic = []byte{0x02, 0x21, 0x4c, 0x18}
	gzipMagic      = []byte{0x1f, 0x8b}
)

// XEN_ELFNOTE_PHYS32_ENTRY (xen/include/public/elfnote.h): the 32-bit
// physical entry point that PVH boot uses.
const pvhNoteType = 18

// payload returns the compressed kernel inside a bzImage.
func payload(bz []byte) ([]byte, error) {
	if len(bz) < payloadLengthField+4 || string(bz[headerMagicOffset:headerMagicOffset+4]) != "HdrS" {
		return nil, ErrNotBzImage
	}
	setupSects := int(bz[setupSectsOffset])
	if setupSects == 0 {
		setupSects = 4 // boot.rst: "if this field is 0, the real value is 4"
	}
	protectedMode := (setupSects + 1) * 512
	if binary.LittleEndian.Uint16(bz[headerVersionOffset:]) >= minPayloadVersion {
		off := uint64(protectedMode) + uint64(binary.LittleEndian.Uint32(bz[payloadOffsetField:]))
		n := uint64(binary.LittleEndian.Uint32(bz[payloadLengthField:]))
		if off+n <= uint64(len(bz)) && n > 0 {
			return bz[off : off+n], nil
		}
	}
	// Older headers: look for a known magic number after the setup code.
	if protectedMode < len(bz) {
		if i := bytes.Index(bz[protectedMode:], lz4LegacyMagic); i >= 0 {
			return bz[protectedMode+i:], nil
		}
	}
	return nil, fmt.Errorf("%w: payload not found", ErrNotBzImage)
}

// ExtractVmlinux decompresses the ELF kernel inside bzImagePath into outPath
// and checks that it has a PVH entry note. LZ4 payloads need the lz4 tool.
func ExtractVmlinux(ctx context.Context, bzImagePath, outPath string) error {
	bz, err := os.ReadFile(bzImagePath)
	if err != nil {
		return fmt.Errorf("extract vmlinux: %w", err)
	}
	data, err := payload(bz)
	if err != nil {
		return fmt.Errorf("extract vmlinux from %s: %w", bzImagePath, err)
	}
	elfData, err := decompress(ctx, data)
	if err != nil {
		return fmt.Errorf("extract vmlinux from %s: %w", bzImagePath, err)
	}
	if _, err := PVHEntry(bytes.NewReader(elfData)); err != nil {
		return fmt.Errorf("extract vmlinux from %s: %w", bzImagePath, err)
	}
	if err := writeFileAtomic(outPath, elfData, 0o644); err != nil {
		return fmt.Errorf("extract vmlinux: write %s: %w", outPath, err)
	}
	return nil
}

func decompress(ctx context.Context, data []byte) ([]byte, error) {
	switch {
	case bytes.HasPrefix(data, lz4LegacyMagic):
		return decompressLZ4Legacy(ctx, data)
	case bytes.HasPrefix(data, gzipMagic):
		zr, err := gzip.NewReader(bytes.NewReader(data))
		if err != nil {
			return nil, fmt.Errorf("gunzip payload: %w", err)
		}
		zr.Multistream(false) // the kernel's size trailer follows the stream
		out, err := io.ReadAll(zr)
		if err != nil {
			return nil, fmt.Errorf("gunzip payload: %w", err)
		}
		return out, nil
	default:
		n := min(len(data), 4)
		return nil, fmt.Errorf("%w: starts with % x", ErrUnknownPayload, data[:n])
	}
}

// decompressLZ4Legacy runs `lz4 -d`. The kernel's build appends the
// uncompressed size as a little-endian uint32 to the payload; lz4 rejects it
// as trailing garbage, so it is cut off and used to check the result.
func decompressLZ4Legacy(ctx context.Context, data []byte) ([]byte, error) {
	if len(data) < len(lz4LegacyMagic)+4 {
		return nil, errPayloadTruncated
	}
	want := binary.LittleEndian.Uint32(data[len(data)-4:])
	var out, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "lz4", "-d", "-c")
	cmd.Stdin = bytes.NewReader(data[:len(data)-4])
	cmd.Stdout = &out
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("lz4 -d: %w: %s", err, bytes.TrimSpace(stderr.Bytes()))
	}
	if uint32(out.Len()) != want {
		return nil, fmt.Errorf("lz4 -d: got %d bytes, the bzImage says %d", out.Len(), want)
	}
	return out.Bytes(), nil
}

// PVHEntry returns the PVH entry point of an ELF kernel: the payload of the
// note named "Xen" with type XEN_ELFNOTE_PHYS32_ENTRY.
func PVHEntry(r io.ReaderAt) (uint64, error) {
	f, err := elf.NewFile(r)
	if err != nil {
		return 0, fmt.Errorf("read ELF: %w", err)
	}
	defer f.Close()
	for _, prog := range f.Progs {
		if prog.Type != elf.PT_NOTE {
			continue
		}
		notes, err := io.ReadAll(prog.Open())
		if err != nil {
			return 0, fmt.Errorf("read ELF note segment: %w", err)
		}
		if entry, ok := findPVHNote(notes, f.ByteOrder); ok {
			return entry, nil
		}
	}
	return 0, ErrNoPVHNote
}

// findPVHNote walks ELF notes: namesz, descsz, type (4 bytes each), then the
// name and the descriptor, each padded to 4 bytes (ELF gABI "Note Section").
func findPVHNote(notes []byte, order binary.ByteOrder) (uint64, bool) {
	align := func(n uint64) uint64 { return (n + 3) &^ 3 }
	for off := uint64(0); off+12 <= uint64(len(notes)); {
		nameSize := uint64(order.Uint32(notes[off:]))
		descSize := uint64(order.Uint32(notes[off+4:]))
		noteType := order.Uint32(notes[off+8:])
		nameStart := off + 12
		descStart := nameStart + align(nameSize)
		next := descStart + align(descSize)
		if next > uint64(len(notes)) || next <= off {
			return 0, false
		}
		name := string(bytes.TrimRight(notes[nameStart:nameStart+nameSize], "\x00"))
		if name == "Xen" && noteType == pvhNoteType {
			switch descSize {
			case 4:
				return uint64(order.Uint32(notes[descStart:])), true
			case 8:
				return order.Uint64(notes[descStart:]), true
			}
		}
		off = next
	}
	return 0, false
}
