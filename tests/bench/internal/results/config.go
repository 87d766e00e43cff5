package results

// Config tells the level-1 runner what to run. The host program writes it
// as JSON into level 1's $DATA; paths are level-1 paths.
type Config struct {
	Rounds  int          `json:"rounds"`
	Kernels []KernelSpec `json:"kernels"`
	// Initrd is the guest initramfs, the same for every kernel.
	Initrd string  `json:"initrd"`
	VMM    string  `json:"vmm"`
	QEMU   Dynamic `json:"qemu"`
	// QEMUDataDir holds bios-microvm.bin (QEMU's -L).
	QEMUDataDir string `json:"qemu_data_dir"`
	// Strace runs the start-up measurement; empty skips it.
	Strace Dynamic `json:"strace"`
	CPUs   int     `json:"cpus"`
	// MemoryMiB is the guest RAM of both VMMs.
	MemoryMiB int `json:"memory_mib"`
	// Disk is a raw image both VMMs get as virtio-blk; empty: no disk.
	Disk string `json:"disk"`
	// Net gives each VMM a TAP with the host side's address already set
	// (the level-1 script creates them); nil: no network.
	Net *NetSpec `json:"net,omitempty"`
	// IdleSeconds is how long the guest sleeps at init for the memory
	// sample.
	IdleSeconds float64 `json:"idle_seconds"`
	// IOSeconds bounds each guest I/O test.
	IOSeconds float64 `json:"io_seconds"`
	// NetBytes is what the guest sends to the host.
	NetBytes int64 `json:"net_bytes"`
	// NetDownBytes, when not 0, is what the host sends the guest first
	// (pseudo-random, checked by its SHA-256), on the network port + 1.
	NetDownBytes int64 `json:"net_down_bytes,omitempty"`
	// BootTimeoutSeconds bounds one boot run.
	BootTimeoutSeconds float64 `json:"boot_timeout_seconds"`
	// Work is a scratch directory (sockets, logs).
	Work string `json:"work"`
	// PCI boots vmm over --transport pci too (VMMPCI), besides the
	// MMIO boots both VMMs make.
	PCI bool `json:"pci,omitempty"`
	// ShowGuestConsole copies every guest console line to level 1's
	// console (debugging; it slows the runs).
	ShowGuestConsole bool `json:"show_guest_console,omitempty"`
	// Snapshot runs the snapshot benchmark each round with the first
	// kernel; nil: none.
	Snapshot *SnapshotSpec `json:"snapshot,omitempty"`
	// Command runs the workflow benchmark; nil: none.
	Command *CommandSpec `json:"command,omitempty"`
}

// CommandSpec is the workflow benchmark: for each kernel, `vmm run --
// true` against a plain boot, and a share with a ShareMiB file and a
// tree of ShareFiles empty files, which the guest reads and walks.
type CommandSpec struct {
	Kernels    []CommandKernel `json:"kernels"`
	ShareMiB   int             `json:"share_mib"`
	ShareFiles int             `json:"share_files"`
	// Dir holds the share (level 1 writes it before the runner starts).
	Dir string `json:"dir"`
	// TimeoutSeconds bounds each run.
	TimeoutSeconds float64 `json:"timeout_seconds"`
	Rounds         int     `json:"rounds"`
}

// ShareDirs is how many directories the workflow benchmark's tree
// spreads its ShareFiles over (files/ShareDirs each).
const ShareDirs = 100

// CommandKernel is a kernel of the workflow benchmark and how vmm runs it.
type CommandKernel struct {
	Name    string `json:"name"`
	BzImage string `json:"bzimage"`
	// Modules is the module tree for --modules ("" for a kernel with
	// its drivers built in).
	Modules   string `json:"modules,omitempty"`
	Transport string `json:"transport"`
	// Proto is the share's protocol: fs (virtio-fs) or 9p.
	Proto string `json:"proto"`
}

// SnapshotSpec is the snapshot benchmark: a 256 MiB and a 1 GiB guest,
// each snapshotted and restored; Clones restores of the 256 MiB snapshot
// run at once for the memory they share.
type SnapshotSpec struct {
	Clones int `json:"clones"`
}

// KernelSpec is one guest kernel.
type KernelSpec struct {
	Name    string `json:"name"`
	BzImage string `json:"bzimage"`
	Cmdline string `json:"cmdline"`
	// IO runs the block and network tests with this kernel.
	IO bool `json:"io"`
}

// Dynamic is a dynamically linked program carried into level 1 with its
// libraries: run as Loader --library-path LibDir Binary.
type Dynamic struct {
	Loader string `json:"loader"`
	LibDir string `json:"lib_dir"`
	Binary string `json:"binary"`
}

// Command returns the argv prefix that runs the program.
func (d Dynamic) Command() []string {
	if d.Loader == "" {
		return []string{d.Binary}
	}
	return []string{d.Loader, "--library-path", d.LibDir, d.Binary}
}

// NetSpec is the network of each VMM: a TAP per VMM, in its own subnet.
type NetSpec struct {
	Port int `json:"port"`
	// Per VMM ("vmm", "qemu").
	Links map[string]NetLink `json:"links"`
}

// NetLink is one VMM's TAP and the addresses on both ends.
type NetLink struct {
	Tap     string `json:"tap"`
	HostIP  string `json:"host_ip"`
	GuestIP string `json:"guest_ip"`
	MAC     string `json:"mac"`
}
