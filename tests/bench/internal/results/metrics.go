package results

// Metric names of Sample.Metrics.
const (
	// BootConsole: VMM process start (fork in the runner) to the guest
	// console line of the first user-space instruction, "@@BENCH init",
	// as read from the VMM's stdout. The same measurement for both VMMs.
	BootConsole = "boot_console_ms"
	// BootPort: the guest init's write of PortMarker to port 0x80. QEMU:
	// from fork, through an isa-debugcon device on port 0x80 whose bytes
	// the runner timestamps. vmm: from fork when vmm --stats prints the
	// write's unix time, else from the VM's creation (vmm's own clock):
	// see Notes.
	BootPort = "boot_port_ms"
	// BootAfterStartup is derived in the summary: BootConsole minus
	// StartupSelf (medians).
	BootAfterStartup = "boot_after_startup_ms"
	// StartupStrace: the traced execve to the first KVM_RUN ioctl, from
	// `strace -f -ttt`.
	StartupStrace = "startup_strace_ms"
	// StartupSelf: fork to the first KVM_RUN as the VMM itself reports
	// it: vmm's --stats line "first KVM_RUN ... unix-ns=N" (in the boot
	// runs), QEMU's "-trace enable=kvm_vcpu_ioctl -msg timestamp=on" line
	// of the first KVM_RUN (in separate runs: the trace logs every exit).
	StartupSelf = "startup_self_ms"
	// Memory, sampled while the guest idles at init: the VMM process's
	// resident memory outside guest RAM, all of it, and guest RAM's.
	RSSOverhead = "rss_overhead_mib"
	RSSTotal    = "rss_total_mib"
	RSSGuest    = "rss_guest_mib"
	// Block: guest O_DIRECT reads of the virtio-blk disk.
	BlkSeq      = "blk_seq_mibs"
	BlkRandIOPS = "blk_rand4k_iops"
	// NetG2H: guest-to-host TCP, measured by the receiver in level 1.
	NetG2H = "net_g2h_mbits"
	// Exit: the whole run, fork to the VMM's exit after poweroff.
	Total = "total_s"
	// APIReady: fork of `vmm firecracker --api-sock` to the first 200
	// answer to GET / on the socket.
	APIReady = "api_ready_ms"
	// APIStartToInit: PUT /actions InstanceStart sent to the guest's init
	// console line; compare with StartupSelf plus BootAfterStartup of a
	// `vmm run` boot, whose fork is its "start".
	APIStartToInit = "api_start_to_init_ms"
	// APIBootConsole: the fork to the init line through the API, with
	// the configuration calls a client makes in between.
	APIBootConsole = "api_boot_console_ms"
	// Exits: KVM exits of the whole run (level 1's per-VM counter).
	Exits = "kvm_exits"
)

// PortMarker is what the guest's /init writes to port 0x80 first thing.
// 0x42 is neither a Linux I/O-delay value pattern nor a common POST code.
const PortMarker = 0x42

// MetricInfo describes a metric for the table.
type MetricInfo struct {
	Name  string
	Title string
	Unit  string
	// HigherBetter: throughput; else lower is better (times, memory).
	HigherBetter bool
}

// Metrics is the table's rows, in order.
var Metrics = []MetricInfo{
	{BootConsole, "boot: fork -> init console line", "ms", false},
	{BootPort, "boot: fork -> init port 0x80 write", "ms", false},
	{StartupSelf, "startup: fork -> first KVM_RUN (VMM's own report)", "ms", false},
	{StartupStrace, "startup: execve -> first KVM_RUN (strace)", "ms", false},
	{RSSOverhead, "memory: VMM RSS outside guest RAM", "MiB", false},
	{RSSTotal, "memory: VMM RSS total", "MiB", false},
	{RSSGuest, "memory: guest RAM resident", "MiB", false},
	{BlkSeq, "virtio-blk: sequential read 1 MiB", "MiB/s", true},
	{BlkRandIOPS, "virtio-blk: random read 4 KiB QD1", "IOPS", true},
	{NetG2H, "virtio-net: TCP guest -> host", "Mbit/s", true},
	{APIReady, "API: fork of `vmm firecracker` -> socket answers GET /", "ms", false},
	{APIStartToInit, "API: PUT /actions InstanceStart -> init console line", "ms", false},
	{APIBootConsole, "API: fork -> init console line (with the API calls)", "ms", false},
	{Exits, "KVM exits per run (level-1 counter)", "", false},
	{Total, "whole run: fork -> exit", "s", false},
}
