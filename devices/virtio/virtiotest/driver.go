package virtiotest

import (
	"encoding/binary"
	"fmt"

	"github.com/vmm-dev/vmm/bus"
	"github.com/vmm-dev/vmm/devices/virtio"
	"github.com/vmm-dev/vmm/memory"
)

// allocStart keeps guest address 0 unused, so a zero address in a ring
// is always a bug.
const allocStart = 0x1000

// Driver is the guest side of one virtio-mmio device.
type Driver struct {
	Dev bus.Device
	Mem *memory.Memory
	IRQ *IRQ

	next, end memory.GuestAddr // bump allocator in the first RAM region
	features  uint64
	queues    map[uint16]*Queue
}

// NewDriver drives dev, whose interrupt line is irq, with guest RAM mem.
// It allocates rings and buffers from mem's first region.
func NewDriver(dev bus.Device, mem *memory.Memory, irq *IRQ) *Driver {
	r := mem.Regions()[0]
	return &Driver{Dev: dev, Mem: mem, IRQ: irq, next: r.Base + allocStart, end: r.End(), queues: map[uint16]*Queue{}}
}

// Read32 reads a control register.
func (d *Driver) Read32(off uint64) uint32 {
	var b [4]byte
	d.Dev.Read(off, b[:])
	return binary.LittleEndian.Uint32(b[:])
}

// Write32 writes a control register.
func (d *Driver) Write32(off uint64, v uint32) {
	var b [4]byte
	binary.LittleEndian.PutUint32(b[:], v)
	d.Dev.Write(off, b[:])
}

// ReadConfig reads n bytes (1, 2, 4 or 8) of device configuration space.
func (d *Driver) ReadConfig(off uint64, n int) []byte {
	b := make([]byte, n)
	d.Dev.Read(virtio.RegConfig+off, b)
	return b
}

// Status reads the device status register.
func (d *Driver) Status() uint32 { return d.Read32(virtio.RegStatus) }

// SetStatus writes the device status register; 0 resets the device.
func (d *Driver) SetStatus(v uint32) { d.Write32(virtio.RegStatus, v) }

// NeedsReset reports whether the device set DEVICE_NEEDS_RESET.
func (d *Driver) NeedsReset() bool { return d.Status()&virtio.StatusNeedsReset != 0 }

// AckInterrupts reads InterruptStatus and acknowledges what it found, as
// an interrupt handler does (virtio 1.2 §4.2.3.4).
func (d *Driver) AckInterrupts() uint32 {
	s := d.Read32(virtio.RegInterruptStatus)
	if s != 0 {
		d.Write32(virtio.RegInterruptACK, s)
	}
	return s
}

// DeviceFeatures reads all 64 offered feature bits.
func (d *Driver) DeviceFeatures() uint64 {
	d.Write32(virtio.RegDeviceFeaturesSel, 0)
	lo := d.Read32(virtio.RegDeviceFeatures)
	d.Write32(virtio.RegDeviceFeaturesSel, 1)
	hi := d.Read32(virtio.RegDeviceFeatures)
	return uint64(hi)<<32 | uint64(lo)
}

// Features returns the features negotiated by Negotiate.
func (d *Driver) Features() uint64 { return d.features }

// Alloc reserves size bytes of zeroed guest memory aligned to align (a
// power of two).
func (d *Driver) Alloc(size, align uint64) (memory.GuestAddr, error) {
	addr := (uint64(d.next) + align - 1) &^ (align - 1)
	if addr+size > uint64(d.end) || addr+size < addr {
		return 0, fmt.Errorf("%w: %d bytes of guest memory", ErrNoSpace, size)
	}
	d.next = memory.GuestAddr(addr + size)
	if err := d.Mem.Zero(memory.GuestAddr(addr), size); err != nil {
		return 0, err
	}
	return memory.GuestAddr(addr), nil
}

// Reset writes 0 to the status register and forgets the queues.
func (d *Driver) Reset() {
	d.SetStatus(0)
	d.features = 0
	d.queues = map[uint16]*Queue{}
}

// Negotiate resets the device and runs the first steps of virtio 1.2
// §3.1.1: ACKNOWLEDGE, DRIVER, feature negotiation (want & offered) and
// FEATURES_OK, which the device must keep set.
func (d *Driver) Negotiate(want uint64) error {
	d.Reset()
	d.SetStatus(virtio.StatusAcknowledge)
	d.SetStatus(virtio.StatusAcknowledge | virtio.StatusDriver)
	return d.NegotiateExactly(want & d.DeviceFeatures())
}

