package main

import "time"

// virtio-blk requests (virtio 1.2 §5.2.6), built by hand.
const (
	blkIn   = 0
	blkOut  = 1
	hdrSize = 16
	// statusUnset is what the status byte holds before the device answers.
	statusUnset = 0xee
)

// seg is one buffer of a chain.
type seg struct {
	addr  uint64
	len   uint32
	write bool
}

func (h *hostile) hdr(k int) uint64      { return h.d.ring(offHeaders + 0x100*uint64(k)) }
func (h *hostile) statusAt(k int) uint64 { return h.hdr(k) + 0x80 }
func (h *hostile) data(k int) uint64     { return h.d.ring(offData + dataSlot*uint64(k)) }

// header writes request k's header and presets its status byte.
func (h *hostile) header(k int, typ uint32, sector uint64) {
	h.d.mem.put32(h.hdr(k), typ)
	h.d.mem.put32(h.hdr(k)+4, 0)
	h.d.mem.put64(h.hdr(k)+8, sector)
	h.d.mem.at(h.statusAt(k))[0] = statusUnset
}

func (h *hostile) status(k int) uint8 { return h.d.mem.at(h.statusAt(k))[0] }

// chain writes segs as a direct chain into descriptors first.. of the
// table at table and returns the index after the last.
func (h *hostile) chain(table uint64, first int, segs []seg) int {
	for i, s := range segs {
		var flags uint16
		if s.write {
			flags |= descWrite
		}
		if i < len(segs)-1 {
			flags |= descNext
		}
		h.d.setDesc(table, first+i, s.addr, s.len, flags, uint16(first+i+1))
	}
	return first + len(segs)
}

// submit offers segs as one direct chain at descriptor 0 and waits.
func (h *hostile) submit(segs []seg, timeout time.Duration) outcome {
	h.chain(h.d.ring(offDesc), 0, segs)
	h.d.offer(0, 1)
	h.d.notify()
	return h.d.wait(timeout)
}

// request is the usual three-part request k: header, data, status.
func (h *hostile) request(k int, dataAddr uint64, n uint32, dataWritable bool) []seg {
	return []seg{
		{addr: h.hdr(k), len: hdrSize},
		{addr: dataAddr, len: n, write: dataWritable},
		{addr: h.statusAt(k), len: 1, write: true},
	}
}

// read reads n bytes from sector into the region at dataOff as request 0.
func (h *hostile) read(sector, dataOff uint64, n uint32) outcome {
	h.header(0, blkIn, sector)
	return h.submit(h.request(0, h.d.ring(dataOff), n, true), waitDone)
}
