package acpi

import "encoding/binary"

// RSDP layout, ACPI 6.4 §5.2.5.3 (Table 5.3), revision 2.
const (
	rsdpLen             = 36
	rsdpRevision        = 2
	rsdpChecksumLen     = 20 // the ACPI 1.0 part the first checksum covers
	rsdpSignature       = 0
	rsdpChecksum        = 8
	rsdpOEMID           = 9
	rsdpRevisionOff     = 15
	rsdpLength          = 20
	rsdpXSDTAddress     = 24
	rsdpExtendedSum     = 32
	xsdtRevision        = 1
	xsdtEntryLen        = 8
	rsdpSignatureString = "RSD PTR "
)

// buildRSDP points at the XSDT only. The RSDT address stays zero: every
// OS that reads a revision 2 RSDP uses the XSDT (Linux does when
// revision > 1 and the XSDT address is set).
func buildRSDP(xsdt uint64) []byte {
	r := make([]byte, rsdpLen)
	copy(r[rsdpSignature:], rsdpSignatureString)
	copy(r[rsdpOEMID:rsdpOEMID+6], oemID)
	r[rsdpRevisionOff] = rsdpRevision
	binary.LittleEndian.PutUint32(r[rsdpLength:], rsdpLen)
	binary.LittleEndian.PutUint64(r[rsdpXSDTAddress:], xsdt)
	r[rsdpChecksum] = -checksum(r[:rsdpChecksumLen])
	r[rsdpExtendedSum] = -checksum(r)
	return r
}

// buildXSDT lists the tables the OS finds by signature (ACPI 6.4 §5.2.8).
// The DSDT is not among them: the FADT points at it.
func buildXSDT(tables ...uint64) []byte {
	t := newTable("XSDT", xsdtRevision, headerLen+xsdtEntryLen*len(tables))
	for i, addr := range tables {
		binary.LittleEndian.PutUint64(t[headerLen+xsdtEntryLen*i:], addr)
	}
	return sealTable(t)
}
