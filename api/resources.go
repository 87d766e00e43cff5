package api

import (
	"fmt"
	"net"
	"os"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/vmm-dev/vmm/devices/ratelimit"
	"github.com/vmm-dev/vmm/machine"
	"github.com/vmm-dev/vmm/memory"
)

// Firecracker's defaults (src/vmm/src/vmm_config/machine_config.rs,
// boot_source.rs).
const (
	DefaultVCPUs      = 1
	DefaultMemSizeMiB = 128
	// MaxVCPUs is Firecracker's MAX_SUPPORTED_VCPUS.
	MaxVCPUs = 32
	// DefaultBootArgs is the command line a boot source without boot_args
	// gets: Firecracker's DEFAULT_KERNEL_CMDLINE without i8042.nopnp. It
	// turns the serial port off (8250.nr_uarts=0): a client that wants a
	// console says console=ttyS0 in boot_args. i8042.nopnp stays out
	// because vmm's platform is ACPI hardware-reduced: Linux maps no ISA
	// IRQ by itself there, the keyboard's IRQ 1 comes only from the
	// DSDT's PNP0303 device, and with i8042.nopnp the probe fails and
	// SendCtrlAltDel does nothing.
	DefaultBootArgs = "reboot=k panic=1 pci=off nomodule 8250.nr_uarts=0 " +
		"i8042.noaux i8042.nomux i8042.dumbkbd"
)

// Texts of Firecracker's VmConfigError.
var (
	msgVCPUCount = fmt.Sprintf("The number of vCPUs must be greater than 0, less than %d and must be 1 or an even number if SMT is enabled.", MaxVCPUs)
	msgMemSize   = "The memory size (MiB) is either 0, or not a multiple of the configured page size."
)

// VMResources is the configuration of the one VM a vmm process runs,
// collected before boot from API calls or the configuration file.
type VMResources struct {
	Machine MachineConfig
	Boot    *BootSource
	// Drives holds the root drive first (Firecracker's BlockBuilder
	// keeps it at the front: it is /dev/vda), then the others in the
	// order they were first added.
	Drives []Drive
	NICs   []NetworkInterface
	// Entropy is the virtio-rng device, if configured.
	Entropy *Entropy
	// Vsock is the virtio-vsock device, if configured.
	Vsock *Vsock
	// Balloon is the memory balloon, if configured.
	Balloon *Balloon
	// PCI puts the virtio devices on virtio-pci (the process's
	// --enable-pci): the VM's choice, not an API object.
	PCI bool
}

// NewVMResources returns Firecracker's default configuration.
func NewVMResources() *VMResources {
	return &VMResources{Machine: MachineConfig{VCPUCount: DefaultVCPUs, MemSizeMiB: DefaultMemSizeMiB, HugePages: "None"}}
}

// SetMachineConfig replaces the machine configuration (PUT).
func (r *VMResources) SetMachineConfig(c MachineConfig) error {
	u := MachineConfigUpdate{VCPUCount: &c.VCPUCount, MemSizeMiB: &c.MemSizeMiB, SMT: &c.SMT,
		TrackDirtyPages: &c.TrackDirtyPages, HugePages: &c.HugePages, CPUTemplate: &c.CPUTemplate}
	def := NewVMResources().Machine
	if c.HugePages == "" {
		u.HugePages = &def.HugePages
	}
	return r.updateMachine(def, u)
}

// UpdateMachineConfig changes the fields u names (PATCH).
func (r *VMResources) UpdateMachineConfig(u MachineConfigUpdate) error {
	return r.updateMachine(r.Machine, u)
}

