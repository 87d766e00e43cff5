package api

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vmm-dev/vmm/internal/testguest"
)

func writeFile(path string, size int) error { return os.WriteFile(path, make([]byte, size), 0o644) }

// codeELF writes a 64-bit ELF kernel whose one segment, code, loads and
// starts at 16 MiB: a tiny guest that runs on any /dev/kvm, even this
// host's emulated one.
func codeELF(t *testing.T, code []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "guest.elf")
	require.NoError(t, os.WriteFile(p, testguest.ELF(code), 0o644))
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
