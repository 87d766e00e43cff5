package boot

import (
	"errors"
	"fmt"
	"os"

	"github.com/vmm-dev/vmm/memory"
)

// Config says what to boot.
type Config struct {
	KernelPath string
	InitrdPath string // optional
	Cmdline    string
	// RSDP is the ACPI root pointer's address; 0 when the VM has no ACPI
	// tables (the kernel then scans 0xe0000..0xfffff, and finds nothing).
	RSDP memory.GuestAddr
	// MPTableCPUs > 0 writes an MP table for that many CPUs, for kernels
	// booted without ACPI; 0 writes none.
	MPTableCPUs int
}

// Image describes what Load put in guest memory, for logs.
type Image struct {
	Format      Format
	LoadAddr    memory.GuestAddr // lowest kernel address
	End         memory.GuestAddr // first address past what the kernel needs (init_size or bss)
	Entry       memory.GuestAddr
	Protocol    uint16 // boot protocol version of a bzImage (0x020f is 2.15); 0 for ELF
	CmdlineAddr memory.GuestAddr
	InitrdAddr  memory.GuestAddr // 0 without an initrd
	InitrdSize  uint64
}

func (i *Image) String() string {
	s := fmt.Sprintf("%v at %v..%v, entry %v", i.Format, i.LoadAddr, i.End, i.Entry)
	if i.Protocol != 0 {
		s += fmt.Sprintf(", boot protocol %d.%d", i.Protocol>>8, i.Protocol&0xff)
	}
	if i.InitrdSize != 0 {
		s += fmt.Sprintf(", initrd %d bytes at %v", i.InitrdSize, i.InitrdAddr)
	}
	return s
}

// Load loads the kernel (bzImage, or ELF vmlinux with or without a PVH
// note), the initrd and the command line into mem, writes the boot
// structures the kernel's entry protocol needs, and returns the boot
// vCPU's initial state.
func Load(mem *memory.Memory, cfg Config) (*CPUState, *Image, error) {
	f, err := os.Open(cfg.KernelPath)
	if err != nil {
		return nil, nil, fmt.Errorf("load kernel: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, nil, fmt.Errorf("load kernel: %w", err)
	}
	if !st.Mode().IsRegular() {
		return nil, nil, fmt.Errorf("load kernel %s: not a regular file: %w", cfg.KernelPath, ErrNotKernel)
	}
	cpu, img, err := load(mem, cfg, kernelFile{r: f, size: uint64(st.Size())})
	if err != nil {
		return nil, nil, pathError(err, cfg.KernelPath)
	}
	return cpu, img, nil
}

// pathError puts the kernel's path after the operation ("load bzImage
// PATH: ..."), where the parsers leave it out.
func pathError(err error, path string) error {
	var pe *opError
	if errors.As(err, &pe) {
		return fmt.Errorf("%s %s: %w", pe.op, path, pe.err)
	}
	return fmt.Errorf("load kernel %s: %w", path, err)
}

// opError is an error from one stage of load, named for the message.
type opError struct {
	op  string
	err error
}

func (e *opError) Error() string { return e.op + ": " + e.err.Error() }
func (e *opError) Unwrap() error { return e.err }

func load(mem *memory.Memory, cfg Config, kf kernelFile) (*CPUState, *Image, error) {
	lowLimit, err := lowRAMEnd(mem)
	if err != nil {
		return nil, nil, err
	}
	k, err := parseKernel(kf, lowLimit)
	if err != nil {
		return nil, nil, err
	}
	op := "load " + k.format.String()
	fail := func(err error) (*CPUState, *Image, error) { return nil, nil, &opError{op: op, err: err} }

	if err := checkCmdline(cfg.Cmdline, k.cmdlineMax); err != nil {
		return fail(err)
	}
	if cfg.MPTableCPUs < 0 || cfg.MPTableCPUs > MaxMPTableCPUs {
		return fail(fmt.Errorf("MP table for %d CPUs: %w", cfg.MPTableCPUs, ErrTooManyCPUs))
	}
	if err := loadSegments(mem, kf, k.segments); err != nil {
		return fail(err)
	}
	if err := writeCmdline(mem, cfg.Cmdline); err != nil {
		return fail(err)
	}
	info := bootInfo{cmdline: CmdlineAddr, rsdp: cfg.RSDP, e820: E820Map(mem)}
	if cfg.InitrdPath != "" {
		info.initrd, info.initrdSize, err = loadInitrd(mem, cfg.InitrdPath, k.end, min(k.initrdLimit, lowLimit))
		if err != nil {
			return fail(fmt.Errorf("initrd %s: %w", cfg.InitrdPath, err))
		}
	}
	if err := writeGDT(mem); err != nil {
		return fail(err)
	}

	var cpu *CPUState
	switch k.mode {
	case ModeLong64:
		if err := writePageTables(mem); err != nil {
			return fail(err)
		}
		var zp zeroPage
		if k.setupHeader != nil {
			copy(zp[zpSetupHeader:], k.setupHeader)
		} else {
			zp.scratchHeader(uint32(k.cmdlineMax))
		}
		if err := zp.fill(info); err != nil {
			return fail(err)
		}
		if err := zp.write(mem); err != nil {
			return fail(err)
		}
		cpu = long64State(k.entry)
	case ModeProtected32:
		if err := writePVHStartInfo(mem, info); err != nil {
			return fail(err)
		}
		cpu = pvhState(k.entry)
	}

	if cfg.MPTableCPUs > 0 {
		if err := WriteMPTable(mem, cfg.MPTableCPUs); err != nil {
			return fail(err)
		}
	}
	return cpu, &Image{
		Format:      k.format,
		LoadAddr:    k.start,
		End:         k.end,
		Entry:       k.entry,
		Protocol:    k.protocol,
		CmdlineAddr: CmdlineAddr,
		InitrdAddr:  info.initrd,
		InitrdSize:  info.initrdSize,
	}, nil
}

// lowRAMEnd returns the end of the RAM region that starts at 0, capped at
// the MMIO hole: kernel, initrd and boot structures all go there.
func lowRAMEnd(mem *memory.Memory) (memory.GuestAddr, error) {
	if mem == nil {
		return 0, fmt.Errorf("%w: no guest memory", ErrNoLowRAM)
	}
	regions := mem.Regions()
	if len(regions) == 0 || regions[0].Base != 0 || regions[0].End() < HighMemAddr {
		return 0, ErrNoLowRAM
	}
	return min(regions[0].End(), memory.MMIOHoleStart), nil
}
