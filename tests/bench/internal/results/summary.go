package results

import (
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"text/tabwriter"
)

// Stat summarizes one metric of one VMM.
type Stat struct {
	N      int     `json:"n"`
	Median float64 `json:"median"`
	Min    float64 `json:"min"`
	Max    float64 `json:"max"`
}

// Row is one metric of one guest kernel in one place, for both VMMs.
type Row struct {
	Where  string `json:"where"`
	Kernel string `json:"kernel"`
	Metric string `json:"metric"`
	Title  string `json:"title"`
	Unit   string `json:"unit"`
	VMM    *Stat  `json:"vmm,omitempty"`
	QEMU   *Stat  `json:"qemu,omitempty"`
	// VMMPCI is vmm over --transport pci.
	VMMPCI *Stat `json:"vmm_pci,omitempty"`
	// Ratio is vmm's median over QEMU's; 0 when either is missing.
	Ratio float64 `json:"ratio,omitempty"`
	// PCIRatio is vmm-pci's median over vmm's (MMIO); 0 when either is
	// missing.
	PCIRatio     float64 `json:"pci_ratio,omitempty"`
	HigherBetter bool    `json:"higher_better"`
}

// Summarize groups the samples without errors by place, kernel and metric.
// Rows come in the order of places and kernels as first seen, then of
// Metrics; metrics no sample has are left out.
func Summarize(samples []*Sample) []Row {
	type key struct{ where, kernel string }
	var order []key
	values := map[key]map[string]map[string][]float64{} // -> metric -> vmm -> values
	for _, s := range samples {
		if s.Error != "" {
			continue
		}
		k := key{s.Where, s.Kernel}
		if values[k] == nil {
			values[k] = map[string]map[string][]float64{}
			order = append(order, k)
		}
		for name, v := range s.Metrics {
			if math.IsNaN(v) || math.IsInf(v, 0) {
				continue
			}
			if values[k][name] == nil {
				values[k][name] = map[string][]float64{}
			}
			values[k][name][s.VMM] = append(values[k][name][s.VMM], v)
		}
	}
	var rows []Row
	for _, k := range order {
		for _, m := range Metrics {
			byVMM := values[k][m.Name]
			if byVMM == nil {
				continue
			}
			row := Row{Where: k.where, Kernel: k.kernel, Metric: m.Name, Title: m.Title, Unit: m.Unit,
				VMM: stat(byVMM[VMM]), QEMU: stat(byVMM[QEMU]), VMMPCI: stat(byVMM[VMMPCI]), HigherBetter: m.HigherBetter}
			if row.VMM != nil && row.QEMU != nil && row.QEMU.Median != 0 {
				row.Ratio = row.VMM.Median / row.QEMU.Median
			}
			if row.VMM != nil && row.VMMPCI != nil && row.VMM.Median != 0 {
				row.PCIRatio = row.VMMPCI.Median / row.VMM.Median
			}
			rows = append(rows, row)
			if m.Name == StartupSelf {
				if d, ok := derivedGuestBoot(k.where, k.kernel, values[k]); ok {
					rows = append(rows, d)
				}
			}
		}
	}
	return rows
}

// derivedGuestBoot is the boot without the VMM's start-up: the median
// console-line time minus the median self-reported start-up, per VMM (not
// strace's: its stop per ioctl slows QEMU's many ioctls much more).
func derivedGuestBoot(where, kernel string, m map[string]map[string][]float64) (Row, bool) {
	row := Row{Where: where, Kernel: kernel, Metric: BootAfterStartup,
		Title: "boot: first KVM_RUN -> init line (median boot - median own start-up)", Unit: "ms"}
	for _, v := range []string{VMM, QEMU, VMMPCI} {
		boot, start := stat(m[BootConsole][v]), stat(m[StartupSelf][v])
		if boot == nil || start == nil {
			continue
		}
		d := &Stat{N: 0, Median: boot.Median - start.Median}
		switch v {
		case VMM:
			row.VMM = d
		case QEMU:
			row.QEMU = d
		default:
			row.VMMPCI = d
		}
	}
	if row.VMM == nil && row.QEMU == nil && row.VMMPCI == nil {
		return Row{}, false
	}
	if row.VMM != nil && row.QEMU != nil && row.QEMU.Median != 0 {
		row.Ratio = row.VMM.Median / row.QEMU.Median
	}
	if row.VMM != nil && row.VMMPCI != nil && row.VMM.Median != 0 {
		row.PCIRatio = row.VMMPCI.Median / row.VMM.Median
	}
	return row, true
}

func stat(vs []float64) *Stat {
	if len(vs) == 0 {
		return nil
	}
	s := slices.Clone(vs)
	slices.Sort(s)
	median := s[len(s)/2]
	if len(s)%2 == 0 {
		median = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return &Stat{N: len(s), Median: median, Min: s[0], Max: s[len(s)-1]}
}

// WriteTable prints the rows as an aligned text table: median [min-max]
// (n) per VMM and the vmm/QEMU ratio of medians; with PCI boots in the
// samples, also vmm over PCI and its ratio to vmm over MMIO.
func WriteTable(w io.Writer, rows []Row) error {
	pci := false
	for _, r := range rows {
		pci = pci || r.VMMPCI != nil
	}
	tw := tabwriter.NewWriter(w, 2, 8, 2, ' ', 0)
	head := "where\tkernel\tmetric\tunit\tvmm median [min-max] (n)\tQEMU median [min-max] (n)\tvmm/QEMU"
	if pci {
		head += "\tvmm PCI median [min-max] (n)\tPCI/MMIO"
	}
	fmt.Fprintln(tw, head)
	for _, r := range rows {
		line := fmt.Sprintf("%s\t%s\t%s\t%s\t%s\t%s\t%s", r.Where, r.Kernel, r.Title, r.Unit, formatStat(r.VMM), formatStat(r.QEMU), ratioText(r.Ratio, r.HigherBetter))
		if pci {
			line += fmt.Sprintf("\t%s\t%s", formatStat(r.VMMPCI), ratioText(r.PCIRatio, r.HigherBetter))
		}
		fmt.Fprintln(tw, line)
	}
	return tw.Flush()
}

func ratioText(ratio float64, higherBetter bool) string {
	if ratio == 0 {
		return "-"
	}
	better := "lower is better"
	if higherBetter {
		better = "higher is better"
	}
	return fmt.Sprintf("%.2f (%s)", ratio, better)
}

func formatStat(s *Stat) string {
	if s == nil {
		return "n/a"
	}
	if s.N == 0 { // derived from other rows' medians
		return num(s.Median)
	}
	return fmt.Sprintf("%s [%s-%s] (%d)", num(s.Median), num(s.Min), num(s.Max), s.N)
}

// num prints 3 significant digits or so, without exponents.
func num(v float64) string {
	a := math.Abs(v)
	switch {
	case a >= 100:
		return fmt.Sprintf("%.0f", v)
	case a >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return strings.TrimSuffix(fmt.Sprintf("%.2f", v), ".00")
	}
}
