package main

import (
	"fmt"
	"time"
)

// virtio-net (virtio 1.2 §5.1): queue 0 receives, queue 1 transmits. The
// driver negotiates VERSION_1 only, so the header is 12 bytes and every
// frame uses one chain (no VIRTIO_NET_F_MRG_RXBUF).
const (
	netHdrSize = 12
	// maxTXChain is the largest transmit chain a device must take: a
	// 12-byte header and a 65550-byte frame (§5.1.6.3.1's 65562 bytes).
	maxTXChain = 65562

	// The NIC's part of the region, after the block device's.
	offNetRX      = 0x800000 // RX rings
	offNetTX      = 0x804000 // TX rings
	offNetRXBufs  = 0x810000
	offNetTXBufs  = 0x900000 // 128 KiB
	rxSlot        = 64       // a receive buffer and a guard behind it
	rxSmallBuffer = 32       // room for the header and 20 bytes of frame
	rxChains      = 8
	guardByte     = 0xa5
)

// nic is the attacked network device: two queues on one window.
type nic struct {
	rx, tx *driver
}

func newNIC(r regs, mem *physMap) *nic {
	return &nic{
		rx: &driver{r: r, mem: mem, ringArea: offNetRX},
		tx: &driver{r: r, mem: mem, ringArea: offNetTX},
	}
}

func (n *nic) start() error {
	ok, err := n.rx.negotiate(featVersion1)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("FEATURES_OK refused")
	}
	n.rx.queueSetup(0, queueSize)
	n.tx.queueSetup(1, queueSize)
	n.rx.driverOK()
	n.tx.availIdx, n.tx.usedIdx = 0, 0
	if s := n.rx.r.read32(regStatus); s&statusDriverOK == 0 || s&statusNeedReset != 0 {
		return fmt.Errorf("status %#x after DRIVER_OK", s)
	}
	return nil
}

// transmit sends a header and frame of n bytes (an Ethernet broadcast
// from a locally administered address) split into 64 KiB pieces.
func (n *nic) transmit(size int) outcome {
	buf := n.tx.ring(offNetTXBufs)
	b := n.tx.mem.at(buf)[:netHdrSize+size]
	clear(b[:netHdrSize])
	frame := b[netHdrSize:]
	for i := range frame {
		frame[i] = byte(i)
	}
	copy(frame, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0, 0, 0, 0, 0x99, 0x88, 0xb5})
	var segs []seg
	for off := 0; off < len(b); off += dataSlot {
		segs = append(segs, seg{addr: buf + uint64(off), len: uint32(min(dataSlot, len(b)-off))})
	}
	// A chain for the tx driver, built in its own table.
	table := n.tx.qring(offDesc)
	for i, s := range segs {
		var flags uint16
		if i < len(segs)-1 {
			flags = descNext
		}
		n.tx.setDesc(table, i, s.addr, s.len, flags, uint16(i+1))
	}
	n.tx.offer(0, 1)
	n.tx.notify()
	return n.tx.wait(waitDone)
}

// recover resets the NIC, sets it up again and sends one frame.
func (n *nic) recover() bool {
	if err := n.start(); err != nil {
		fmt.Printf("hostile: NIC recovery: %v\n", err)
		return false
	}
	o := n.transmit(60)
	return o.completed && !o.needsReset
}

var netCases = []hostileCase{
	// §5.1.6.2: a frame larger than the largest the device takes is
	// dropped (transmit has no status); the chain still comes back.
	{"net_tx_oversized", false, func(h *hostile, f *facts) error {
		if err := h.nic.start(); err != nil {
			return err
		}
		f.outcome(h.nic.transmit(maxTXChain + 4096))
		f.add("sent_after", bit(func() bool { o := h.nic.transmit(60); return o.completed && !o.needsReset }()))
		return nil
	}},
	// Receive buffers smaller than the frames level 1 broadcasts: the
	// device may drop or cut a frame, but never writes past a buffer.
	{"net_rx_small_buffers", false, func(h *hostile, f *facts) error {
		if err := h.nic.start(); err != nil {
			return err
		}
		rx := h.nic.rx
		base := rx.ring(offNetRXBufs)
		slots := rx.mem.at(base)[:rxChains*rxSlot]
		for i := range slots {
			slots[i] = guardByte
		}
		for i := range rxChains {
			rx.desc(i, base+uint64(i*rxSlot), rxSmallBuffer, descWrite, 0)
			rx.offer(uint16(i), 1)
		}
		rx.notify()
		frames, longest := 0, uint32(0)
		reset := false
		for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline) && frames < 3; {
			o := rx.wait(time.Second)
			reset = reset || o.needsReset
			if o.needsReset && !o.completed {
				break
			}
			if o.completed {
				frames++
				longest = max(longest, o.length)
			}
		}
		guards := 0
		for i := range rxChains {
			for _, b := range slots[i*rxSlot+rxSmallBuffer : (i+1)*rxSlot] {
				if b != guardByte {
					guards++
				}
			}
		}
		f.add("needs_reset", bit(reset))
		f.add("rx_frames", frames)
		f.add("within_buffer", bit(longest <= rxSmallBuffer))
		f.add("guard_bytes_written", guards)
		return nil
	}},
}
