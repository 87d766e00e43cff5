// Package ringmem gives atomic access to the 16-bit fields of split
// virtqueue rings that live in guest memory.
//
// The driver and the device update a ring's idx, flags and event fields
// concurrently (virtio 1.2 §2.7.6, §2.7.8, §2.7.13.3), and the order in
// which they become visible matters: descriptors before avail idx, used
// elements before used idx. Go's sync/atomic has no 16-bit operations, so a
// Span views the ring as whole aligned 32-bit words and reads or updates
// only the half that holds the field. The other half is never changed:
// stores use compare-and-swap and write back what the word held.
package ringmem

import (
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/vmm-dev/vmm/memory"
)

// ErrLayout reports a ring area whose 16-bit fields cannot be accessed
// atomically: an odd address, or the aligned 32-bit words around it not
// lying in one RAM region.
var ErrLayout = errors.New("ring area cannot be accessed atomically")

// maxCASAttempts bounds Store16's retries. Each failure means someone
// else wrote the same word in the few nanoseconds between load and CAS;
// only a guest hammering device-owned ring memory can cause many.
const maxCASAttempts = 1 << 16

// Span is n bytes of guest memory at a 2-aligned guest address, widened to
// the aligned 32-bit host words that cover them.
type Span struct {
	words []uint32
	lead  uint64 // bytes between the first word and the span's start: 0 or 2
	size  uint64
}

// NewSpan maps [addr, addr+n) for atomic 16-bit access.
func NewSpan(mem *memory.Memory, addr memory.GuestAddr, n uint64) (Span, error) {
	if addr%2 != 0 || n == 0 {
		return Span{}, fmt.Errorf("%w: %d bytes at %v", ErrLayout, n, addr)
	}
	b, err := mem.Slice(addr, n)
	if err != nil {
		return Span{}, fmt.Errorf("%w: %w", ErrLayout, err)
	}
	lead := hostMisalignment(b)
	if lead%2 != 0 || uint64(addr) < lead {
		return Span{}, fmt.Errorf("%w: %d bytes at %v: host address is odd", ErrLayout, n, addr)
	}
	total := (lead + n + 3) &^ 3
	wide, err := mem.Slice(addr-memory.GuestAddr(lead), total)
	// The widened range must be the same host mapping, not a neighbouring
	// region that happens to cover the guest addresses.
	if err != nil || &wide[lead] != &b[0] {
		return Span{}, fmt.Errorf("%w: %d bytes at %v: aligned words leave the RAM region", ErrLayout, n, addr)
	}
	words, ok := asWords(wide)
	if !ok {
		return Span{}, fmt.Errorf("%w: %d bytes at %v: host words misaligned", ErrLayout, n, addr)
	}
	return Span{words: words, lead: lead, size: n}, nil
}

// Size returns the span's length in bytes.
func (s Span) Size() uint64 { return s.size }

// Load16 atomically reads the little-endian uint16 at byte offset off
// (even, below Size).
func (s Span) Load16(off uint64) uint16 {
	pos := s.lead + off
	w := atomic.LoadUint32(&s.words[pos/4])
	return uint16(w >> (8 * (pos % 4)))
}

// Store16 atomically writes v at byte offset off (even, below Size),
// leaving the other half of its word as it was. It reports false only if
// the word kept changing under it maxCASAttempts times.
func (s Span) Store16(off uint64, v uint16) bool {
	pos := s.lead + off
	p := &s.words[pos/4]
	shift := 8 * (pos % 4)
	mask := uint32(0xffff) << shift
	for range maxCASAttempts {
		old := atomic.LoadUint32(p)
		if atomic.CompareAndSwapUint32(p, old, old&^mask|uint32(v)<<shift) {
			return true
		}
	}
	return false
}