// updateMachine applies u over base and validates the result as
// Firecracker's VmConfig::update does; r changes only when it is valid.
func (r *VMResources) updateMachine(base MachineConfig, u MachineConfigUpdate) error {
	c := base
	if u.VCPUCount != nil {
		c.VCPUCount = *u.VCPUCount
	}
	if u.MemSizeMiB != nil {
		c.MemSizeMiB = *u.MemSizeMiB
	}
	if u.SMT != nil {
		c.SMT = *u.SMT
	}
	if u.TrackDirtyPages != nil {
		c.TrackDirtyPages = *u.TrackDirtyPages
	}
	if u.HugePages != nil {
		c.HugePages = *u.HugePages
	}
	if u.CPUTemplate != nil {
		c.CPUTemplate = *u.CPUTemplate
	}
	// Firecracker refuses SMT only on aarch64; on x86 it is a topology
	// choice (vmm still shows one thread per core, see the README).
	if c.SMT && runtime.GOARCH == "arm64" {
		return fault("Enabling simultaneous multithreading is not supported on aarch64.")
	}
	if c.VCPUCount == 0 || c.VCPUCount > MaxVCPUs || (c.SMT && c.VCPUCount > 1 && c.VCPUCount%2 == 1) {
		return fault("%s", msgVCPUCount)
	}
	switch c.HugePages {
	case "None":
	case "2M":
		// hugetlbfs-backed memory would need MAP_HUGETLB and reserved
		// pages; vmm's guest RAM uses transparent huge pages instead.
		return fault("huge_pages \"2M\" (hugetlbfs) is not supported yet; guest memory is backed by transparent huge pages")
	default:
		return jsonFault(fmt.Errorf("unknown variant `%s`, expected `None` or `2M`", c.HugePages))
	}
	if c.CPUTemplate != "" && c.CPUTemplate != "None" {
		return fault("CPU templates are not supported yet: cpu_template %q", c.CPUTemplate)
	}
	if c.MemSizeMiB == 0 {
		return fault("%s", msgMemSize)
	}
	if min, max := uint64(memory.MinSize>>20), uint64(memory.MaxSize>>20); c.MemSizeMiB < min || c.MemSizeMiB > max {
		return fault("mem_size_mib %d: vmm supports %d MiB to %d MiB", c.MemSizeMiB, min, max)
	}
	r.Machine = c
	return nil
}

// SetBootSource checks that the kernel and initrd can be opened now, as
// Firecracker does, and records them.
func (r *VMResources) SetBootSource(b BootSource) error {
	f, err := os.Open(b.KernelImagePath)
	if err != nil {
		return fault("The kernel file cannot be opened: %v", err)
	}
	_ = f.Close() // opened read-only, to check; nothing to flush
	if b.InitrdPath != nil {
		f, err := os.Open(*b.InitrdPath)
		if err != nil {
			return fault("The initrd file cannot be opened due to invalid path or invalid permissions. %v", err)
		}
		_ = f.Close()
	}
	if b.BootArgs != nil && strings.ContainsRune(*b.BootArgs, 0) {
		return fault("The kernel command line is invalid: it contains a NUL byte")
	}
	r.Boot = &b
	return nil
}

// InsertDrive adds a drive, or replaces the one with the same ID.
func (r *VMResources) InsertDrive(d Drive) error {
	pos := -1
	for i, old := range r.Drives {
		if old.DriveID == d.DriveID {
			pos = i
		}
	}
	hasRoot := len(r.Drives) > 0 && r.Drives[0].IsRootDevice
	if d.IsRootDevice && hasRoot && pos != 0 {
		return fault("A root block device already exists!")
	}
	flags := os.O_RDWR
	if d.IsReadOnly {
		flags = os.O_RDONLY
	}
	f, err := os.OpenFile(d.PathOnHost, flags, 0)
	if err != nil {
		return fault("Unable to open the block device file: %v", err)
	}
	_ = f.Close()
	switch {
	case pos < 0 && d.IsRootDevice:
		r.Drives = append([]Drive{d}, r.Drives...)
	case pos < 0:
		r.Drives = append(r.Drives, d)
	default:
		r.Drives[pos] = d
		if d.IsRootDevice && pos != 0 {
			r.Drives[0], r.Drives[pos] = r.Drives[pos], r.Drives[0]
		}
	}
	if n := r.devices(); n > machine.MaxDevices {
		r.removeDrive(d.DriveID)
		return fault("%s", r.tooMany())
	}
	return nil
}

func (r *VMResources) removeDrive(id string) {
	for i, d := range r.Drives {
		if d.DriveID == id {
			r.Drives = append(r.Drives[:i], r.Drives[i+1:]...)
			return
		}
	}
}

