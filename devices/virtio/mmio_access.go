package virtio

import (
	"encoding/binary"
)

// Guest accesses to the register window (virtio 1.2 §4.2.2).

// Read answers a guest read at offset in the window.
func (m *MMIO) Read(offset uint64, data []byte) {
	clear(data)
	if m.Closed() {
		return
	}
	if offset >= RegConfig {
		m.ReadConfig(offset-RegConfig, data)
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
		return uint32(m.Type())
	case RegVendorID:
		return VendorID
	case RegDeviceFeatures:
		return m.DeviceFeatures()
	case RegQueueNumMax:
		return m.QueueNumMax()
	case RegQueueReady:
		if m.QueueReady() {
			return 1
		}
	case RegInterruptStatus:
		return m.interruptStatus.Load()
	case RegStatus:
		return m.Status()
	case RegSHMLenLow, RegSHMLenHigh, RegSHMBaseLow, RegSHMBaseHigh:
		// §4.2.2: a region that does not exist has length and base -1.
		return ^uint32(0)
	case RegConfigGeneration:
		return m.ConfigGeneration()
	}
	return 0
}

// Write handles a guest write at offset in the window.
func (m *MMIO) Write(offset uint64, data []byte) {
	if m.Closed() {
		return
	}
	if offset >= RegConfig {
		m.WriteConfig(offset-RegConfig, data)
		return
	}
	if len(data) != 4 || offset%4 != 0 {
		return
	}
	v := binary.LittleEndian.Uint32(data)
	switch offset {
	case RegDeviceFeaturesSel:
		m.SetDeviceFeatureSel(v)
	case RegDriverFeaturesSel:
		m.SetDriverFeatureSel(v)
	case RegDriverFeatures:
		m.SetDriverFeatures(v)
	case RegQueueSel:
		m.SetQueueSel(v)
	case RegQueueNum:
		m.SetQueueNum(v)
	case RegQueueDescLow, RegQueueDescHigh:
		m.SetQueueAddrHalf(AreaDesc, offset == RegQueueDescHigh, v)
	case RegQueueDriverLow, RegQueueDriverHigh:
		m.SetQueueAddrHalf(AreaDriver, offset == RegQueueDriverHigh, v)
	case RegQueueDeviceLow, RegQueueDeviceHigh:
		m.SetQueueAddrHalf(AreaDevice, offset == RegQueueDeviceHigh, v)
	case RegQueueReady:
		m.SetQueueReady(v)
	case RegQueueNotify:
		// §4.2.2: without VIRTIO_F_NOTIFICATION_DATA the value is the
		// queue index. This is the path KVM_IOEVENTFD would otherwise take.
		m.Notify(v)
	case RegInterruptACK:
		m.interruptStatus.And(^v)
	case RegStatus:
		m.SetStatus(v)
	}
}
