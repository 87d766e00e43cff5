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
	// NetH2G: host-to-guest TCP (Config.NetDownBytes, before the upload),
	// measured by the receiver in the guest.
	NetH2G = "net_h2g_mbits"
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

	// Snapshots (KindSnapshot, vmm only). The guest prints a tick line
	// every 20 ms once booted (bench.tick=1), so "the next console line"
	// after a restore is at most one tick away.
	//
	// SnapBootTick: the fresh boot through the API, fork to the first
	// tick: the point a restore is compared with.
	SnapBootTick = "snap_boot_tick_ms"
	// SnapCreate*: PATCH /vm Paused done, PUT /snapshot/create (Full)
	// sent to its answer.
	SnapCreate256 = "snap_create_256m_ms"
	SnapCreate1G  = "snap_create_1g_ms"
	// SnapMem*: the memory file's allocated size (it is sparse: pages
	// the guest never touched are holes); SnapState: the state file.
	SnapMem256 = "snap_mem_256m_mib"
	SnapMem1G  = "snap_mem_1g_mib"
	SnapState  = "snap_state_kib"
	// RestoreRun*: fork of `vmm restore` (PUT /snapshot/load with
	// resume_vm inside it) to the boot vCPU's first KVM_RUN, as vmm
	// reports it ("the guest runs again ... unix-ns=N").
	RestoreRun256 = "restore_run_256m_ms"
	RestoreRun1G  = "restore_run_1g_ms"
	// RestoreLoad: the load alone, vmm's "loaded in" (state file,
	// memory mapping, KVM VM, devices, vCPU state).
	RestoreLoad256 = "restore_load_256m_ms"
	// RestoreTick*: fork of `vmm restore` to the guest's next tick line.
	RestoreTick256 = "restore_tick_256m_ms"
	RestoreTick1G  = "restore_tick_1g_ms"
	// RestoreVsBoot: RestoreTick256 over SnapBootTick of the same round.
	RestoreVsBoot = "restore_vs_boot"
	// Clones*: that many `vmm restore`s of the 256 MiB snapshot running
	// at once, each past its first tick: their summed Rss and Pss
	// (/proc/PID/smaps_rollup). The memory file is on level 1's tmpfs,
	// mapped MAP_PRIVATE, so its page-cache pages are shared.
	ClonesRSS = "clones_rss_mib"
	ClonesPSS = "clones_pss_mib"

	// The kernel-developer workflow (KindCommand, vmm only), per kernel:
	// Debian's over virtio-fs, the kvm_guest one over 9p.
	//
	// CmdTrue: wall time of `vmm run -k K -- true` (the host's root
	// shared read-only, the working directory writable); CmdPlain: wall
	// time of a plain boot of the same kernel to an init that powers off;
	// CmdOverhead: their difference in the same round.
	CmdTrue     = "cmd_true_ms"
	CmdPlain    = "cmd_plain_ms"
	CmdOverhead = "cmd_overhead_ms"
	// ShareRead: the guest reads the big file of a --share (cat, timed
	// with /proc/uptime); ShareReadL1: level 1 reads the same file.
	ShareRead   = "share_read_mibs"
	ShareReadL1 = "share_read_l1_mibs"
	// ShareFind: the guest's find over the share's tree of small files;
	// ShareFindL1: the same find in level 1.
	ShareFind   = "share_find_ms"
	ShareFindL1 = "share_find_l1_ms"
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
	{NetH2G, "virtio-net: TCP host -> guest (before the upload)", "Mbit/s", true},
	{APIReady, "API: fork of `vmm firecracker` -> socket answers GET /", "ms", false},
	{APIStartToInit, "API: PUT /actions InstanceStart -> init console line", "ms", false},
	{APIBootConsole, "API: fork -> init console line (with the API calls)", "ms", false},
	{Exits, "KVM exits per run (level-1 counter)", "", false},
	{SnapBootTick, "snapshot guest: fresh boot, fork -> first tick line (256 MiB)", "ms", false},
	{SnapCreate256, "snapshot create (Full), 256 MiB guest", "ms", false},
	{SnapCreate1G, "snapshot create (Full), 1 GiB guest", "ms", false},
	{SnapMem256, "snapshot memory file, allocated, 256 MiB guest", "MiB", false},
	{SnapMem1G, "snapshot memory file, allocated, 1 GiB guest", "MiB", false},
	{SnapState, "snapshot state file (256 MiB guest)", "KiB", false},
	{RestoreLoad256, "restore: the load inside vmm (256 MiB)", "ms", false},
	{RestoreRun256, "restore: fork -> guest's next instruction (256 MiB)", "ms", false},
	{RestoreRun1G, "restore: fork -> guest's next instruction (1 GiB)", "ms", false},
	{RestoreTick256, "restore: fork -> next tick console line (256 MiB)", "ms", false},
	{RestoreTick1G, "restore: fork -> next tick console line (1 GiB)", "ms", false},
	{RestoreVsBoot, "restore -> tick over fresh boot -> tick (256 MiB)", "x", false},
	{ClonesRSS, "clones of one snapshot running at once: total RSS", "MiB", false},
	{ClonesPSS, "clones of one snapshot running at once: total PSS", "MiB", false},
	{CmdTrue, "vmm run -k K -- true: wall time", "ms", false},
	{CmdPlain, "plain boot to an init that powers off: wall time", "ms", false},
	{CmdOverhead, "vmm run -- true minus the plain boot (same round)", "ms", false},
	{ShareRead, "share: guest reads the big file (virtio-fs, or 9p with kvmguest)", "MiB/s", true},
	{ShareReadL1, "share: level 1 reads the same file", "MiB/s", true},
	{ShareFind, "share: guest find over the tree of small files", "ms", false},
	{ShareFindL1, "share: level 1's find over the same tree", "ms", false},
	{Total, "whole run: fork -> exit", "s", false},
}
