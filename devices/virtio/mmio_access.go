package virtio

import (
	"encoding/binary"
	"fmt"

	"github.com/vmm-dev/vmm/memory"
)

// Guest accesses to the register window (virtio 1.2 §4.2.2).

// Read answers a guest read at offset in the window.
func (m *MMIO) Read(offset uint64, data []byte) {
	clear(data)
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return
	}
	if offset >= RegConfig {
		m.dev.ReadConfig(offset-RegConfig, data)
		return
	}
	// §4.2.2.2: control registers are accessed 32 bits wide and aligned;
	// anything else reads as zero.
	if len(data) != 4 || offset%4 != 0 {
		return
	}
	binary.LittleEndian.PutUint32(data, m.readRegister(offset))
}

func (m *MMIO) readRegister(offset uint64) uint32 {
	switch offset {
	case RegMagicValue:
		return MagicValue
	case RegVersion:
		return MMIOVersion
	case RegDeviceID:
		return uint32(m.dev.Type())
	case RegVendorID:
		return VendorID
	case RegDeviceFeatures:
		if m.deviceFeatSel < 2 {
			return uint32(m.offered >> (32 * m.deviceFeatSel))
		}
	case RegQueueNumMax:
		if m.queueSel < uint32(len(m.maxSizes)) {
			return uint32(m.maxSizes[m.queueSel])
		}
	case RegQueueReady:
		if q := m.selectedQueue(); q != nil && q.ready {
			return 1
		}
	case RegInterruptStatus:
		return m.interruptStatus.Load()
	case RegStatus:
		s := m.status
		if m.needsReset.Load() {
			s |= StatusNeedsReset
		}
		return s
	case RegSHMLenLow, RegSHMLenHigh, RegSHMBaseLow, RegSHMBaseHigh:
		// §4.2.2: a region that does not exist has length and base -1.
		return ^uint32(0)
	case RegConfigGeneration:
		return m.configGeneration.Load()
	}
	return 0
}

// Write handles a guest write at offset in the window.
func (m *MMIO) Write(offset uint64, data []byte) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return
	}
	if offset >= RegConfig {
		m.dev.WriteConfig(offset-RegConfig, data)
		return
	}
	if len(data) != 4 || offset%4 != 0 {
		return
	}
	v := binary.LittleEndian.Uint32(data)
	switch offset {
	case RegDeviceFeaturesSel:
		m.deviceFeatSel = v
	case RegDriverFeaturesSel:
		m.driverFeatSel = v
	case RegDriverFeatures:
		m.writeDriverFeatures(v)
	case RegQueueSel:
		m.queueSel = v
	case RegQueueNum:
		if q := m.configurableQueue(); q != nil {
			q.num = v
		}
	case RegQueueDescLow, RegQueueDescHigh:
		if q := m.configurableQueue(); q != nil {
			setHalf(&q.desc, offset == RegQueueDescHigh, v)
		}
	case RegQueueDriverLow, RegQueueDriverHigh:
		if q := m.configurableQueue(); q != nil {
			setHalf(&q.driver, offset == RegQueueDriverHigh, v)
		}
	case RegQueueDeviceLow, RegQueueDeviceHigh:
		if q := m.configurableQueue(); q != nil {
			setHalf(&q.device, offset == RegQueueDeviceHigh, v)
		}
	case RegQueueReady:
		m.writeQueueReady(v)
	case RegQueueNotify:
		m.notify(v)
	case RegInterruptACK:
		m.interruptStatus.And(^v)
	case RegStatus:
		m.writeStatus(v)
	}
}

func setHalf(reg *uint64, high bool, v uint32) {
	if high {
		*reg = *reg&0xffff_ffff | uint64(v)<<32
	} else {
		*reg = *reg&^0xffff_ffff | uint64(v)
	}
}

func (m *MMIO) selectedQueue() *queueRegs {
	if m.queueSel >= uint32(len(m.queues)) {
		return nil
	}
	return &m.queues[m.queueSel]
}

// configurableQueue returns the selected queue if the driver may still
// program it: §4.2.2.2 forbids touching a ready queue's registers, and
// queues are fixed once DRIVER_OK is set.
func (m *MMIO) configurableQueue() *queueRegs {
	q := m.selectedQueue()
	if q == nil || q.ready || m.status&StatusDriverOK != 0 {
		return nil
	}
	return q
}

func (m *MMIO) writeDriverFeatures(v uint32) {
	// §2.2.1: features are fixed once FEATURES_OK is set.
	if m.driverFeatSel >= 2 || m.status&StatusFeaturesOK != 0 {
		return
	}
	shift := 32 * m.driverFeatSel
	m.driverFeatures = m.driverFeatures&^(0xffff_ffff<<shift) | uint64(v)<<shift
}

func (m *MMIO) writeQueueReady(v uint32) {
	q := m.selectedQueue()
	if q == nil {
		return
	}
	if v == 0 {
		// Without VIRTIO_F_RING_RESET a live queue cannot be stopped on
		// its own; before DRIVER_OK the driver may change its mind.
		if m.status&StatusDriverOK == 0 {
			q.ready, q.queue = false, nil
		}
		return
	}
	if m.configurableQueue() == nil {
		return
	}
	// §3.1.1: queues are set up after FEATURES_OK, and their layout
	// depends on the negotiated features.
	if m.status&StatusFeaturesOK == 0 {
		m.fail(fmt.Errorf("queue %d enabled before FEATURES_OK", m.queueSel))
		return
	}
	if q.num > MaxQueueSize {
		m.fail(fmt.Errorf("queue %d: %w: %d", m.queueSel, ErrQueueSize, q.num))
		return
	}
	cfg := QueueConfig{
		Size:      uint16(q.num),
		DescTable: memory.GuestAddr(q.desc),
		AvailRing: memory.GuestAddr(q.driver),
		UsedRing:  memory.GuestAddr(q.device),
	}
	vq, err := NewQueue(m.mem, cfg, m.maxSizes[m.queueSel], m.driverFeatures)
	if err != nil {
		m.fail(fmt.Errorf("queue %d: %w", m.queueSel, err))
		return
	}
	q.ready, q.queue = true, vq
}

func (m *MMIO) notify(v uint32) {
	// §4.2.2: without VIRTIO_F_NOTIFICATION_DATA the value is the queue
	// index. This is the path KVM_IOEVENTFD would otherwise take.
	if v >= uint32(len(m.kicks)) {
		return
	}
	if err := m.kicks[v].Signal(); err != nil {
		m.fail(err)
	}
}
