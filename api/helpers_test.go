package api

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

func writeFile(path string, size int) error { return os.WriteFile(path, make([]byte, size), 0o644) }

// codeELF writes a 64-bit ELF kernel whose one segment, code, loads and
// starts at 16 MiB: a tiny guest that runs on any /dev/kvm, even this
// host's emulated one.
func codeELF(t *testing.T, code []byte) string {
	t.Helper()
	const (
		ehSize, phSize = 64, 56
		dataOff        = 0x1000
		paddr          = 0x1000000
	)
	b := make([]byte, dataOff+len(code))
	le := binary.LittleEndian
	copy(b, "\x7fELF")
	b[4], b[5], b[6] = 2, 1, 1 // 64-bit, little-endian, version 1
	le.PutUint16(b[16:], 2)    // ET_EXEC
	le.PutUint16(b[18:], 62)   // EM_X86_64
	le.PutUint32(b[20:], 1)
	le.PutUint64(b[24:], paddr) // entry
	le.PutUint64(b[32:], ehSize)
	le.PutUint16(b[52:], ehSize)
	le.PutUint16(b[54:], phSize)
	le.PutUint16(b[56:], 1)
	ph := b[ehSize:]
	le.PutUint32(ph, 1)     // PT_LOAD
	le.PutUint32(ph[4:], 5) // R+X
	le.PutUint64(ph[8:], dataOff)
	le.PutUint64(ph[16:], paddr)
	le.PutUint64(ph[24:], paddr)
	le.PutUint64(ph[32:], uint64(len(code)))
	le.PutUint64(ph[40:], uint64(len(code)))
	le.PutUint64(ph[48:], 0x1000)
	copy(b[dataOff:], code)
	p := filepath.Join(t.TempDir(), "guest.elf")
	require.NoError(t, os.WriteFile(p, b, 0o644))
	return p
}

// haltELF halts forever (cli; hlt; jmp hlt).
func haltELF(t *testing.T) string { return codeELF(t, []byte{0xfa, 0xf4, 0xeb, 0xfd}) }

// powerOffELF writes S5 with SLP_EN to the ACPI sleep control port 0x600
// (mov dx, 0x600; mov al, 5<<2|0x20; out dx, al; hlt): the guest powers
// off at once.
func powerOffELF(t *testing.T) string {
	return codeELF(t, []byte{0x66, 0xba, 0x00, 0x06, 0xb0, 0x34, 0xee, 0xf4})
}
