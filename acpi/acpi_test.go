package acpi

import (
	"encoding/binary"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vmm-dev/vmm/devices/power"
	"github.com/vmm-dev/vmm/memory"
)

const (
	testBase  memory.GuestAddr = 0xe0000
	testLimit memory.GuestAddr = 0x100000
)

func testConfig() Config {
	return Config{
		CPUs:       2,
		IOAPICAddr: 0xfec0_0000,
		IOAPICID:   2,
		SerialPort: 0x3f8,
		SerialIRQ:  4,
		VirtioMMIO: []VirtioMMIO{
			{Base: 0xd000_0000, Size: 0x1000, GSI: 5},
			{Base: 0xd000_1000, Size: 0x1000, GSI: 6},
		},
		Power:         power.DefaultRegisters,
		PVPanicPort:   0x505,
		KeyboardPorts: [2]uint16{0x60, 0x64},
		KeyboardIRQ:   1,
		VMGenID:       &VMGenID{Addr: 0xf_ffe0, GSI: 3},
	}
}

func newTestMemory() *memory.Memory {
	return memory.FromSlices(memory.Region{Base: 0, Host: make([]byte, 1<<20)})
}

// tables is what a guest finds by walking from the RSDP.
type tables struct {
	rsdp, xsdt, fadt, madt, dsdt, mcfg []byte
	xsdtEntries                        []uint64
}

// readTable reads a whole table at addr, trusting its length field only
// after checking it against the memory that holds it.
func readTable(t *testing.T, mem *memory.Memory, addr uint64) []byte {
	t.Helper()
	length, err := mem.Uint32(memory.GuestAddr(addr) + hdrLength)
	require.NoError(t, err)
	require.GreaterOrEqual(t, length, uint32(headerLen))
	b := make([]byte, length)
	require.NoError(t, mem.ReadAt(b, memory.GuestAddr(addr)))
	return b
}

func walk(t *testing.T, mem *memory.Memory, rsdpAddr memory.GuestAddr) tables {
	t.Helper()
	var tb tables
	tb.rsdp = make([]byte, 36)
	require.NoError(t, mem.ReadAt(tb.rsdp, rsdpAddr))
	tb.xsdt = readTable(t, mem, binary.LittleEndian.Uint64(tb.rsdp[24:]))
	for off := 36; off+8 <= len(tb.xsdt); off += 8 {
		addr := binary.LittleEndian.Uint64(tb.xsdt[off:])
		tb.xsdtEntries = append(tb.xsdtEntries, addr)
		table := readTable(t, mem, addr)
		switch string(table[:4]) {
		case "FACP":
			tb.fadt = table
		case "APIC":
			tb.madt = table
		case "MCFG":
			tb.mcfg = table
		default:
			t.Fatalf("unexpected table %q in XSDT", table[:4])
		}
	}
	require.NotNil(t, tb.fadt, "XSDT lists no FADT")
	require.NotNil(t, tb.madt, "XSDT lists no MADT")
	tb.dsdt = readTable(t, mem, binary.LittleEndian.Uint64(tb.fadt[140:]))
	return tb
}

func writeTables(t *testing.T, cfg Config) (*memory.Memory, tables) {
	t.Helper()
	mem := newTestMemory()
	rsdp, err := Write(mem, testBase, testLimit, cfg)
	require.NoError(t, err)
	require.Equal(t, testBase, rsdp)
	return mem, walk(t, mem, rsdp)
}

func sum(b []byte) byte {
	var s byte
	for _, c := range b {
		s += c
	}
	return s
}

func TestRSDP(t *testing.T) {
	_, tb := writeTables(t, testConfig())
	r := tb.rsdp
	assert.Equal(t, "RSD PTR ", string(r[0:8]))
	assert.Zero(t, sum(r[:20]), "ACPI 1.0 checksum over the first 20 bytes")
	assert.Zero(t, sum(r[:36]), "extended checksum over all 36 bytes")
	assert.Equal(t, "VMMDEV", string(r[9:15]))
	assert.Equal(t, byte(2), r[15], "revision")
	assert.Zero(t, binary.LittleEndian.Uint32(r[16:]), "no RSDT")
	assert.Equal(t, uint32(36), binary.LittleEndian.Uint32(r[20:]), "length")
	assert.Zero(t, r[33]|r[34]|r[35], "reserved")
}

