package main

import (
	"fmt"
	"time"
)

// virtio-mmio registers (virtio 1.2 §4.2.2), written out from the spec
// rather than taken from vmm's packages: this program checks vmm against
// the spec, not against itself.
const (
	regMagic        = 0x000
	regVersion      = 0x004
	regDeviceID     = 0x008
	regDevFeatures  = 0x010
	regDevFeatSel   = 0x014
	regDrvFeatures  = 0x020
	regDrvFeatSel   = 0x024
	regQueueSel     = 0x030
	regQueueNumMax  = 0x034
	regQueueNum     = 0x038
	regQueueReady   = 0x044
	regQueueNotify  = 0x050
	regIntStatus    = 0x060
	regIntACK       = 0x064
	regStatus       = 0x070
	regQueueDescLo  = 0x080
	regQueueDescHi  = 0x084
	regQueueDrvLo   = 0x090
	regQueueDrvHi   = 0x094
	regQueueDevLo   = 0x0a0
	regQueueDevHi   = 0x0a4
	regConfigGen    = 0x0fc
	regConfig       = 0x100
	windowSize      = 0x1000
	magicValue      = 0x74726976
	statusAck       = 1
	statusDriver    = 2
	statusDriverOK  = 4
	statusFeatureOK = 8
	statusNeedReset = 64
	statusFailed    = 128

	featIndirect = 1 << 28
	featVersion1 = 1 << 32

	descNext     = 1
	descWrite    = 2
	descIndirect = 4
)

// Layout of the memmap= region this program owns.
const (
	offDesc     = 0x0000
	offAvail    = 0x1000
	offUsed     = 0x2000
	offTable1   = 0x4000 // indirect tables, 1024 entries each
	offTable2   = 0x8000
	offTable3   = 0xc000
	offHeaders  = 0x10000 // request k: header at +0x100*k, status at +0x80
	offData     = 0x100000
	dataSlot    = 0x10000 // 64 KiB of data per request
	maxRequests = 64
)

// driver is a minimal virtio-mmio driver for one device: it owns the
// device's window and its one queue's rings in the region.
type driver struct {
	r    regs
	mem  *physMap
	size uint16 // queue size
	// next avail idx the driver publishes, and the used idx seen last
	availIdx, usedIdx uint16
	queue             uint32 // the queue in use (0 for block)
	// ringArea is where this queue's rings start in the region: a
	// device with two queues has two drivers on one window.
	ringArea uint64
}

func (d *driver) ring(off uint64) uint64 { return d.mem.base + off }

// qring is an address in this queue's ring area.
func (d *driver) qring(off uint64) uint64 { return d.ring(d.ringArea + off) }

// reset writes 0 to Status and waits for it to read back 0 (§4.2.3.1: the
// driver waits for the reset to complete).
func (d *driver) reset() error {
	d.r.write32(regStatus, 0)
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
		if d.r.read32(regStatus) == 0 {
			d.availIdx, d.usedIdx = 0, 0
			return nil
		}
		time.Sleep(time.Millisecond)
	}
	return fmt.Errorf("status reads %#x 5 s after a reset", d.r.read32(regStatus))
}

// negotiate runs §3.1.1 steps 1-6 and returns whether FEATURES_OK stuck.
func (d *driver) negotiate(want uint64) (bool, error) {
	if err := d.reset(); err != nil {
		return false, err
	}
	if m := d.r.read32(regMagic); m != magicValue {
		return false, fmt.Errorf("magic %#x", m)
	}
	d.r.write32(regStatus, statusAck)
	d.r.write32(regStatus, statusAck|statusDriver)
	d.r.write32(regDevFeatSel, 0)
	offered := uint64(d.r.read32(regDevFeatures))
	d.r.write32(regDevFeatSel, 1)
	offered |= uint64(d.r.read32(regDevFeatures)) << 32
	f := want & offered
	d.r.write32(regDrvFeatSel, 0)
	d.r.write32(regDrvFeatures, uint32(f))
	d.r.write32(regDrvFeatSel, 1)
	d.r.write32(regDrvFeatures, uint32(f>>32))
	d.r.write32(regStatus, statusAck|statusDriver|statusFeatureOK)
	return d.r.read32(regStatus)&statusFeatureOK != 0, nil
}