// NegotiateExactly writes features as they are, offered or not, then sets
// FEATURES_OK and checks that the device kept it.
func (d *Driver) NegotiateExactly(features uint64) error {
	d.Write32(virtio.RegDriverFeaturesSel, 0)
	d.Write32(virtio.RegDriverFeatures, uint32(features))
	d.Write32(virtio.RegDriverFeaturesSel, 1)
	d.Write32(virtio.RegDriverFeatures, uint32(features>>32))
	d.SetStatus(d.Status() | virtio.StatusFeaturesOK)
	if d.Status()&virtio.StatusFeaturesOK == 0 {
		return fmt.Errorf("%w: features %#x", ErrRefused, features)
	}
	d.features = features
	return nil
}

// SetupQueue allocates and enables queue index with size entries (0: the
// device maximum).
func (d *Driver) SetupQueue(index, size uint16) (*Queue, error) {
	d.Write32(virtio.RegQueueSel, uint32(index))
	maxSize := d.Read32(virtio.RegQueueNumMax)
	if maxSize == 0 {
		return nil, fmt.Errorf("%w: queue %d does not exist", ErrRefused, index)
	}
	if size == 0 {
		size = uint16(maxSize)
	}
	cfg, err := d.AllocQueue(size)
	if err != nil {
		return nil, err
	}
	return d.SetupQueueAt(index, cfg)
}

// AllocQueue allocates the three ring parts of a queue of size entries.
// Alignment is generous, so no ring shares a 32-bit word with another.
func (d *Driver) AllocQueue(size uint16) (virtio.QueueConfig, error) {
	cfg := virtio.QueueConfig{Size: size}
	var err error
	if cfg.DescTable, err = d.Alloc(virtio.DescTableSize(size), 64); err != nil {
		return cfg, err
	}
	if cfg.AvailRing, err = d.Alloc(virtio.AvailRingSize(size)+2, 64); err != nil {
		return cfg, err
	}
	if cfg.UsedRing, err = d.Alloc(virtio.UsedRingSize(size)+2, 64); err != nil {
		return cfg, err
	}
	return cfg, nil
}

// AttachQueue builds the driver side of a queue laid out as cfg without
// touching any register, for tests that drive a virtio.Queue directly;
// features are taken as negotiated. Kick and WaitUsed need a device.
func (d *Driver) AttachQueue(index uint16, cfg virtio.QueueConfig, features uint64) (*Queue, error) {
	d.features = features
	q, err := newQueue(d, index, cfg)
	if err != nil {
		return nil, err
	}
	d.queues[index] = q
	return q, nil
}

// SetupQueueAt programs queue index with cfg as given, which may be
// invalid, and enables it; it fails if the device leaves it disabled.
func (d *Driver) SetupQueueAt(index uint16, cfg virtio.QueueConfig) (*Queue, error) {
	d.Write32(virtio.RegQueueSel, uint32(index))
	d.Write32(virtio.RegQueueNum, uint32(cfg.Size))
	d.Write32(virtio.RegQueueDescLow, uint32(cfg.DescTable))
	d.Write32(virtio.RegQueueDescHigh, uint32(cfg.DescTable>>32))
	d.Write32(virtio.RegQueueDriverLow, uint32(cfg.AvailRing))
	d.Write32(virtio.RegQueueDriverHigh, uint32(cfg.AvailRing>>32))
	d.Write32(virtio.RegQueueDeviceLow, uint32(cfg.UsedRing))
	d.Write32(virtio.RegQueueDeviceHigh, uint32(cfg.UsedRing>>32))
	d.Write32(virtio.RegQueueReady, 1)
	if d.Read32(virtio.RegQueueReady) != 1 {
		return nil, fmt.Errorf("%w: queue %d with %+v", ErrRefused, index, cfg)
	}
	q, err := newQueue(d, index, cfg)
	if err != nil {
		return nil, err
	}
	d.queues[index] = q
	return q, nil
}

// DriverOK sets DRIVER_OK and checks the device did not ask for a reset.
func (d *Driver) DriverOK() error {
	d.SetStatus(d.Status() | virtio.StatusDriverOK)
	if s := d.Status(); s&virtio.StatusNeedsReset != 0 || s&virtio.StatusDriverOK == 0 {
		return fmt.Errorf("%w: status %#x after DRIVER_OK", ErrRefused, s)
	}
	return nil
}

// Init negotiates want and sets up one queue per entry of sizes (0: the
// device maximum), then sets DRIVER_OK.
func (d *Driver) Init(want uint64, sizes ...uint16) error {
	if err := d.Negotiate(want); err != nil {
		return err
	}
	for i, n := range sizes {
		if _, err := d.SetupQueue(uint16(i), n); err != nil {
			return err
		}
	}
	return d.DriverOK()
}

// Queue returns queue index as set up, or nil.
func (d *Driver) Queue(index uint16) *Queue { return d.queues[index] }
