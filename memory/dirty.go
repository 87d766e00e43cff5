package memory

import "sync/atomic"

// The VMM's own dirty log. KVM's (KVM_GET_DIRTY_LOG) records the pages
// the guest's vCPUs and KVM itself wrote; the devices write guest RAM from
// this process (a disk read lands in a guest buffer, a used ring moves),
// which KVM never sees. A Diff snapshot needs both: TrackDirty turns this
// log on, the accessors below and the virtio queues (for the buffers and
// rings they hand to devices) mark what they may write, and TakeDirty
// returns the log in KVM's layout and clears it.

// dirtyLog has one bit per 4 KiB page of each region, in 64-bit words.
type dirtyLog struct {
	regions [][]atomic.Uint64
}

// TrackDirty starts recording the pages the VMM writes (a no-op if it
// already does).
func (m *Memory) TrackDirty() {
	d := &dirtyLog{}
	for _, r := range m.regions {
		pages := (uint64(len(r.Host)) + PageSize - 1) / PageSize
		d.regions = append(d.regions, make([]atomic.Uint64, (pages+63)/64))
	}
	m.dirty.CompareAndSwap(nil, d)
}

// MarkDirty records that [addr, addr+n) may have been written. Parts
// outside guest RAM are ignored: no access there succeeds.
func (m *Memory) MarkDirty(addr GuestAddr, n uint64) {
	d := m.dirty.Load()
	if d == nil || n == 0 {
		return
	}
	end, ok := addr.Add(n)
	if !ok {
		end = ^GuestAddr(0)
	}
	for i, r := range m.regions {
		lo, hi := max(addr, r.Base), min(end, r.End())
		if lo >= hi {
			continue
		}
		first, last := uint64(lo-r.Base)/PageSize, uint64(hi-1-r.Base)/PageSize
		words := d.regions[i]
		for p := first; p <= last; {
			w, bit := p/64, p%64
			span := min(64-bit, last-p+1)
			mask := ^uint64(0) >> (64 - span) << bit
			words[w].Or(mask)
			p += span
		}
	}
}

// TakeDirty returns the pages marked since the last call (or since
// TrackDirty), one bitmap per region as KVM_GET_DIRTY_LOG lays it out,
// and clears them; nil when the log is off.
func (m *Memory) TakeDirty() [][]uint64 {
	d := m.dirty.Load()
	if d == nil {
		return nil
	}
	out := make([][]uint64, len(d.regions))
	for i, words := range d.regions {
		out[i] = make([]uint64, len(words))
		for j := range words {
			out[i][j] = words[j].Swap(0)
		}
	}
	return out
}
