package main

import (
	"fmt"
	"time"
)

// The cases, in the order they run. Each breaks one rule of virtio 1.2 (or
// probes an edge the spec leaves to the device) and records what the
// device did; hostile_test.go says what it should have done.
var cases = []hostileCase{
	// §2.7.5.3.1: a chain is at most Queue Size long; a loop never ends.
	{"desc_loop", true, func(h *hostile, f *facts) error {
		h.header(0, blkIn, 0)
		table := h.d.ring(offDesc)
		h.d.setDesc(table, 0, h.hdr(0), hdrSize, descNext, 1)
		h.d.setDesc(table, 1, h.data(0), 512, descWrite|descNext, 2)
		h.d.setDesc(table, 2, h.statusAt(0), 1, descWrite|descNext, 1)
		h.d.offer(0, 1)
		h.d.notify()
		f.outcome(h.d.wait(waitDone))
		return nil
	}},
	{"chain_longer_than_queue", true, func(h *hostile, f *facts) error {
		// An indirect table may hold more entries than the queue; the
		// chain it describes still may not be longer (§2.7.5.3.1).
		h.header(0, blkIn, 0)
		segs := []seg{{addr: h.hdr(0), len: hdrSize}}
		for i := range queueSize + 1 {
			segs = append(segs, seg{addr: h.data(0) + 512*uint64(i), len: 512, write: true})
		}
		segs = append(segs, seg{addr: h.statusAt(0), len: 1, write: true})
		n := h.chain(h.d.ring(offTable1), 0, segs)
		h.d.desc(0, h.d.ring(offTable1), uint32(16*n), descIndirect, 0)
		h.d.offer(0, 1)
		h.d.notify()
		f.outcome(h.d.wait(waitDone))
		return nil
	}},
	{"indirect_in_indirect", true, func(h *hostile, f *facts) error {
		// §2.7.5.3.1: the driver MUST NOT set INDIRECT within a table.
		h.header(0, blkIn, 0)
		n := h.chain(h.d.ring(offTable2), 0, h.request(0, h.data(0), 512, true))
		h.d.setDesc(h.d.ring(offTable1), 0, h.d.ring(offTable2), uint32(16*n), descIndirect, 0)
		h.d.desc(0, h.d.ring(offTable1), 16, descIndirect, 0)
		h.d.offer(0, 1)
		h.d.notify()
		f.outcome(h.d.wait(waitDone))
		return nil
	}},
	{"indirect_not_negotiated", false, func(h *hostile, f *facts) error {
		if err := h.d.start(0, queueSize, featVersion1); err != nil {
			return err
		}
		h.header(0, blkIn, 0)
		n := h.chain(h.d.ring(offTable1), 0, h.request(0, h.data(0), 512, true))
		h.d.desc(0, h.d.ring(offTable1), uint32(16*n), descIndirect, 0)
		h.d.offer(0, 1)
		h.d.notify()
		f.outcome(h.d.wait(waitDone))
		return nil
	}},
	// Buffers the device must not touch: past the end of RAM, in the MMIO
	// hole (the device's own registers), straddling the end of RAM, and
	// wrapping past 2^64.
	badBuffer("buffer_outside_ram", func(h *hostile) (uint64, uint32) { return 0x4000_0000, 512 }),
	badBuffer("buffer_in_mmio_hole", func(h *hostile) (uint64, uint32) { return 0xd000_0000, 512 }),
	badBuffer("buffer_straddles_ram_end", func(h *hostile) (uint64, uint32) { return h.ramEnd - 256, 512 }),
	badBuffer("buffer_wraps_past_2_64", func(h *hostile) (uint64, uint32) { return 0xffff_ffff_ffff_fe00, 1024 }),
	{"indirect_table_outside_ram", true, func(h *hostile, f *facts) error {
		h.d.desc(0, 0x4000_0000, 48, descIndirect, 0)
		h.d.offer(0, 1)
		h.d.notify()
		f.outcome(h.d.wait(waitDone))
		return nil
	}},
	// §2.7.13.3: the avail idx runs at most Queue Size ahead of the device.
	{"avail_idx_jump", true, func(h *hostile, f *facts) error {
		h.header(0, blkIn, 0)
		h.chain(h.d.ring(offDesc), 0, h.request(0, h.data(0), 512, true))
		h.d.offer(0, queueSize+1)
		h.d.notify()
		f.outcome(h.d.wait(waitDone))
		return nil
	}},
	{"avail_head_out_of_range", true, func(h *hostile, f *facts) error {
		h.d.offer(queueSize+3, 1)
		h.d.notify()
		f.outcome(h.d.wait(waitDone))
		return nil
	}},
	// §2.7: a split queue's size is a power of two, at most QueueNumMax.
	badQueueSize("queue_size_not_power_of_2", 100),
	badQueueSize("queue_size_above_max", 2*queueSize),
	badQueueSize("queue_size_zero", 0),
	{"queue_ready_before_addresses", false, func(h *hostile, f *facts) error {
		// §4.2.3.2 orders the address writes before QueueReady; a ready
		// queue's registers are read-only (§4.2.2.2), so the device works
		// on the reset values (address 0: guest RAM the device may use).
		ok, err := h.d.negotiate(featVersion1 | featIndirect)
		if err != nil || !ok {
			return fmt.Errorf("negotiate: ok %v, %v", ok, err)
		}
		h.d.r.write32(regQueueSel, 0)
		h.d.r.write32(regQueueNum, queueSize)
		h.d.r.write32(regQueueReady, 1)
		h.d.queueSetup(0, queueSize) // too late: ignored
		h.d.driverOK()
		h.header(0, blkIn, 0)
		o := h.submit(h.request(0, h.data(0), 512, true), waitNothing)
		f.outcome(o)
		return nil
	}},
	// §4.2.2: QueueNotify names a queue; there is only queue 0.
	{"notify_missing_queue", true, func(h *hostile, f *facts) error {
		for _, q := range []uint32{1, 2, 255, 0xffff, 0x1_0000, 0xffff_ffff} {
			h.d.r.write32(regQueueNotify, q)
		}
		time.Sleep(100 * time.Millisecond)
		f.add("needs_reset", bit(h.d.r.read32(regStatus)&statusNeedReset != 0))
		f.add("served_after", bit(h.goodRead()))
		return nil
	}},
	{"config_space_edges", true, configEdges},
	// §2.1.1: FAILED means the driver gave up; a reset starts over.
	{"failed_then_renegotiate", false, func(h *hostile, f *facts) error {
		ok, err := h.d.negotiate(featVersion1)
		if err != nil || !ok {
			return fmt.Errorf("negotiate: ok %v, %v", ok, err)
		}
		h.d.r.write32(regStatus, statusAck|statusDriver|statusFeatureOK|statusFailed)
		f.add("failed_bit", bit(h.d.r.read32(regStatus)&statusFailed != 0))
		f.add("needs_reset", bit(h.d.r.read32(regStatus)&statusNeedReset != 0))
		return nil
	}},
	// §6.1: a non-legacy device refuses a driver without VERSION_1.
	{"features_without_version_1", false, func(h *hostile, f *facts) error {
		ok, err := h.d.negotiate(0)
		if err != nil {
			return err
		}
		f.add("features_ok", bit(ok))
		f.add("needs_reset", bit(h.d.r.read32(regStatus)&statusNeedReset != 0))
		return nil
	}},
	{"reset_during_io", true, resetDuringIO},
	// virtio-blk requests the device answers with a status (§5.2.6).
	badRequest("blk_short_header", func(h *hostile) []seg {
		h.header(0, blkIn, 0)
		return []seg{{addr: h.hdr(0), len: 8}, {addr: h.data(0), len: 512, write: true}, {addr: h.statusAt(0), len: 1, write: true}}
	}),
	badRequest("blk_sector_past_end", func(h *hostile) []seg {
		h.header(0, blkIn, h.capacity)
		return h.request(0, h.data(0), 512, true)
	}),
	badRequest("blk_sector_straddles_end", func(h *hostile) []seg {
		h.header(0, blkIn, h.capacity-1)
		return h.request(0, h.data(0), 1024, true)
	}),
	badRequest("blk_sector_huge", func(h *hostile) []seg {
		h.header(0, blkIn, 1<<63+1)
		return h.request(0, h.data(0), 512, true)
	}),
	badRequest("blk_read_into_readable", func(h *hostile) []seg {
		h.header(0, blkIn, 0)
		return h.request(0, h.data(0), 512, false)
	}),
	badRequest("blk_write_from_writable", func(h *hostile) []seg {
		h.header(0, blkOut, 0)
		return h.request(0, h.data(0), 512, true)
	}),
	badRequest("blk_partial_sector", func(h *hostile) []seg {
		h.header(0, blkIn, 0)
		return h.request(0, h.data(0), 100, true)
	}),
	badRequest("blk_unknown_type", func(h *hostile) []seg {
		h.header(0, 0x1234, 0)
		return h.request(0, h.data(0), 512, true)
	}),
	// No device-writable byte: no status can be returned at all.
	badRequest("blk_no_status", func(h *hostile) []seg {
		h.header(0, blkIn, 0)
		return []seg{{addr: h.hdr(0), len: hdrSize}, {addr: h.data(0), len: 512}}
	}),
}

