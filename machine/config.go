// Package machine assembles a micro-VM from one Config: guest memory, the
// in-kernel interrupt controllers, the platform devices, virtio devices,
// ACPI tables, the loaded kernel and the vCPUs; then runs it and reports
// how it ended.
package machine

import (
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"github.com/vmm-dev/vmm/devices/ratelimit"
	vconsole "github.com/vmm-dev/vmm/devices/virtio/console"
	"github.com/vmm-dev/vmm/memory"
)

// Defaults a user gets without flags.
const (
	DefaultCPUs    = 1
	DefaultMemory  = 512 << 20
	DefaultCmdline = "console=ttyS0 panic=1"
	// MaxDevices bounds the virtio-mmio devices: each takes one GSI from
	// 5 up and the IOAPIC has 24 pins.
	MaxDevices = 19
	// MaxPCIDevices bounds the virtio-pci devices: one per slot of bus
	// 0 after the host bridge. They interrupt through MSI-X, so no pin
	// limits them.
	MaxPCIDevices = 31
)

// Transport is how virtio devices reach the guest.
type Transport string

const (
	// TransportMMIO: virtio-mmio windows described in the DSDT (or on
	// the command line without ACPI).
	TransportMMIO Transport = "mmio"
	// TransportPCI: virtio-pci functions on PCI bus 0, with MSI-X.
	TransportPCI Transport = "pci"
	// DefaultTransport is what a user gets without --transport. It stays
	// virtio-mmio until PCI is measured at least as fast to boot: side by
	// side in one sandbox run (Debian 6.1 cloud kernel, one disk, three
	// boots each), the guest reached init at uptime 2.63 s (median) over
	// PCI against 2.44 s over MMIO, vmm start to init 4.69 s against
	// 5.07 s: within the noise, PCI's enumeration costs the guest ~0.2 s.
	DefaultTransport = TransportMMIO
)

// ErrConfig marks a configuration that can never boot.
var ErrConfig = errors.New("invalid machine configuration")

// RebootAction is what a guest reset does to the VM.
type RebootAction int

const (
	// RebootExit ends the VMM (status 0), as Firecracker does.
	RebootExit RebootAction = iota
	// RebootRestart boots the guest again in a fresh VM.
	RebootRestart
)

// Disk is a virtio-blk device backed by a raw image file.
type Disk struct {
	// ID names the disk across a snapshot (the API's drive_id); "" is
	// fine otherwise.
	ID       string
	Path     string
	ReadOnly bool
	// RateLimit delays the disk's requests; the zero value limits
	// nothing. Machine.SetDiskRateLimit changes it at run time.
	RateLimit ratelimit.Config
}

// NIC is a virtio-net device backed by a host TAP device.
type NIC struct {
	// ID names the interface across a snapshot (the API's iface_id), for
	// a restore's network overrides; "" is fine otherwise.
	ID  string
	TAP string
	MAC net.HardwareAddr // nil: generated
	// RXRateLimit and TXRateLimit delay received and sent frames; the
	// zero value limits nothing. Machine.SetNICRateLimit changes them.
	RXRateLimit, TXRateLimit ratelimit.Config
	// NoMergeableRX withholds VIRTIO_NET_F_MRG_RXBUF (--net ...,mrg-rxbuf=off).
	NoMergeableRX bool
}

// Entropy is a virtio-rng device fed by the host's getrandom.
type Entropy struct {
	// RateLimit delays its requests; the zero value limits nothing.
	RateLimit ratelimit.Config
}

// Vsock is a virtio-vsock device with Firecracker's unix-socket host
// side (see devices/virtio/vsock).
type Vsock struct {
	GuestCID uint64
	UDSPath  string
}

// Balloon is a virtio memory balloon (Firecracker's balloon object).
type Balloon struct {
	// AmountMiB is the initial target: how much the guest gives up.
	AmountMiB uint64
	// DeflateOnOOM lets the guest take pages back when it runs out.
	DeflateOnOOM bool
	// StatsInterval, when positive, polls the guest's memory statistics.
	StatsInterval time.Duration
}

// Config describes one VM.
// Share is a host directory exported to the guest. The guest mounts it by
// Tag (virtio-fs's tag, 9p's mount_tag) and reaches nothing outside
// HostDir.
type Share struct {
	HostDir  string
	Tag      string
	ReadOnly bool
	// Protocols offered for this share; both false means both: the guest
	// mounts the first its kernel has.
	VirtioFS bool // virtio-fs, device ID 26
	P9       bool // virtio-9p (9P2000.L), device ID 9
}

type Config struct {
	Kernel  string // bzImage or ELF vmlinux
	Initrd  string // optional
	Cmdline string // kernel command line; virtio-mmio announcements are appended
	CPUs    int
	Memory  uint64 // bytes of guest RAM
	Disks   []Disk
	NICs    []NIC
	Entropy *Entropy // nil: no entropy device
	Vsock   *Vsock   // nil: no vsock device
	Balloon *Balloon // nil: no balloon
	// Shares are host directories the guest mounts by tag, over virtio-fs
	// or virtio-9p or both.
	Shares []Share
	// ConsolePorts, when set, add a virtio-console device with these
	// named ports (multiport), after the other virtio devices: `vmm run
	// -- CMD` carries the command's stdin, stdout, stderr and status on
	// them.
	ConsolePorts []vconsole.Port

	NoACPI bool // describe the machine with an MP table instead of ACPI
	// Transport carries the virtio devices; "" is DefaultTransport.
	Transport Transport

	// TrackDirtyPages logs the guest's writes to RAM (KVM's dirty log),
	// for Diff snapshots.
	TrackDirtyPages bool

	Console io.Writer // guest serial output; nil discards it
	// Progress, when set, is called for every guest write to the
	// boot-progress port 0x80.
	Progress func(value byte, sinceStart time.Duration)
}