// InsertNetworkInterface adds a network interface, or replaces the one
// with the same ID. Names and MACs must be unique, as in Firecracker.
func (r *VMResources) InsertNetworkInterface(n NetworkInterface) error {
	if n.HostDevName == "" || len(n.HostDevName) > 15 {
		return fault("host_dev_name %q: a TAP name has 1 to 15 characters", n.HostDevName)
	}
	if n.GuestMAC != "" {
		mac, err := net.ParseMAC(n.GuestMAC)
		if err != nil || len(mac) != 6 {
			return jsonFault(fmt.Errorf("invalid MAC address %q", n.GuestMAC))
		}
		if mac[0]&1 != 0 {
			return fault("guest_mac %s is a multicast address", n.GuestMAC)
		}
	}
	pos := -1
	for i, old := range r.NICs {
		switch {
		case old.IfaceID == n.IfaceID:
			pos = i
		case old.HostDevName == n.HostDevName:
			return fault("The host device name %s is already in use.", n.HostDevName)
		case n.GuestMAC != "" && strings.EqualFold(old.GuestMAC, n.GuestMAC):
			return fault("The MAC address is already in use: %s", n.GuestMAC)
		}
	}
	if pos >= 0 {
		r.NICs[pos] = n
		return nil
	}
	if r.devices()+1 > machine.MaxDevices {
		return fault("%s", r.tooMany())
	}
	r.NICs = append(r.NICs, n)
	return nil
}

// devices counts the virtio devices configured.
func (r *VMResources) devices() int {
	n := len(r.Drives) + len(r.NICs)
	if r.Entropy != nil {
		n++
	}
	if r.Vsock != nil {
		n++
	}
	if r.Balloon != nil {
		n++
	}
	return n
}

func (r *VMResources) tooMany() string {
	return fmt.Sprintf("too many devices: vmm supports at most %d virtio devices (drives, network interfaces, entropy, vsock, balloon) together", machine.MaxDevices)
}

// SetEntropy configures the entropy device (PUT /entropy), replacing any
// earlier one.
func (r *VMResources) SetEntropy(e Entropy) error {
	if r.Entropy == nil && r.devices()+1 > machine.MaxDevices {
		return fault("%s", r.tooMany())
	}
	r.Entropy = &e
	return nil
}

// SetBalloon configures the balloon (PUT /balloon), replacing any
// earlier one.
func (r *VMResources) SetBalloon(b Balloon) error {
	if b.AmountMiB > r.Machine.MemSizeMiB {
		return fault("Amount of pages requested for the balloon (%d MiB) is greater than the guest memory (%d MiB).", b.AmountMiB, r.Machine.MemSizeMiB)
	}
	if r.Balloon == nil && r.devices()+1 > machine.MaxDevices {
		return fault("%s", r.tooMany())
	}
	r.Balloon = &b
	return nil
}

// SetVsock configures the vsock device (PUT /vsock), replacing any
// earlier one. As in Firecracker the socket is created at boot, and a
// path that exists then fails InstanceStart.
func (r *VMResources) SetVsock(vs Vsock) error {
	if vs.GuestCID < 3 || vs.GuestCID == 0xffff_ffff {
		return fault("Invalid guest CID %d: it must be at least 3 (0, 1 and 2 are reserved) and not 4294967295.", vs.GuestCID)
	}
	if vs.UDSPath == "" {
		return fault("The vsock uds_path is empty.")
	}
	if r.Vsock == nil && r.devices()+1 > machine.MaxDevices {
		return fault("%s", r.tooMany())
	}
	r.Vsock = &vs
	return nil
}

