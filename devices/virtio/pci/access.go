package pci

import (
	"encoding/binary"

	"github.com/vmm-dev/vmm/devices/virtio"
)

// struct virtio_pci_common_cfg (§4.1.4.3).
const (
	cfgDeviceFeatureSel = 0x00
	cfgDeviceFeature    = 0x04
	cfgDriverFeatureSel = 0x08
	cfgDriverFeature    = 0x0c
	cfgMSIXConfig       = 0x10
	cfgNumQueues        = 0x12
	cfgDeviceStatus     = 0x14
	cfgConfigGeneration = 0x15
	cfgQueueSelect      = 0x16
	cfgQueueSize        = 0x18
	cfgQueueMSIXVector  = 0x1a
	cfgQueueEnable      = 0x1c
	cfgQueueNotifyOff   = 0x1e
	cfgQueueDesc        = 0x20
	cfgQueueDriver      = 0x28
	cfgQueueDevice      = 0x30
)

// fieldWidth is each field's size; the 64-bit ones may also be accessed
// as two 32-bit halves (§4.1.3.1).
var fieldWidth = map[uint64]int{
	cfgDeviceFeatureSel: 4, cfgDeviceFeature: 4, cfgDriverFeatureSel: 4, cfgDriverFeature: 4,
	cfgMSIXConfig: 2, cfgNumQueues: 2, cfgDeviceStatus: 1, cfgConfigGeneration: 1,
	cfgQueueSelect: 2, cfgQueueSize: 2, cfgQueueMSIXVector: 2, cfgQueueEnable: 2, cfgQueueNotifyOff: 2,
	cfgQueueDesc: 8, cfgQueueDriver: 8, cfgQueueDevice: 8,
	cfgQueueDesc + 4: 4, cfgQueueDriver + 4: 4, cfgQueueDevice + 4: 4,
}

// commonAccess returns the field an access hits: its exact width, or a
// 32-bit half of a 64-bit field.
func commonAccess(off uint64, n int) bool {
	w, ok := fieldWidth[off]
	if !ok {
		return false
	}
	return n == w || (w == 8 && n == 4)
}

// ReadBAR serves a driver read of BAR 0.
func (t *Transport) ReadBAR(bar int, off uint64, data []byte) {
	clear(data)
	if bar != BAR || t.core.Closed() {
		fillOnes(data)
		return
	}
	n := uint64(len(data))
	switch {
	case off < commonLen:
		if commonAccess(off, len(data)) {
			putLE(data, t.readCommon(off, len(data)))
		}
	case off >= isrOff && off < isrOff+isrLen:
		// §4.1.4.5.1: reading the ISR clears it and de-asserts INTx;
		// the line drops at the guest's EOI, and the resampler sees
		// nothing pending.
		if off == isrOff {
			data[0] = byte(t.isr.Swap(0))
		}
	case off >= deviceOff && off+n <= deviceOff+deviceLen:
		t.core.ReadConfig(off-deviceOff, data)
	case off >= notifyOff && off < notifyOff+notifyMax:
		// The notification area reads as zero.
	case t.msix.Owns(bar, off):
		t.msix.ReadBAR(off, data)
	default:
		fillOnes(data)
	}
}

// WriteBAR serves a driver write of BAR 0.
func (t *Transport) WriteBAR(bar int, off uint64, data []byte) {
	if bar != BAR || t.core.Closed() {
		return
	}
	n := uint64(len(data))
	switch {
	case off < commonLen:
		if commonAccess(off, len(data)) {
			t.writeCommon(off, len(data), getLE(data))
		}
	case off >= deviceOff && off+n <= deviceOff+deviceLen:
		t.core.WriteConfig(off-deviceOff, data)
	case off >= notifyOff && off < notifyOff+notifyMax:
		// The address names the queue (§4.1.4.4); the value is the
		// queue index without VIRTIO_F_NOTIFICATION_DATA. This is the
		// path a missing ioeventfd leaves.
		if (off-notifyOff)%NotifyOffMultiplier == 0 {
			t.core.Notify(uint32((off - notifyOff) / NotifyOffMultiplier))
		}
	case t.msix.Owns(bar, off):
		t.msix.WriteBAR(off, data)
	}
}