func badBuffer(name string, where func(h *hostile) (uint64, uint32)) hostileCase {
	return hostileCase{name, true, func(h *hostile, f *facts) error {
		addr, n := where(h)
		h.header(0, blkIn, 0)
		f.outcome(h.submit(h.request(0, addr, n, true), waitDone))
		f.add("status", h.status(0))
		return nil
	}}
}

func badQueueSize(name string, num uint32) hostileCase {
	return hostileCase{name, false, func(h *hostile, f *facts) error {
		ok, err := h.d.negotiate(featVersion1 | featIndirect)
		if err != nil || !ok {
			return fmt.Errorf("negotiate: ok %v, %v", ok, err)
		}
		h.d.r.write32(regQueueSel, 0)
		f.add("num_max", h.d.r.read32(regQueueNumMax))
		h.d.queueSetup(0, num)
		h.d.driverOK()
		time.Sleep(100 * time.Millisecond)
		f.add("needs_reset", bit(h.d.r.read32(regStatus)&statusNeedReset != 0))
		return nil
	}}
}

func badRequest(name string, build func(h *hostile) []seg) hostileCase {
	return hostileCase{name, true, func(h *hostile, f *facts) error {
		f.outcome(h.submit(build(h), waitDone))
		f.add("status", h.status(0))
		return nil
	}}
}