// MachineConfig is the one place Firecracker's objects become the
// machine.Config that machine.New builds: the same type `vmm run` fills
// from its flags.
func (r *VMResources) MachineConfig() (machine.Config, error) {
	if r.Boot == nil {
		return machine.Config{}, fault("Cannot start microvm without kernel configuration.")
	}
	cmdline := DefaultBootArgs
	switch {
	case r.Boot.BootArgs != nil:
		cmdline = *r.Boot.BootArgs
		if r.PCI && slices.Contains(strings.Fields(cmdline), "pci=off") {
			return machine.Config{}, fault("boot_args has pci=off, which hides the virtio-pci devices that --enable-pci gives: drop it")
		}
	case r.PCI:
		// Firecracker's default command line turns PCI off; with PCI
		// enabled, Firecracker leaves that out.
		cmdline = strings.Join(slices.DeleteFunc(strings.Fields(cmdline), func(w string) bool { return w == "pci=off" }), " ")
	}
	cfg := machine.Config{
		Kernel:  r.Boot.KernelImagePath,
		Cmdline: cmdline + rootArgs(r.Drives),
		CPUs:    int(r.Machine.VCPUCount),
		Memory:  r.Machine.MemSizeMiB << 20,
		// Diff snapshots read KVM's dirty log.
		TrackDirtyPages: r.Machine.TrackDirtyPages,
	}
	if r.PCI {
		cfg.Transport = machine.TransportPCI
	}
	if r.Boot.InitrdPath != nil {
		cfg.Initrd = *r.Boot.InitrdPath
	}
	for _, d := range r.Drives {
		cfg.Disks = append(cfg.Disks, machine.Disk{ID: d.DriveID, Path: d.PathOnHost, ReadOnly: d.IsReadOnly,
			RateLimit: limiterConfig(d.RateLimiter)})
	}
	for _, n := range r.NICs {
		nic := machine.NIC{ID: n.IfaceID, TAP: n.HostDevName,
			RXRateLimit: limiterConfig(n.RxRateLimiter), TXRateLimit: limiterConfig(n.TxRateLimiter)}
		if n.GuestMAC != "" {
			mac, err := net.ParseMAC(n.GuestMAC)
			if err != nil {
				return machine.Config{}, fault("guest_mac %q: %v", n.GuestMAC, err)
			}
			nic.MAC = mac
		}
		cfg.NICs = append(cfg.NICs, nic)
	}
	if r.Entropy != nil {
		cfg.Entropy = &machine.Entropy{RateLimit: limiterConfig(r.Entropy.RateLimiter)}
	}
	if b := r.Balloon; b != nil {
		cfg.Balloon = &machine.Balloon{AmountMiB: b.AmountMiB, DeflateOnOOM: b.DeflateOnOOM,
			StatsInterval: time.Duration(b.StatsPollingIntervalS) * time.Second}
	}
	if r.Vsock != nil {
		cfg.Vsock = &machine.Vsock{GuestCID: uint64(r.Vsock.GuestCID), UDSPath: r.Vsock.UDSPath}
	}
	return cfg, nil
}

// restoredResources is the configuration of a VM loaded from a snapshot,
// as the API shows and patches it: MachineConfig's mapping backwards, for
// what the snapshot keeps (no boot source: the kernel is in guest memory
// already; no root-drive flag or partuuid: they only shaped a command
// line that has run).
func restoredResources(cfg machine.Config) *VMResources {
	r := NewVMResources()
	r.Machine.VCPUCount = uint8(cfg.CPUs)
	r.Machine.MemSizeMiB = cfg.Memory >> 20
	r.Machine.TrackDirtyPages = cfg.TrackDirtyPages
	r.PCI = cfg.Transport == machine.TransportPCI
	for _, d := range cfg.Disks {
		r.Drives = append(r.Drives, Drive{DriveID: d.ID, PathOnHost: d.Path, IsReadOnly: d.ReadOnly,
			RateLimiter: rateLimiterOf(d.RateLimit)})
	}
	for _, n := range cfg.NICs {
		nic := NetworkInterface{IfaceID: n.ID, HostDevName: n.TAP,
			RxRateLimiter: rateLimiterOf(n.RXRateLimit), TxRateLimiter: rateLimiterOf(n.TXRateLimit)}
		if n.MAC != nil {
			nic.GuestMAC = n.MAC.String()
		}
		r.NICs = append(r.NICs, nic)
	}
	if e := cfg.Entropy; e != nil {
		r.Entropy = &Entropy{RateLimiter: rateLimiterOf(e.RateLimit)}
	}
	if b := cfg.Balloon; b != nil {
		r.Balloon = &Balloon{AmountMiB: b.AmountMiB, DeflateOnOOM: b.DeflateOnOOM,
			StatsPollingIntervalS: uint64(b.StatsInterval / time.Second)}
	}
	if v := cfg.Vsock; v != nil {
		r.Vsock = &Vsock{GuestCID: uint32(v.GuestCID), UDSPath: v.UDSPath}
	}
	return r
}