// queueSetup programs queue q with num entries at the region's rings,
// cleared first; ready enables it.
func (d *driver) queueSetup(q uint32, num uint32) {
	clear(d.mem.at(d.qring(0))[:0x3000])
	d.queue = q
	d.size = uint16(num)
	d.r.write32(regQueueSel, q)
	d.r.write32(regQueueNum, num)
	desc, avail, used := d.qring(offDesc), d.qring(offAvail), d.qring(offUsed)
	d.r.write32(regQueueDescLo, uint32(desc))
	d.r.write32(regQueueDescHi, uint32(desc>>32))
	d.r.write32(regQueueDrvLo, uint32(avail))
	d.r.write32(regQueueDrvHi, uint32(avail>>32))
	d.r.write32(regQueueDevLo, uint32(used))
	d.r.write32(regQueueDevHi, uint32(used>>32))
	d.r.write32(regQueueReady, 1)
}

func (d *driver) driverOK() {
	d.r.write32(regStatus, statusAck|statusDriver|statusFeatureOK|statusDriverOK)
}

// start brings the device up with one queue of num entries.
func (d *driver) start(q, num uint32, features uint64) error {
	ok, err := d.negotiate(features)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("FEATURES_OK refused for %#x", features)
	}
	d.queueSetup(q, num)
	d.driverOK()
	if s := d.r.read32(regStatus); s&statusDriverOK == 0 || s&statusNeedReset != 0 {
		return fmt.Errorf("status %#x after DRIVER_OK", s)
	}
	return nil
}

// setDesc writes descriptor i of the table at phys address table.
func (d *driver) setDesc(table uint64, i int, addr uint64, n uint32, flags, next uint16) {
	p := table + 16*uint64(i)
	d.mem.put64(p, addr)
	d.mem.put32(p+8, n)
	d.mem.put16(p+12, flags)
	d.mem.put16(p+14, next)
}

func (d *driver) desc(i int, addr uint64, n uint32, flags, next uint16) {
	d.setDesc(d.qring(offDesc), i, addr, n, flags, next)
}

// offer puts head into the avail ring and publishes it; idxStep is what
// the avail idx advances by (1 for an honest driver).
func (d *driver) offer(head uint16, idxStep uint16) {
	avail := d.qring(offAvail)
	d.mem.put16(avail+4+2*uint64(d.availIdx%d.size), head)
	d.availIdx += idxStep
	d.mem.put16(avail+2, d.availIdx)
}

func (d *driver) notify() { d.r.write32(regQueueNotify, d.queue) }

// outcome is what one submission led to.
type outcome struct {
	completed  bool
	id, length uint32
	needsReset bool
}

// wait polls until the device returns a chain or reports NEEDS_RESET, at
// most timeout.
func (d *driver) wait(timeout time.Duration) outcome {
	used := d.qring(offUsed)
	for deadline := time.Now().Add(timeout); ; {
		if idx := d.mem.get16(used + 2); idx != d.usedIdx {
			e := used + 4 + 8*uint64(d.usedIdx%d.size)
			d.usedIdx++
			return outcome{completed: true, id: d.mem.get32(e), length: d.mem.get32(e + 4),
				needsReset: d.r.read32(regStatus)&statusNeedReset != 0}
		}
		if d.r.read32(regStatus)&statusNeedReset != 0 {
			return outcome{needsReset: true}
		}
		if time.Now().After(deadline) {
			return outcome{}
		}
		time.Sleep(time.Millisecond)
	}
}