func TestTableHeaders(t *testing.T) {
	_, tb := writeTables(t, testConfig())
	tests := []struct {
		table     []byte
		signature string
		revision  byte
	}{
		{tb.xsdt, "XSDT", 1},
		{tb.fadt, "FACP", 6},
		{tb.madt, "APIC", 5},
		{tb.dsdt, "DSDT", 2},
	}
	for _, tt := range tests {
		h := tt.table
		assert.Equal(t, tt.signature, string(h[0:4]))
		assert.Equal(t, uint32(len(h)), binary.LittleEndian.Uint32(h[4:]), tt.signature)
		assert.Equal(t, tt.revision, h[8], "%s revision", tt.signature)
		assert.Zero(t, sum(h), "%s checksum", tt.signature)
		assert.Equal(t, "VMMDEV", string(h[10:16]), tt.signature)
		assert.Equal(t, "VMM "+tt.signature, string(h[16:24]), tt.signature)
	}
	assert.Len(t, tb.xsdtEntries, 2)
	assert.Len(t, tb.xsdt, 36+8*2)
}

func TestTablesStayInBIOSArea(t *testing.T) {
	_, tb := writeTables(t, testConfig())
	addrs := append([]uint64{binary.LittleEndian.Uint64(tb.rsdp[24:])}, tb.xsdtEntries...)
	addrs = append(addrs, binary.LittleEndian.Uint64(tb.fadt[140:]))
	for _, a := range addrs {
		assert.GreaterOrEqual(t, a, uint64(testBase))
		assert.Less(t, a, uint64(testLimit))
		assert.Zero(t, a%16, "table at %#x is not 16-byte aligned", a)
	}
}

// TestFADT checks the fields Linux reads at the offsets ACPI 6.4 Table 5.9
// gives them, written out here independently of the package's constants.
func TestFADT(t *testing.T) {
	cfg := testConfig()
	cfg.Power = power.Registers{SleepControl: 0x610, SleepStatus: 0x611, Reset: 0x618, ResetValue: 0x0e}
	mem, tb := writeTables(t, cfg)
	f := tb.fadt
	require.Len(t, f, 276)
	le16 := binary.LittleEndian.Uint16
	le32 := binary.LittleEndian.Uint32
	le64 := binary.LittleEndian.Uint64

	assert.Zero(t, le32(f[36:]), "FIRMWARE_CTRL: no FACS on a hardware-reduced platform")
	assert.Zero(t, le32(f[40:]), "DSDT: only X_DSDT is set")
	assert.Zero(t, le16(f[46:]), "SCI_INT")
	for off := 48; off < 109; off++ {
		assert.Zero(t, f[off], "legacy PM field at offset %d", off)
	}
	bootArch := le16(f[109:])
	assert.NotZero(t, bootArch&(1<<0), "LEGACY_DEVICES")
	assert.Zero(t, bootArch&(1<<1), "8042 must be clear: no keyboard controller")
	assert.NotZero(t, bootArch&(1<<2), "VGA Not Present")
	assert.NotZero(t, bootArch&(1<<5), "CMOS RTC Not Present")

	flags := le32(f[112:])
	assert.NotZero(t, flags&(1<<20), "HW_REDUCED_ACPI")
	assert.NotZero(t, flags&(1<<10), "RESET_REG_SUP")
	assert.NotZero(t, flags&(1<<4), "PWR_BUTTON: no fixed power button")
	assert.NotZero(t, flags&(1<<5), "SLP_BUTTON: no fixed sleep button")

	gas := func(off int, port uint16) {
		assert.Equal(t, []byte{1, 8, 0, 1}, f[off:off+4], "GAS at %d: System I/O, 8 bits, offset 0, byte access", off)
		assert.Equal(t, uint64(port), le64(f[off+4:]), "GAS at %d: address", off)
	}
	gas(116, 0x618) // RESET_REG
	assert.Equal(t, byte(0x0e), f[128], "RESET_VALUE")
	assert.Equal(t, byte(4), f[131], "FADT minor version")
	assert.Zero(t, le64(f[132:]), "X_FIRMWARE_CTRL")
	dsdt := le64(f[140:])
	sig := make([]byte, 4)
	require.NoError(t, mem.ReadAt(sig, memory.GuestAddr(dsdt)))
	assert.Equal(t, "DSDT", string(sig), "X_DSDT points at the DSDT")
	for off := 148; off < 244; off++ {
		assert.Zero(t, f[off], "X_PM/X_GPE blocks are absent (offset %d)", off)
	}
	gas(244, 0x610) // SLEEP_CONTROL_REG
	gas(256, 0x611) // SLEEP_STATUS_REG
	assert.Equal(t, "VMMDEV\x00\x00", string(f[268:276]), "Hypervisor Vendor Identity")
}