// rateLimiterOf is limiterConfig backwards: nil for no limit at all.
func rateLimiterOf(c ratelimit.Config) *RateLimiter {
	if c.Unlimited() {
		return nil
	}
	return &RateLimiter{Bandwidth: tokenBucketOf(c.Bandwidth), Ops: tokenBucketOf(c.Ops)}
}

func tokenBucketOf(b ratelimit.Bucket) *TokenBucket {
	if b.Unlimited() {
		return nil
	}
	size, refill := b.Size, uint64(b.RefillTime/time.Millisecond)
	tb := &TokenBucket{Size: &size, RefillTime: &refill}
	if b.OneTimeBurst != 0 {
		burst := b.OneTimeBurst
		tb.OneTimeBurst = &burst
	}
	return tb
}

// rootArgs is what a root drive adds to the command line, as
// Firecracker's builder (attach_block_devices) does: root=/dev/vda, or
// root=PARTUUID=... when a partuuid is given, then ro or rw. The root
// drive is first, so it is the first virtio-blk device, /dev/vda.
func rootArgs(drives []Drive) string {
	if len(drives) == 0 || !drives[0].IsRootDevice {
		return ""
	}
	d := drives[0]
	root := " root=/dev/vda"
	if d.PartUUID != "" {
		root = " root=PARTUUID=" + d.PartUUID
	}
	if d.IsReadOnly {
		return root + " ro"
	}
	return root + " rw"
}

// Full returns the configuration as GET /vm/config shows it.
func (r *VMResources) Full() FullVMConfig {
	m := r.Machine
	return FullVMConfig{
		BootSource:        r.Boot,
		Drives:            append([]Drive{}, r.Drives...),
		MachineConfig:     &m,
		NetworkInterfaces: append([]NetworkInterface{}, r.NICs...),
		Balloon:           r.Balloon,
		Vsock:             r.Vsock,
		Entropy:           r.Entropy,
	}
}

// limiterConfig turns swagger's RateLimiter into the devices' limits
// (refill_time is in milliseconds); nil limits nothing.
func limiterConfig(rl *RateLimiter) ratelimit.Config {
	if rl == nil {
		return ratelimit.Config{}
	}
	return ratelimit.Config{Bandwidth: bucketConfig(rl.Bandwidth), Ops: bucketConfig(rl.Ops)}
}

func bucketConfig(tb *TokenBucket) ratelimit.Bucket {
	if tb == nil || tb.Size == nil || tb.RefillTime == nil {
		return ratelimit.Bucket{}
	}
	b := ratelimit.Bucket{Size: *tb.Size}
	// A refill time beyond what a Duration holds is as good as never.
	const maxMS = uint64(1<<63-1) / uint64(time.Millisecond)
	b.RefillTime = time.Duration(min(*tb.RefillTime, maxMS)) * time.Millisecond
	if tb.OneTimeBurst != nil {
		b.OneTimeBurst = *tb.OneTimeBurst
	}
	return b
}

// patchLimiter applies a PATCH's rate limiter over the one in force, as
// Firecracker's RateLimiterUpdate does: a bucket the PATCH names replaces
// the old one (a zero size or refill_time turns it off), a bucket it
// leaves out stays.
func patchLimiter(old, patch *RateLimiter) *RateLimiter {
	if patch == nil {
		return old
	}
	var r RateLimiter
	if old != nil {
		r = *old
	}
	if patch.Bandwidth != nil {
		r.Bandwidth = patch.Bandwidth
	}
	if patch.Ops != nil {
		r.Ops = patch.Ops
	}
	return &r
}

// driveIndex returns the position of drive id, which is its virtio-blk
// device's position in the machine, or -1.
func (r *VMResources) driveIndex(id string) int {
	for i, d := range r.Drives {
		if d.DriveID == id {
			return i
		}
	}
	return -1
}

func (r *VMResources) nicIndex(id string) int {
	for i, n := range r.NICs {
		if n.IfaceID == id {
			return i
		}
	}
	return -1
}