func (t *Transport) readCommon(off uint64, n int) uint64 {
	c := t.core
	switch off {
	case cfgDeviceFeatureSel:
		return uint64(c.DeviceFeatureSel())
	case cfgDeviceFeature:
		return uint64(c.DeviceFeatures())
	case cfgDriverFeatureSel:
		return uint64(c.DriverFeatureSel())
	case cfgDriverFeature:
		return uint64(c.DriverFeatures())
	case cfgMSIXConfig:
		return uint64(t.configVector.Load())
	case cfgNumQueues:
		return uint64(c.NumQueues())
	case cfgDeviceStatus:
		return uint64(c.Status() & 0xff)
	case cfgConfigGeneration:
		return uint64(c.ConfigGeneration() & 0xff)
	case cfgQueueSelect:
		return uint64(c.QueueSel() & 0xffff)
	case cfgQueueSize:
		// §4.1.4.3: the maximum size until the driver writes a smaller
		// one; 0 for a queue that does not exist.
		if num := c.QueueNum(); num != 0 {
			return uint64(num)
		}
		return uint64(c.QueueNumMax())
	case cfgQueueMSIXVector:
		if q, ok := t.selectedQueue(); ok {
			return uint64(t.queueVectors[q].Load())
		}
		return NoVector
	case cfgQueueEnable:
		if c.QueueReady() {
			return 1
		}
	case cfgQueueNotifyOff:
		if q, ok := t.selectedQueue(); ok {
			return uint64(q)
		}
	case cfgQueueDesc, cfgQueueDriver, cfgQueueDevice, cfgQueueDesc + 4, cfgQueueDriver + 4, cfgQueueDevice + 4:
		v := c.QueueAddr(area(off))
		if off%8 == 4 {
			return v >> 32
		}
		if n == 4 {
			return v & 0xffff_ffff
		}
		return v
	}
	return 0
}

func area(off uint64) virtio.QueueArea {
	switch off &^ 7 {
	case cfgQueueDriver:
		return virtio.AreaDriver
	case cfgQueueDevice:
		return virtio.AreaDevice
	}
	return virtio.AreaDesc
}

func (t *Transport) selectedQueue() (int, bool) {
	q := int(t.core.QueueSel())
	return q, q < len(t.queueVectors)
}

func (t *Transport) writeCommon(off uint64, n int, v uint64) {
	c := t.core
	switch off {
	case cfgDeviceFeatureSel:
		c.SetDeviceFeatureSel(uint32(v))
	case cfgDriverFeatureSel:
		c.SetDriverFeatureSel(uint32(v))
	case cfgDriverFeature:
		c.SetDriverFeatures(uint32(v))
	case cfgMSIXConfig:
		t.configVector.Store(t.checkVector(v))
	case cfgDeviceStatus:
		c.SetStatus(uint32(v))
	case cfgQueueSelect:
		c.SetQueueSel(uint32(v))
	case cfgQueueSize:
		c.SetQueueNum(uint32(v))
	case cfgQueueMSIXVector:
		if q, ok := t.selectedQueue(); ok {
			t.queueVectors[q].Store(t.checkVector(v))
		}
	case cfgQueueEnable:
		c.SetQueueReady(uint32(v))
	case cfgQueueDesc, cfgQueueDriver, cfgQueueDevice, cfgQueueDesc + 4, cfgQueueDriver + 4, cfgQueueDevice + 4:
		a := area(off)
		if n == 8 {
			c.SetQueueAddrHalf(a, false, uint32(v))
			c.SetQueueAddrHalf(a, true, uint32(v>>32))
			return
		}
		c.SetQueueAddrHalf(a, off%8 == 4, uint32(v))
	}
}

// checkVector maps a vector the table does not have to NO_VECTOR, which
// the driver reads back to learn the mapping failed (§4.1.5.1.2).
func (t *Transport) checkVector(v uint64) uint32 {
	if v >= uint64(t.msix.Vectors()) {
		return NoVector
	}
	return uint32(v)
}

func putLE(data []byte, v uint64) {
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], v)
	copy(data, b[:])
}

func getLE(data []byte) uint64 {
	var b [8]byte
	copy(b[:], data)
	return binary.LittleEndian.Uint64(b[:])
}

func fillOnes(data []byte) {
	for i := range data {
		data[i] = 0xff
	}
}
