package virtio

// virtio-mmio version 2 register map (virtio 1.2 §4.2.2). Offsets are
// relative to the device's window; control registers are 32 bits wide.
const (
	RegMagicValue        = 0x000
	RegVersion           = 0x004
	RegDeviceID          = 0x008
	RegVendorID          = 0x00c
	RegDeviceFeatures    = 0x010
	RegDeviceFeaturesSel = 0x014
	RegDriverFeatures    = 0x020
	RegDriverFeaturesSel = 0x024
	RegQueueSel          = 0x030
	RegQueueNumMax       = 0x034
	RegQueueNum          = 0x038
	RegQueueReady        = 0x044
	RegQueueNotify       = 0x050
	RegInterruptStatus   = 0x060
	RegInterruptACK      = 0x064
	RegStatus            = 0x070
	RegQueueDescLow      = 0x080
	RegQueueDescHigh     = 0x084
	RegQueueDriverLow    = 0x090
	RegQueueDriverHigh   = 0x094
	RegQueueDeviceLow    = 0x0a0
	RegQueueDeviceHigh   = 0x0a4
	RegSHMLenLow         = 0x0b0
	RegSHMLenHigh        = 0x0b4
	RegSHMBaseLow        = 0x0b8
	RegSHMBaseHigh       = 0x0bc
	RegConfigGeneration  = 0x0fc
	RegConfig            = 0x100
)

const (
	// MMIOSize is the size of one device's register window.
	MMIOSize = 0x1000
	// MagicValue is "virt" read as a little-endian 32-bit value.
	MagicValue = 0x74726976
	// MMIOVersion is the non-legacy virtio-mmio version.
	MMIOVersion = 2
	// VendorID is this VMM's subsystem vendor ID ("VMM" in ASCII). Linux
	// does not interpret it.
	VendorID = 0x004d4d56
)

// InterruptStatus bits (virtio 1.2 §4.2.2).
const (
	InterruptUsedBuffer   uint32 = 1
	InterruptConfigChange uint32 = 2
)
