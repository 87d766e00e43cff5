package acpi

import "encoding/binary"

// MADT revision 5 (ACPI 6.4 §5.2.12, Table 5.19).
const (
	madtRevision    = 5
	madtFixedLen    = headerLen + 8 // + Local Interrupt Controller Address, Flags
	madtLAPICAddr   = headerLen
	madtFlags       = headerLen + 4
	localAPICAddr   = 0xfee0_0000
	madtPCATCompat  = 1 << 0
	lapicEnabled    = 1 << 0
	maxXAPICID      = 0xfe // 0xff is the xAPIC broadcast ID
	lapicEntryType  = 0    // Processor Local APIC, §5.2.12.2
	lapicEntryLen   = 8
	ioapicEntryType = 1 // I/O APIC, §5.2.12.3
	ioapicEntryLen  = 12
	x2apicEntryType = 9 // Processor Local x2APIC, §5.2.12.12
	x2apicEntryLen  = 16
)

// PCAT_COMPAT is set because KVM's in-kernel irqchip does provide the dual
// 8259; the flag tells the OS to mask it when it uses the APICs, which
// is what we want. (In hardware-reduced mode Linux ignores the 8259 anyway.)
//
// No Interrupt Source Overrides: KVM's default GSI routing wires GSI n to
// IOAPIC pin n, which is what the OS assumes without overrides; a
// hardware-reduced platform has no SCI to describe; and Linux sets up no
// PIT interrupt (IRQ0) on it. Every device's interrupt is described with
// its trigger and polarity in the DSDT instead.

// madtLen returns the MADT's length for cpus vCPUs.
func madtLen(cpus int) int {
	xapic := min(cpus, maxXAPICID+1)
	return madtFixedLen + lapicEntryLen*xapic + x2apicEntryLen*(cpus-xapic) + ioapicEntryLen
}

// buildMADT announces one enabled local APIC per vCPU, with ACPI
// processor UID equal to the APIC ID, and the IOAPIC at GSI base 0. IDs
// from 255 on need Processor Local x2APIC entries (ACPI 6.4 §5.2.12.12).
func buildMADT(cfg Config) []byte {
	t := newTable("APIC", madtRevision, madtLen(cfg.CPUs))
	binary.LittleEndian.PutUint32(t[madtLAPICAddr:], localAPICAddr)
	binary.LittleEndian.PutUint32(t[madtFlags:], madtPCATCompat)
	e := t[madtFixedLen:]
	for id := 0; id < cfg.CPUs; id++ {
		if id <= maxXAPICID {
			e[0], e[1] = lapicEntryType, lapicEntryLen
			e[2] = byte(id) // ACPI Processor UID
			e[3] = byte(id) // APIC ID
			binary.LittleEndian.PutUint32(e[4:], lapicEnabled)
			e = e[lapicEntryLen:]
			continue
		}
		e[0], e[1] = x2apicEntryType, x2apicEntryLen
		binary.LittleEndian.PutUint32(e[4:], uint32(id)) // x2APIC ID
		binary.LittleEndian.PutUint32(e[8:], lapicEnabled)
		binary.LittleEndian.PutUint32(e[12:], uint32(id)) // ACPI Processor UID
		e = e[x2apicEntryLen:]
	}
	e[0], e[1] = ioapicEntryType, ioapicEntryLen
	e[2] = cfg.IOAPICID
	binary.LittleEndian.PutUint32(e[4:], cfg.IOAPICAddr)
	binary.LittleEndian.PutUint32(e[8:], 0) // GSI base
	return sealTable(t)
}
