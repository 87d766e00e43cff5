package kvm

import (
	"sync/atomic"
	"unsafe"
)

// storeImmediateExit sets or clears kvm_run.immediate_exit (byte 1 of the
// mapping) while another thread may be entering KVM_RUN.
//
// Why unsafe: sync/atomic has no 8-bit operations, so the byte is updated
// by a compare-and-swap on the aligned 32-bit word at offset 0 that holds
// it (request_interrupt_window, immediate_exit and two padding bytes; the
// kernel only reads them). The mapping is page aligned and lives until
// the last user of the vCPU's handle releases it.
func storeImmediateExit(run []byte, on bool) {
	word := (*uint32)(unsafe.Pointer(&run[0]))
	for {
		old := atomic.LoadUint32(word)
		val := old &^ immediateExitMask
		if on {
			val |= immediateExitBit
		}
		if atomic.CompareAndSwapUint32(word, old, val) {
			return
		}
	}
}

// loadImmediateExit reads kvm_run.immediate_exit atomically (see above).
func loadImmediateExit(run []byte) bool {
	return atomic.LoadUint32((*uint32)(unsafe.Pointer(&run[0])))&immediateExitMask != 0
}

// The immediate_exit byte within the little-endian word at offset 0.
const (
	immediateExitMask = 0xff << (8 * runImmediateExit)
	immediateExitBit  = 0x01 << (8 * runImmediateExit)
)
