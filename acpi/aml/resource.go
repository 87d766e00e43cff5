package aml

import "fmt"

// Resource is one resource data descriptor (ACPI 6.4 §6.4).
type Resource interface {
	appendResource(b []byte) ([]byte, error)
}

// ResourceTemplate is a buffer of resource descriptors closed by an End
// Tag, the value of a _CRS object (ACPI 6.4 §6.4.1, §19.6.117).
type ResourceTemplate []Resource

func (rt ResourceTemplate) AppendAML(b []byte) ([]byte, error) {
	var data []byte
	var err error
	for _, r := range rt {
		if r == nil {
			return nil, fmt.Errorf("%w: nil resource descriptor", ErrValue)
		}
		if data, err = r.appendResource(data); err != nil {
			return nil, err
		}
	}
	// End Tag (ACPI 6.4 §6.4.2.9): its checksum byte makes all bytes of
	// the template, the tag included, sum to zero.
	data = append(data, endTag)
	var sum byte
	for _, c := range data {
		sum += c
	}
	data = append(data, -sum)
	return Buffer(data).AppendAML(b)
}

// Descriptor tags: small items are (name << 3 | length), large items have
// bit 7 set and a 16-bit length after the tag (ACPI 6.4 §6.4.2, §6.4.3).
const (
	ioPortTag        = 0x47 // small item 0x08, length 7
	endTag           = 0x79 // small item 0x0f, length 1
	memory32FixedTag = 0x86 // large item 0x06
	extendedIRQTag   = 0x89 // large item 0x09
)

// IOPort is an I/O port descriptor (ASL IO(), ACPI 6.4 §6.4.2.5).
type IOPort struct {
	Decode16  bool // the device decodes all 16 address bits, not only 10
	Min, Max  uint16
	Alignment uint8
	Length    uint8
}

func (p IOPort) appendResource(b []byte) ([]byte, error) {
	if p.Min > p.Max {
		return nil, fmt.Errorf("%w: IO port range %#x-%#x", ErrValue, p.Min, p.Max)
	}
	var info byte
	if p.Decode16 {
		info = 1
	}
	return append(b, ioPortTag, info,
		byte(p.Min), byte(p.Min>>8), byte(p.Max), byte(p.Max>>8),
		p.Alignment, p.Length), nil
}

// Memory32Fixed is a fixed 32-bit memory range descriptor
// (ASL Memory32Fixed(), ACPI 6.4 §6.4.3.4).
type Memory32Fixed struct {
	Writable bool
	Base     uint32
	Length   uint32
}

func (m Memory32Fixed) appendResource(b []byte) ([]byte, error) {
	if m.Length > 0 && uint64(m.Base)+uint64(m.Length) > 1<<32 {
		return nil, fmt.Errorf("%w: memory range %#x+%#x passes 4 GiB", ErrValue, m.Base, m.Length)
	}
	var info byte
	if m.Writable {
		info = 1
	}
	b = append(b, memory32FixedTag, 9, 0, info)
	b = appendUint32(b, m.Base)
	return appendUint32(b, m.Length), nil
}

// Interrupt is an Extended Interrupt descriptor (ASL Interrupt(),
// ACPI 6.4 §6.4.3.6). The zero value of each flag is the common case for
// a device's own line: consumer, edge-triggered, active-high, exclusive.
type Interrupt struct {
	Producer       bool
	LevelTriggered bool
	ActiveLow      bool
	Shared         bool
	WakeCapable    bool
	GSIs           []uint32
}

func (irq Interrupt) appendResource(b []byte) ([]byte, error) {
	if len(irq.GSIs) == 0 || len(irq.GSIs) > 0xff {
		return nil, fmt.Errorf("%w: interrupt descriptor with %d interrupts (1-255)", ErrValue, len(irq.GSIs))
	}
	var flags byte
	if !irq.Producer {
		flags |= 1 << 0
	}
	if !irq.LevelTriggered {
		flags |= 1 << 1
	}
	if irq.ActiveLow {
		flags |= 1 << 2
	}
	if irq.Shared {
		flags |= 1 << 3
	}
	if irq.WakeCapable {
		flags |= 1 << 4
	}
	length := 2 + 4*len(irq.GSIs) // flags, table length, the table
	b = append(b, extendedIRQTag, byte(length), byte(length>>8), flags, byte(len(irq.GSIs)))
	for _, g := range irq.GSIs {
		b = appendUint32(b, g)
	}
	return b, nil
}

func appendUint32(b []byte, v uint32) []byte {
	return append(b, byte(v), byte(v>>8), byte(v>>16), byte(v>>24))
}

// Address space descriptor tags (ACPI 6.4 §6.4.3.5).
const (
	dwordAddressTag = 0x87 // large item 0x07
	wordAddressTag  = 0x88 // large item 0x08
	qwordAddressTag = 0x8a // large item 0x0a
)

// AddressSpaceType is an address space descriptor's Resource Type.
type AddressSpaceType uint8

const (
	AddressMemory AddressSpaceType = 0
	AddressIO     AddressSpaceType = 1
	AddressBus    AddressSpaceType = 2
)

// AddressSpace is a Word, DWord or QWord Address Space Descriptor (ASL
// WordBusNumber/WordIO, DWordMemory, QWordMemory; ACPI 6.4 §6.4.3.5.1-3),
// as a root bridge's _CRS uses them: a window the bridge produces, with
// fixed minimum and maximum and positive decoding. Width is 16, 32 or 64.
type AddressSpace struct {
	Width    int
	Type     AddressSpaceType
	Consumer bool // the device uses the range instead of passing it on
	// TypeFlags are the type-specific flags: for memory bit 0 is
	// read-write and bits 1-2 cacheability; for I/O bits 0-1 the ISA
	// range (3: the entire range).
	TypeFlags uint8
	Min, Max  uint64
}

func (a AddressSpace) appendResource(b []byte) ([]byte, error) {
	if a.Min > a.Max {
		return nil, fmt.Errorf("%w: address range %#x-%#x", ErrValue, a.Min, a.Max)
	}
	var tag byte
	switch a.Width {
	case 16:
		tag = wordAddressTag
	case 32:
		tag = dwordAddressTag
	case 64:
		tag = qwordAddressTag
	default:
		return nil, fmt.Errorf("%w: address space descriptor of %d bits", ErrValue, a.Width)
	}
	if a.Width < 64 && a.Max >= 1<<a.Width {
		return nil, fmt.Errorf("%w: address %#x does not fit %d bits", ErrValue, a.Max, a.Width)
	}
	n := a.Width / 8
	// General flags: bit 0 consumer, bit 1 subtractive decode (no),
	// bit 2 minimum fixed, bit 3 maximum fixed.
	flags := byte(0x0c)
	if a.Consumer {
		flags |= 1
	}
	length := 3 + 5*n
	b = append(b, tag, byte(length), byte(length>>8), byte(a.Type), flags, a.TypeFlags)
	for _, v := range []uint64{0, a.Min, a.Max, 0, a.Max - a.Min + 1} { // granularity, min, max, translation, length
		for i := 0; i < n; i++ {
			b = append(b, byte(v>>(8*i)))
		}
	}
	return b, nil
}
