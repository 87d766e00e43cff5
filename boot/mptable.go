package boot

import (
	"encoding/binary"
	"fmt"

	"github.com/vmm-dev/vmm/memory"
)

// Intel MultiProcessor Specification 1.4, chapter 4: a floating pointer
// structure and the base configuration table, placed in the EBDA where
// Linux looks for them when it has no ACPI MADT.
const (
	mpFloatingSize = 16 // §4.1
	mpHeaderSize   = 44 // §4.2
	mpProcSize     = 20 // §4.3.1
	mpEntrySize    = 8  // bus, I/O APIC, I/O and local interrupt entries
	mpSpecRev      = 4  // version 1.4
	mpISAIRQs      = 16

	mpEntryProcessor = 0
	mpEntryBus       = 1
	mpEntryIOAPIC    = 2
	mpEntryIOIntr    = 3
	mpEntryLocalIntr = 4

	mpIntrINT    = 0 // vectored interrupt from the I/O APIC
	mpIntrNMI    = 1
	mpIntrExtINT = 3 // 8259-compatible interrupt

	// I/O interrupt flags (§4.3.4 Table 4-10): active high, edge
	// triggered, as ISA interrupts are.
	mpIntrFlagsActiveHighEdge = 0x1 | 0x1<<2

	mpCPUEnabled = 1 << 0
	mpCPUBSP     = 1 << 1
	// A family 6 CPU with an on-chip FPU and APIC (CPUID.1 EDX bits 0
	// and 9); Linux only prints these.
	mpCPUSignature = 0x600
	mpCPUFeatures  = 1<<0 | 1<<9

	lapicVersion  = 0x14 // integrated local APIC
	ioapicVersion = 0x11
	lapicAddr     = 0xfee00000
	ioapicAddr    = 0xfec00000
	lapicAllCPUs  = 0xff // destination: every local APIC

	// bdaEBDASegment is the BIOS data area word holding the EBDA's real
	// mode segment; the MP spec (§4) searches the EBDA it names first.
	bdaEBDASegment memory.GuestAddr = 0x40e

	mpFixedSize = mpFloatingSize + mpHeaderSize + mpEntrySize*(2+mpISAIRQs+2)
)

// MaxMPTableCPUs is the most CPUs whose MP table fits in the EBDA.
const MaxMPTableCPUs = (EBDASize - mpFixedSize) / mpProcSize

// WriteMPTable writes an MP floating pointer and configuration table into
// the EBDA for cpus processors (APIC IDs 0..cpus-1, 0 the BSP), one ISA
// bus, one I/O APIC (ID cpus) with ISA IRQs 0-15 wired to its pins 0-15,
// and LINT0/LINT1 as ExtINT/NMI on every CPU.
func WriteMPTable(mem *memory.Memory, cpus int) error {
	if cpus < 1 || cpus > MaxMPTableCPUs {
		return fmt.Errorf("write MP table: %w: %d CPUs (1..%d)", ErrTooManyCPUs, cpus, MaxMPTableCPUs)
	}
	ioapicID := uint8(cpus)
	le := binary.LittleEndian
	var t [EBDASize]byte

	table := t[mpFloatingSize:]
	entries := table[mpHeaderSize:]
	n := 0 // bytes of entries written
	put := func(b []byte) { n += copy(entries[n:], b) }

	for id := range cpus {
		var p [mpProcSize]byte
		p[0] = mpEntryProcessor
		p[1] = uint8(id)
		p[2] = lapicVersion
		p[3] = mpCPUEnabled
		if id == 0 {
			p[3] |= mpCPUBSP
		}
		le.PutUint32(p[4:], mpCPUSignature)
		le.PutUint32(p[8:], mpCPUFeatures)
		put(p[:])
	}
	const isaBus = 0
	put([]byte{mpEntryBus, isaBus, 'I', 'S', 'A', ' ', ' ', ' '})
	ioapic := [mpEntrySize]byte{mpEntryIOAPIC, ioapicID, ioapicVersion, 1}
	le.PutUint32(ioapic[4:], ioapicAddr)
	put(ioapic[:])
	for irq := range uint8(mpISAIRQs) {
		put(mpInterrupt(mpEntryIOIntr, mpIntrINT, mpIntrFlagsActiveHighEdge, isaBus, irq, ioapicID, irq))
	}
	put(mpInterrupt(mpEntryLocalIntr, mpIntrExtINT, 0, isaBus, 0, lapicAllCPUs, 0))
	put(mpInterrupt(mpEntryLocalIntr, mpIntrNMI, 0, isaBus, 0, lapicAllCPUs, 1))

	// §4.2 Table 4-2: the base table header.
	copy(table[0:], "PCMP")
	le.PutUint16(table[4:], uint16(mpHeaderSize+n))
	table[6] = mpSpecRev
	copy(table[8:16], "VMM     ")
	copy(table[16:28], "MICROVM     ")
	le.PutUint16(table[34:], uint16(cpus+2+mpISAIRQs+2))
	le.PutUint32(table[36:], lapicAddr)
	table[7] = checksum(table[:mpHeaderSize+n])

	// §4.1 Table 4-1: the floating pointer; feature byte 1 = 0 says
	// the configuration table is present, byte 2 = 0 says no IMCR.
	fp := t[:mpFloatingSize]
	copy(fp, "_MP_")
	le.PutUint32(fp[4:], uint32(EBDAAddr+mpFloatingSize))
	fp[8] = 1 // length in 16-byte paragraphs
	fp[9] = mpSpecRev
	fp[10] = checksum(fp)

	if err := mem.WriteAt(t[:], EBDAAddr); err != nil {
		return fmt.Errorf("write MP table: %w", err)
	}
	if err := mem.PutUint16(bdaEBDASegment, uint16(EBDAAddr>>4)); err != nil {
		return fmt.Errorf("write EBDA segment to the BIOS data area: %w", err)
	}
	return nil
}

func mpInterrupt(entry, typ uint8, flags uint16, bus, busIRQ, dst, dstPin uint8) []byte {
	b := []byte{entry, typ, 0, 0, bus, busIRQ, dst, dstPin}
	binary.LittleEndian.PutUint16(b[2:], flags)
	return b
}

// checksum returns the byte that makes b sum to zero (MP spec §4.1, §4.2).
// b's own checksum byte must be zero when it is computed.
func checksum(b []byte) uint8 {
	var sum uint8
	for _, v := range b {
		sum += v
	}
	return -sum
}
