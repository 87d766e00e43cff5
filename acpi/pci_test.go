package acpi

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func pciConfig() Config {
	cfg := testConfig()
	cfg.VirtioMMIO = nil
	host := &PCIHost{
		ECAMBase: 0xe000_0000, IOMin: 0x1000, IOMax: 0xffff,
		Mem32Base: 0xc000_0000, Mem32Size: 0x1000_0000,
		Mem64Base: 0x1_0000_0000, Mem64Size: 0x8_0000_0000,
	}
	for slot := uint8(1); slot < 32; slot++ {
		for pin := uint8(0); pin < 4; pin++ {
			host.Routes = append(host.Routes, PCIRoute{Slot: slot, Pin: pin, GSI: 16 + uint32(slot+pin)%8})
		}
	}
	cfg.PCI = host
	return cfg
}

func TestMCFG(t *testing.T) {
	_, tb := writeTables(t, pciConfig())
	require.NotNil(t, tb.mcfg, "XSDT lists the MCFG")
	m := tb.mcfg
	assert.Zero(t, sum(m))
	assert.Len(t, m, 60)
	assert.Equal(t, uint64(0xe000_0000), binary.LittleEndian.Uint64(m[44:]))
	assert.Equal(t, []byte{0, 0, 0, 0}, m[52:56], "segment 0, buses 0-0")

	_, plain := writeTables(t, testConfig())
	assert.Nil(t, plain.mcfg, "no PCI, no MCFG")
}

func TestPCIConfigRejected(t *testing.T) {
	mem := newTestMemory()
	for name, mutate := range map[string]func(*PCIHost){
		"ECAM misaligned":  func(p *PCIHost) { p.ECAMBase = 0xe000_1000 },
		"route to GSI 24":  func(p *PCIHost) { p.Routes[0].GSI = 24 },
		"pin 4":            func(p *PCIHost) { p.Routes[0].Pin = 4 },
		"route to COM1":    func(p *PCIHost) { p.Routes[0].GSI = 4 },
		"empty mem window": func(p *PCIHost) { p.Mem32Size = 0 },
	} {
		cfg := pciConfig()
		mutate(cfg.PCI)
		_, err := Write(mem, testBase, testLimit, cfg)
		assert.ErrorIs(t, err, ErrConfig, name)
	}
}

func TestIASLPCI(t *testing.T) {
	iasl := lookTool(t, "iasl")
	dir := t.TempDir()
	_, tb := writeTables(t, pciConfig())
	paths := dumpTables(t, dir, tb)
	mcfg := filepath.Join(dir, "mcfg.dat")
	require.NoError(t, os.WriteFile(mcfg, tb.mcfg, 0o644))
	for _, p := range []string{paths["dsdt"], mcfg} {
		assertClean(t, "iasl -d "+p, run(t, dir, iasl, "-d", p))
	}
	read := func(name string) string {
		b, err := os.ReadFile(filepath.Join(dir, name+".dsl"))
		require.NoError(t, err)
		return squeeze(string(b))
	}
	dsl := read("dsdt")
	for _, want := range []string{
		`Device (PCI0)`, `EisaId ("PNP0A08")`, `EisaId ("PNP0A03")`, `Name (_SEG, Zero)`, `Name (_BBN, Zero)`,
		`WordBusNumber (ResourceProducer, MinFixed, MaxFixed, PosDecode, 0x0000, // Granularity 0x0000, // Range Minimum 0x0000, // Range Maximum`,
		`WordIO (ResourceProducer, MinFixed, MaxFixed, PosDecode, EntireRange, 0x0000, // Granularity 0x1000, // Range Minimum 0xFFFF, // Range Maximum`,
		`DWordMemory (ResourceProducer, PosDecode, MinFixed, MaxFixed, NonCacheable, ReadWrite, 0x00000000, // Granularity 0xC0000000, // Range Minimum 0xCFFFFFFF, // Range Maximum`,
		`QWordMemory (ResourceProducer, PosDecode, MinFixed, MaxFixed, NonCacheable, ReadWrite, 0x0000000000000000, // Granularity 0x0000000100000000, // Range Minimum 0x00000008FFFFFFFF, // Range Maximum`,
		`Name (_PRT, Package (0x7C)`, `Package (0x04) { 0x001FFFFF, 0x03, Zero, 0x12 }`,
		`Device (ECAM)`, `EisaId ("PNP0C02")`, `Memory32Fixed (ReadWrite, 0xE0000000, // Address Base 0x00100000, // Address Length`,
	} {
		assert.Contains(t, dsl, squeeze(want))
	}
	m := read("mcfg")
	assert.Contains(t, m, "Base Address : 00000000E0000000")
	assert.Contains(t, m, "End Bus Number : 00")

	// Round trip: iasl compiles the disassembly back to our bytes.
	out := run(t, dir, iasl, "-p", filepath.Join(dir, "recompiled"), filepath.Join(dir, "dsdt.dsl"))
	assertClean(t, "iasl compile", out)
	aml, err := os.ReadFile(filepath.Join(dir, "recompiled.aml"))
	require.NoError(t, err)
	ours, theirs := tb.dsdt[headerLen:], aml[headerLen:]
	require.Len(t, theirs, len(ours))
	for i := range ours {
		endTagChecksum := i > 0 && ours[i-1] == 0x79 && theirs[i-1] == 0x79 && theirs[i] == 0
		if ours[i] != theirs[i] && !endTagChecksum {
			t.Fatalf("AML differs from iasl's at byte %d", i)
		}
	}

	acpiexec := lookTool(t, "acpiexec")
	out = run(t, dir, acpiexec, "-b", `evaluate \_SB.PCI0._CRS; evaluate \_SB.PCI0._PRT`, paths["facp"], paths["apic"], paths["dsdt"])
	assertClean(t, "acpiexec", out)
	assert.True(t, strings.Contains(out, "[Package] Contains 124 Elements"), "acpiexec _PRT:\n%s", out)
}
