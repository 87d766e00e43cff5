// Package testguest makes tiny guest kernels for tests: a few bytes of
// 64-bit code wrapped as an ELF vmlinux, which vmm boots through its
// 64-bit entry on any /dev/kvm, even one that emulates guest kernel code.
package testguest

import "encoding/binary"

// LoadAddr is where the code loads and starts (16 MiB).
const LoadAddr = 0x1000000

// ELF returns a 64-bit ELF executable whose one PT_LOAD segment is code,
// loaded and entered at LoadAddr.
func ELF(code []byte) []byte {
	const (
		ehSize, phSize = 64, 56
		dataOff        = 0x1000
	)
	b := make([]byte, dataOff+len(code))
	le := binary.LittleEndian
	copy(b, "\x7fELF")
	b[4], b[5], b[6] = 2, 1, 1 // 64-bit, little-endian, version 1
	le.PutUint16(b[16:], 2)    // ET_EXEC
	le.PutUint16(b[18:], 62)   // EM_X86_64
	le.PutUint32(b[20:], 1)
	le.PutUint64(b[24:], LoadAddr) // entry
	le.PutUint64(b[32:], ehSize)
	le.PutUint16(b[52:], ehSize)
	le.PutUint16(b[54:], phSize)
	le.PutUint16(b[56:], 1)
	ph := b[ehSize:]
	le.PutUint32(ph, 1)     // PT_LOAD
	le.PutUint32(ph[4:], 5) // R+X
	le.PutUint64(ph[8:], dataOff)
	le.PutUint64(ph[16:], LoadAddr)
	le.PutUint64(ph[24:], LoadAddr)
	le.PutUint64(ph[32:], uint64(len(code)))
	le.PutUint64(ph[40:], uint64(len(code)))
	le.PutUint64(ph[48:], 0x1000)
	copy(b[dataOff:], code)
	return b
}
