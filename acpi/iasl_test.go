package acpi

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// These tests hand the tables to ACPICA's own tools (Debian's
// acpica-tools): the same code Linux uses to parse them.

func lookTool(t *testing.T, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		t.Skipf("%s not installed (Debian: acpica-tools): %v", name, err)
	}
	return path
}

// dumpTables writes each table to dir/<name>.dat and returns the paths.
func dumpTables(t *testing.T, dir string, tb tables) map[string]string {
	t.Helper()
	paths := map[string]string{}
	for name, table := range map[string][]byte{"dsdt": tb.dsdt, "facp": tb.fadt, "apic": tb.madt, "xsdt": tb.xsdt} {
		p := filepath.Join(dir, name+".dat")
		require.NoError(t, os.WriteFile(p, table, 0o644))
		paths[name] = p
	}
	return paths
}

func run(t *testing.T, dir, tool string, args ...string) string {
	t.Helper()
	cmd := exec.Command(tool, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s %s:\n%s", tool, strings.Join(args, " "), out)
	return string(out)
}

// assertClean fails on any error, warning or remark ACPICA printed.
func assertClean(t *testing.T, what, out string) {
	t.Helper()
	for _, line := range strings.Split(out, "\n") {
		l := strings.ToLower(line)
		if strings.Contains(l, "error") && !strings.Contains(l, "0 errors") ||
			strings.Contains(l, "warning") && !strings.Contains(l, "0 warnings") ||
			strings.Contains(l, "invalid") || strings.Contains(l, "mismatch") {
			t.Errorf("%s: %s", what, line)
		}
	}
}

func TestIASLDisassemble(t *testing.T) {
	iasl := lookTool(t, "iasl")
	dir := t.TempDir()
	cfg := testConfig()
	_, tb := writeTables(t, cfg)
	paths := dumpTables(t, dir, tb)

	for _, name := range []string{"dsdt", "facp", "apic", "xsdt"} {
		out := run(t, dir, iasl, "-d", paths[name])
		assertClean(t, "iasl -d "+name, out)
	}
	read := func(name string) string {
		b, err := os.ReadFile(filepath.Join(dir, name+".dsl"))
		require.NoError(t, err)
		return string(b)
	}

	dsl := read("dsdt")
	for _, want := range []string{
		`Scope (_SB)`, `Device (COM1)`, `EisaId ("PNP0501")`, `Device (VR00)`, `Device (VR01)`,
		`"LNRO0005"`, `Name (_S5, Package (0x04)`,
		`IO (Decode16,`, `0x03F8,`, `Memory32Fixed (ReadWrite,`, `0xD0001000,`,
		`Interrupt (ResourceConsumer, Edge, ActiveHigh, Exclusive, ,, )`,
		`Device (PS2K)`, `EisaId ("PNP0303")`, `0x0060,`, `0x0064,`,
	} {
		assert.Contains(t, dsl, want)
	}

	fadt := read("facp")
	for _, want := range []string{
		"Hardware Reduced (V5) : 1",
		"Reset Register Supported (V2) : 1",
		"8042 Present on ports 60/64 (V2) : 0",
		"FADT Minor Revision : 04",
		"Hypervisor ID : 00005645444D4D56", // "VMMDEV" read as a little-endian integer
	} {
		assert.Contains(t, squeeze(fadt), squeeze(want))
	}

	madt := read("apic")
	assert.Equal(t, cfg.CPUs, strings.Count(madt, "Subtable Type : 00 [Processor Local APIC]"))
	assert.Equal(t, 1, strings.Count(madt, "Subtable Type : 01 [I/O APIC]"))
}

func TestIASLDisassembleX2APIC(t *testing.T) {
	iasl := lookTool(t, "iasl")
	dir := t.TempDir()
	cfg := testConfig()
	cfg.CPUs = 258
	_, tb := writeTables(t, cfg)
	paths := dumpTables(t, dir, tb)
	out := run(t, dir, iasl, "-d", paths["apic"])
	assertClean(t, "iasl -d apic", out)
	b, err := os.ReadFile(filepath.Join(dir, "apic.dsl"))
	require.NoError(t, err)
	madt := squeeze(string(b))
	assert.Equal(t, 255, strings.Count(madt, "Subtable Type : 00 [Processor Local APIC]"))
	assert.Equal(t, 3, strings.Count(madt, "Subtable Type : 09 [Processor Local x2APIC]"))
	assert.Contains(t, madt, "Processor x2Apic ID : 00000101")
}

// TestIASLRoundTrip recompiles the disassembled DSDT with iasl and checks
// that it yields our AML byte for byte: the encoder agrees with ACPICA's
// compiler on every opcode, name, integer width and PkgLength. The one
// allowed difference: iasl leaves End Tag checksums zero ("treated as if
// the checksum succeeded", ACPI 6.4 §6.4.2.9) where we compute them.
func TestIASLRoundTrip(t *testing.T) {
	iasl := lookTool(t, "iasl")
	dir := t.TempDir()
	_, tb := writeTables(t, testConfig())
	paths := dumpTables(t, dir, tb)
	run(t, dir, iasl, "-d", paths["dsdt"])
	out := run(t, dir, iasl, "-p", filepath.Join(dir, "recompiled"), filepath.Join(dir, "dsdt.dsl"))
	assertClean(t, "iasl compile", out)
	aml, err := os.ReadFile(filepath.Join(dir, "recompiled.aml"))
	require.NoError(t, err)
	require.Greater(t, len(aml), headerLen)
	ours, theirs := tb.dsdt[headerLen:], aml[headerLen:]
	require.Len(t, theirs, len(ours), "AML differs from iasl's:\nours: % x\niasl: % x", ours, theirs)
	for i := range ours {
		endTagChecksum := i > 0 && ours[i-1] == 0x79 && theirs[i-1] == 0x79 && theirs[i] == 0
		if ours[i] != theirs[i] && !endTagChecksum {
			t.Fatalf("AML differs from iasl's at byte %d:\nours: % x\niasl: % x", i, ours, theirs)
		}
	}
}

// TestACPIExec loads all tables into ACPICA's interpreter, as Linux does at
// boot, and evaluates the objects the guest relies on.
func TestACPIExec(t *testing.T) {
	acpiexec := lookTool(t, "acpiexec")
	dir := t.TempDir()
	_, tb := writeTables(t, testConfig())
	paths := dumpTables(t, dir, tb)
	out := run(t, dir, acpiexec, "-b", `evaluate \_S5_; evaluate \_SB.VR00._CRS; evaluate \_SB.COM1._HID; evaluate \_SB.VGEN.ADDR; evaluate \_SB.VGEN._CID; execute \_SB.GED0._EVT 3`,
		paths["facp"], paths["apic"], paths["dsdt"])
	assertClean(t, "acpiexec", out)
	for _, want := range []string{
		"1 ACPI AML tables successfully acquired and loaded",
		"[Integer] = 0000000000000005",                    // \_S5_ SLP_TYPa
		"86 09 00 01 00 00 00 D0 00 10 00 00 89 06 00 03", // VR00's _CRS
		"[Integer] = 000000000105D041",                    // EISAID PNP0501
		"[Integer] = 00000000000FFFE0",                    // VGEN's ADDR, low half
		`[String] Length 0E = "VM_GEN_COUNTER"`,           // what Linux's vmgenid matches
		"Received a Device Notify on [VGEN]",              // the GED's _EVT
	} {
		assert.Contains(t, out, want)
	}
}

// squeeze collapses runs of spaces so that field alignment does not matter.
func squeeze(s string) string { return strings.Join(strings.Fields(s), " ") }