// configEdges reads and writes the configuration space and the control
// registers with every width, aligned or not, inside and past the end;
// then the device must still serve a request without a reset.
func configEdges(h *hostile, f *facts) error {
	r := h.d.r
	capacity := r.read(regConfig, 8)
	halves := r.read(regConfig, 4) | r.read(regConfig+4, 4)<<32
	f.add("capacity", capacity)
	f.add("halves_agree", bit(capacity == halves))
	var bytewise uint64
	for i := range 8 {
		bytewise |= r.read(regConfig+uint64(i), 1) << (8 * i)
	}
	f.add("bytes_agree", bit(bytewise == capacity))
	f.add("unaligned_16", r.read(regConfig+1, 2)) // bytes 1 and 2 of capacity
	// virtio_blk_config is 60 bytes in virtio 1.2 (up to the zoned
	// fields); everything from 0x100 past the window's end reads zero.
	pastEnd := uint64(0)
	for off := uint64(0x100); off+8 <= windowSize-regConfig; off += 8 {
		for _, w := range []int{1, 2, 4, 8} {
			pastEnd |= r.read(regConfig+off, w)
		}
		pastEnd |= r.read(regConfig+off+3, 4)
	}
	f.add("past_end_zero", bit(pastEnd == 0))
	// Writes: past the end, across the end of the window, and into the
	// read-only capacity.
	for off := uint64(0x40); off+8 <= windowSize-regConfig; off += 0x38 {
		r.write(regConfig+off, 8, ^uint64(0))
		r.write(regConfig+off+1, 2, 0xffff)
	}
	r.write(windowSize-1, 1, 0xff)
	r.write(windowSize-4, 4, 0xffff_ffff)
	r.write(regConfig, 8, 1)
	f.add("capacity_unchanged", bit(r.read(regConfig, 8) == capacity))
	// Control registers at the wrong width or alignment (§4.2.2.2 allows
	// only aligned 32-bit accesses): reads give nothing away, writes do
	// nothing.
	narrow := r.read(regMagic, 1) | r.read(regMagic, 2) | r.read(regMagic+1, 4) | r.read(regMagic, 8)
	f.add("narrow_reads", fmt.Sprintf("%#x", narrow))
	before := r.read32(regStatus)
	r.write(regStatus, 1, 0)
	r.write(regStatus, 2, 0)
	r.write(regStatus, 8, 0)
	r.write(regStatus+2, 4, 0)
	r.write(regQueueNotify, 2, 0)
	r.write(regQueueReady, 1, 0)
	f.add("status_unchanged", bit(r.read32(regStatus) == before))
	f.add("needs_reset", bit(r.read32(regStatus)&statusNeedReset != 0))
	f.add("served_after", bit(h.goodRead()))
	return nil
}

// resetDuringIO offers many large reads, resets the device at once, and
// checks that nothing is written into the old rings or buffers once the
// reset has completed (§2.4: after a reset the device uses no buffers).
func resetDuringIO(h *hostile, f *facts) error {
	const n = maxRequests
	table := h.d.ring(offDesc)
	for k := range n {
		h.header(k, blkIn, uint64(k%16)*128)
		head := h.chain(table, 3*k, h.request(k, h.data(k), dataSlot, true)) - 3
		avail := h.d.ring(offAvail)
		h.d.mem.put16(avail+4+2*uint64(k), uint16(head))
	}
	h.d.availIdx = n
	h.d.mem.put16(h.d.ring(offAvail)+2, n)
	h.d.notify()
	if err := h.d.reset(); err != nil {
		return err
	}
	done := h.d.mem.get16(h.d.ring(offUsed) + 2)
	f.add("completed_before_reset", done)
	// Mark what the device could still write, then look again.
	used := h.d.mem.at(h.d.ring(offUsed))[:4+8*n]
	for i := range used {
		used[i] = 0x5a
	}
	for k := range n {
		h.d.mem.at(h.statusAt(k))[0] = statusUnset
		h.d.mem.at(h.data(k))[0] = 0x5a
	}
	time.Sleep(500 * time.Millisecond)
	touched := 0
	for _, b := range used {
		if b != 0x5a {
			touched++
		}
	}
	for k := range n {
		if h.status(k) != statusUnset || h.d.mem.at(h.data(k))[0] != 0x5a {
			touched++
		}
	}
	f.add("written_after_reset", touched)
	f.add("status_after_reset", h.d.r.read32(regStatus))
	return nil
}