func TestMADT(t *testing.T) {
	tests := []struct {
		cpus           int
		lapics, x2apic int
	}{
		{1, 1, 0},
		{2, 2, 0},
		{255, 255, 0},
		{256, 255, 1},
		{300, 255, 45},
	}
	for _, tt := range tests {
		cfg := testConfig()
		cfg.CPUs = tt.cpus
		cfg.IOAPICID = 0xfe
		_, tb := writeTables(t, cfg)
		m := tb.madt
		assert.Equal(t, uint32(0xfee0_0000), binary.LittleEndian.Uint32(m[36:]), "local APIC address")
		assert.Equal(t, uint32(1), binary.LittleEndian.Uint32(m[40:]), "PCAT_COMPAT")

		var lapics, x2apics, ioapics int
		nextID := uint32(0)
		for off := 44; off < len(m); {
			require.LessOrEqual(t, off+2, len(m))
			typ, length := m[off], int(m[off+1])
			require.NotZero(t, length)
			require.LessOrEqual(t, off+length, len(m))
			e := m[off : off+length]
			switch typ {
			case 0:
				require.Equal(t, 8, length)
				assert.Equal(t, byte(nextID), e[2], "processor UID")
				assert.Equal(t, byte(nextID), e[3], "APIC ID")
				assert.Equal(t, uint32(1), binary.LittleEndian.Uint32(e[4:]), "enabled")
				nextID++
				lapics++
			case 9:
				require.Equal(t, 16, length)
				assert.Equal(t, nextID, binary.LittleEndian.Uint32(e[4:]), "x2APIC ID")
				assert.Equal(t, uint32(1), binary.LittleEndian.Uint32(e[8:]), "enabled")
				assert.Equal(t, nextID, binary.LittleEndian.Uint32(e[12:]), "processor UID")
				assert.GreaterOrEqual(t, nextID, uint32(255), "x2APIC entries only for IDs an xAPIC entry cannot hold")
				nextID++
				x2apics++
			case 1:
				require.Equal(t, 12, length)
				assert.Equal(t, byte(0xfe), e[2], "IOAPIC ID")
				assert.Equal(t, uint32(0xfec0_0000), binary.LittleEndian.Uint32(e[4:]))
				assert.Zero(t, binary.LittleEndian.Uint32(e[8:]), "GSI base")
				ioapics++
			default:
				t.Errorf("unexpected MADT entry type %d", typ)
			}
			off += length
		}
		assert.Equal(t, tt.lapics, lapics, "%d CPUs", tt.cpus)
		assert.Equal(t, tt.x2apic, x2apics, "%d CPUs", tt.cpus)
		assert.Equal(t, 1, ioapics)
		assert.Equal(t, uint32(tt.cpus), nextID)
	}
}

func TestDSDTContents(t *testing.T) {
	_, tb := writeTables(t, testConfig())
	aml := tb.dsdt[36:]
	for _, want := range []string{"_SB_", "COM1", "VR00", "VR01", "LNRO0005", "PVPN", "QEMU0001", "PS2K", "_S5_", "_CRS", "_HID", "_UID"} {
		assert.Contains(t, string(aml), want)
	}
	assert.NotContains(t, string(aml), "VR02")
	// _S5_ package: NameOp, "_S5_", PackageOp, PkgLength, 4 elements, BytePrefix 5, 0, 0, 0.
	assert.Contains(t, string(aml), "\x08_S5_\x12\x07\x04\x0a\x05\x00\x00\x00")
	assert.Equal(t, 5, power.SleepTypeS5)
}

