//go:build 386 || amd64 || arm || arm64 || loong64 || mips64le || mipsle || ppc64le || riscv64 || wasm

// Only little-endian hosts build this file: Span takes a field's half of a
// 32-bit word by shifting, which assumes the word's low bytes come first in
// memory, as in virtio's little-endian rings (virtio 1.2 §1.4).

package ringmem

import "unsafe"

// Why unsafe: sync/atomic works on *uint32, and ring fields live in a
// []byte that aliases guest RAM. These two helpers are the only place the
// byte view becomes a word view. asWords checks alignment and length
// first, so every word lies inside b; b's backing memory (guest RAM) stays
// mapped while any Queue uses it, and it holds no Go pointers, so the
// garbage collector is unaffected by the retyping.

// hostMisalignment returns how far b's first byte is past a 4-byte boundary.
func hostMisalignment(b []byte) uint64 {
	return uint64(uintptr(unsafe.Pointer(unsafe.SliceData(b))) % 4)
}

// asWords reinterprets b as 32-bit words. It reports false unless b starts
// on a 4-byte boundary and its length is a multiple of 4.
func asWords(b []byte) ([]uint32, bool) {
	if len(b) == 0 || len(b)%4 != 0 || hostMisalignment(b) != 0 {
		return nil, false
	}
	return unsafe.Slice((*uint32)(unsafe.Pointer(unsafe.SliceData(b))), len(b)/4), true
}
