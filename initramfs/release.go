package initramfs

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
)

// bzImage setup header fields (Documentation/arch/x86/boot.rst).
const (
	hdrMagicOff   = 0x202 // "HdrS"
	hdrVersionOff = 0x206 // boot protocol version
	kernelVerOff  = 0x20e // kernel_version: offset of the string, minus 0x200
)

// ErrNoRelease: the image names no kernel release.
var ErrNoRelease = errors.New("kernel release not found in the image")

// KernelRelease reads the release (`uname -r`) of the kernel image at
// path: from a bzImage's kernel_version string (boot protocol 2.00+),
// else from the "Linux version " banner an ELF vmlinux carries.
func KernelRelease(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("kernel release: %w", err)
	}
	defer f.Close()
	var hdr [0x210]byte
	if _, err := io.ReadFull(f, hdr[:]); err == nil && string(hdr[hdrMagicOff:hdrMagicOff+4]) == "HdrS" &&
		binary.LittleEndian.Uint16(hdr[hdrVersionOff:]) >= 0x200 {
		if off := binary.LittleEndian.Uint16(hdr[kernelVerOff:]); off != 0 {
			var s [256]byte
			n, err := f.ReadAt(s[:], int64(off)+0x200)
			if n == 0 {
				return "", fmt.Errorf("kernel release of %s: %w", path, err)
			}
			if r := firstWord(s[:n]); r != "" {
				return r, nil
			}
		}
		return "", fmt.Errorf("%s: %w", path, ErrNoRelease)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("kernel release: %w", err)
	}
	banner := []byte("Linux version ")
	if i := bytes.Index(data, banner); i >= 0 {
		if r := firstWord(data[i+len(banner):]); r != "" {
			return r, nil
		}
	}
	return "", fmt.Errorf("%s: %w", path, ErrNoRelease)
}

// firstWord is the release: printable bytes up to a space or NUL.
func firstWord(b []byte) string {
	for i, c := range b {
		if c <= ' ' || c >= 0x7f {
			return string(b[:i])
		}
	}
	return ""
}