func TestDSDTWithoutSerial(t *testing.T) {
	cfg := testConfig()
	cfg.SerialPort = 0
	cfg.VirtioMMIO = nil
	cfg.PVPanicPort = 0
	cfg.VMGenID = nil
	_, tb := writeTables(t, cfg)
	assert.NotContains(t, string(tb.dsdt), "COM1")
	assert.NotContains(t, string(tb.dsdt), "QEMU0001")
	assert.NotContains(t, string(tb.dsdt), "LNRO0005")
	assert.NotContains(t, string(tb.dsdt), "VM_GEN_COUNTER")
	assert.NotContains(t, string(tb.dsdt), "ACPI0013")
	assert.Contains(t, string(tb.dsdt), "_S5_")
}

func TestWriteInvalidConfig(t *testing.T) {
	tests := map[string]func(*Config){
		"no CPUs":                func(c *Config) { c.CPUs = 0 },
		"too many CPUs":          func(c *Config) { c.CPUs = MaxCPUs + 1 },
		"IOAPIC address zero":    func(c *Config) { c.IOAPICAddr = 0 },
		"IOAPIC ID is a LAPIC":   func(c *Config) { c.IOAPICID = 1 },
		"serial past port space": func(c *Config) { c.SerialPort = 0xfffc },
		"serial GSI past pins":   func(c *Config) { c.SerialIRQ = 24 },
		"virtio GSI past pins":   func(c *Config) { c.VirtioMMIO[1].GSI = 99 },
		"GSI shared":             func(c *Config) { c.VirtioMMIO[1].GSI = 4 },
		"virtio empty":           func(c *Config) { c.VirtioMMIO[0].Size = 0 },
		"virtio above 4 GiB":     func(c *Config) { c.VirtioMMIO[0].Base = 0xffff_f800 },
		"virtio base wraps":      func(c *Config) { c.VirtioMMIO[0].Base = ^uint64(0) - 0x10 },
		"virtio overlap":         func(c *Config) { c.VirtioMMIO[1].Base = 0xd000_0800 },
		"too many virtio": func(c *Config) {
			c.VirtioMMIO = make([]VirtioMMIO, MaxVirtioMMIO+1)
		},
		"power registers":        func(c *Config) { c.Power.Reset = c.Power.SleepControl },
		"VM generation ID at 0":  func(c *Config) { c.VMGenID.Addr = 0 },
		"VM generation ID odd":   func(c *Config) { c.VMGenID.Addr = 0xf_ffe4 },
		"VM generation ID's GSI": func(c *Config) { c.VMGenID.GSI = 4 },
	}
	for name, mutate := range tests {
		cfg := testConfig()
		mutate(&cfg)
		_, err := Write(newTestMemory(), testBase, testLimit, cfg)
		assert.ErrorIs(t, err, ErrConfig, name)
	}
}

func TestWritePlacement(t *testing.T) {
	for _, base := range []memory.GuestAddr{0xdfff0, 0xe0008, 0xffff0, 0x100000, 0} {
		_, err := Write(newTestMemory(), base, testLimit, testConfig())
		assert.ErrorIs(t, err, ErrPlacement, "base %v", base)
	}
}

func TestWriteNoSpace(t *testing.T) {
	mem := newTestMemory()
	_, err := Write(mem, testBase, testBase+0x100, testConfig())
	require.ErrorIs(t, err, ErrNoSpace)
	_, err = Write(mem, 0xe0000, 0xd0000, testConfig())
	require.ErrorIs(t, err, ErrNoSpace)
	b := make([]byte, 0x200)
	require.NoError(t, mem.ReadAt(b, testBase))
	assert.Equal(t, make([]byte, 0x200), b, "nothing is written when the tables do not fit")

	// MaxCPUs vCPUs take 16 bytes each in the MADT: that fits the BIOS
	// area's 128 KiB, but not half of it.
	cfg := testConfig()
	cfg.CPUs = MaxCPUs
	cfg.IOAPICID = 0
	_, err = Write(mem, testBase, testBase+0x10000, cfg)
	assert.ErrorIs(t, err, ErrNoSpace)
	_, err = Write(mem, testBase, testLimit, cfg)
	assert.NoError(t, err)
}

func TestWriteOutsideRAM(t *testing.T) {
	mem := memory.FromSlices(memory.Region{Base: 0, Host: make([]byte, 0xe0000)})
	_, err := Write(mem, testBase, testLimit, testConfig())
	assert.ErrorIs(t, err, memory.ErrOutOfRange)
}