func (c Config) withDefaults() Config {
	if c.CPUs == 0 {
		c.CPUs = DefaultCPUs
	}
	if c.Memory == 0 {
		c.Memory = DefaultMemory
	}
	if c.Cmdline == "" {
		c.Cmdline = DefaultCmdline
	}
	if c.Console == nil {
		c.Console = io.Discard
	}
	if c.Transport == "" {
		c.Transport = DefaultTransport
	}
	return c
}

func (c Config) validate(maxCPUs int) error {
	var errs []error
	if c.Kernel == "" {
		errs = append(errs, errors.New("no kernel given"))
	}
	if c.CPUs < 1 || c.CPUs > maxCPUs {
		errs = append(errs, fmt.Errorf("%d vCPUs requested: this host's KVM allows 1 to %d", c.CPUs, maxCPUs))
	}
	// The MADT and CPUID give APIC IDs in 8 bits without x2APIC routing
	// of external interrupts; keep below the IOAPIC's own ID.
	if c.CPUs > 254 {
		errs = append(errs, fmt.Errorf("%d vCPUs requested: at most 254 are supported", c.CPUs))
	}
	if c.Memory < memory.MinSize || c.Memory > memory.MaxSize {
		errs = append(errs, fmt.Errorf("%d MiB of memory requested: must be between %d MiB and %d GiB",
			c.Memory>>20, memory.MinSize>>20, memory.MaxSize>>30))
	}
	if c.Entropy != nil {
		if err := c.Entropy.RateLimit.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("entropy device: %w", err))
		}
	}
	if v := c.Vsock; v != nil && (v.GuestCID < 3 || v.GuestCID >= 0xffff_ffff || v.UDSPath == "") {
		errs = append(errs, fmt.Errorf("vsock: guest CID %d must be 3 to 4294967294, and a socket path given (%q)", v.GuestCID, v.UDSPath))
	}
	if b := c.Balloon; b != nil && b.AmountMiB > c.Memory>>20 {
		errs = append(errs, fmt.Errorf("balloon of %d MiB in %d MiB of guest RAM", b.AmountMiB, c.Memory>>20))
	}
	n := c.virtioDevices()
	switch c.Transport {
	case TransportMMIO:
		if n > MaxDevices {
			errs = append(errs, fmt.Errorf("%d virtio devices requested: at most %d over virtio-mmio (virtio-pci takes %d)", n, MaxDevices, MaxPCIDevices))
		}
	case TransportPCI:
		if n > MaxPCIDevices {
			errs = append(errs, fmt.Errorf("%d virtio devices requested: at most %d over virtio-pci", n, MaxPCIDevices))
		}
		// The PCI host bridge, its windows and INTx routes are described
		// by ACPI only (MCFG, DSDT _CRS/_PRT); an MP table cannot say
		// where the windows are, and Debian's kernel has no MP table
		// parser at all.
		if c.NoACPI {
			errs = append(errs, errors.New("virtio-pci needs ACPI: drop --no-acpi or use --transport mmio"))
		}
	default:
		errs = append(errs, fmt.Errorf("unknown virtio transport %q (mmio or pci)", c.Transport))
	}
	tags := map[string]bool{}
	for _, sh := range c.Shares {
		if sh.Tag == "" || len(sh.Tag) > 36 || tags[sh.Tag] {
			errs = append(errs, fmt.Errorf("share %s: tag %q must be 1 to 36 bytes and unique", sh.HostDir, sh.Tag))
		}
		tags[sh.Tag] = true
	}
	for _, d := range c.Disks {
		if err := d.RateLimit.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("disk %s: %w", d.Path, err))
		}
	}
	for _, n := range c.NICs {
		for _, l := range []ratelimit.Config{n.RXRateLimit, n.TXRateLimit} {
			if err := l.Validate(); err != nil {
				errs = append(errs, fmt.Errorf("NIC %s: %w", n.TAP, err))
			}
		}
	}
	if strings.ContainsRune(c.Cmdline, 0) {
		errs = append(errs, errors.New("kernel command line contains a NUL byte"))
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w: %w", ErrConfig, errors.Join(errs...))
	}
	return nil
}

// virtioDevices counts the virtio devices: disks, NICs, then the
// entropy, vsock and balloon devices, in the order they are placed.
func (c Config) virtioDevices() int {
	n := len(c.Disks) + len(c.NICs)
	if c.Entropy != nil {
		n++
	}
	if c.Vsock != nil {
		n++
	}
	if c.Balloon != nil {
		n++
	}
	for _, sh := range c.Shares {
		n += len(sh.protocols())
	}
	if len(c.ConsolePorts) > 0 {
		n++
	}
	return n
}

// shareProtocol is one device a Share becomes.
type shareProtocol string

const (
	protoVirtioFS shareProtocol = "virtio-fs"
	protoP9       shareProtocol = "virtio-9p"
)

// protocols lists the devices a share is offered through, virtio-fs
// first; neither flag set means both, and the guest mounts the one its
// kernel has (the tag is the same on both: their tag spaces are apart).
func (s Share) protocols() []shareProtocol {
	both := !s.VirtioFS && !s.P9
	var p []shareProtocol
	if s.VirtioFS || both {
		p = append(p, protoVirtioFS)
	}
	if s.P9 || both {
		p = append(p, protoP9)
	}
	return p
}
