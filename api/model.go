// Package api is vmm's Firecracker-compatible control plane: the JSON
// objects of Firecracker's REST API (src/firecracker/swagger/firecracker.yaml)
// as Go types, the parsing of HTTP requests into typed requests, a
// controller that applies them to one VM configuration and boots it with
// machine.New, the HTTP/1.1 server on a unix socket, and the JSON
// configuration file (Firecracker's --config-file) over the same objects.
//
// Parsing, validation and the machine never mix: ParseRequest turns
// (method, path, body) into a Request value and checks only its shape;
// Controller.Handle applies a Request to the VMResources, which check the
// values against each other and the host's files; VMResources.MachineConfig
// is the one place Firecracker's objects become a machine.Config.
package api

import (
	"encoding/json"
	"fmt"
)

// MachineConfig is the body of PUT /machine-config and the answer of
// GET /machine-config.
type MachineConfig struct {
	VCPUCount       uint8  `json:"vcpu_count"`
	MemSizeMiB      uint64 `json:"mem_size_mib"`
	SMT             bool   `json:"smt"`
	TrackDirtyPages bool   `json:"track_dirty_pages"`
	HugePages       string `json:"huge_pages,omitempty"`
	// CPUTemplate is accepted only empty or "None" (no templates yet).
	CPUTemplate string `json:"cpu_template,omitempty"`
}

// machineConfigBody is MachineConfig with the required fields as
// pointers, so a missing one is told apart from zero.
type machineConfigBody struct {
	VCPUCount       *uint8  `json:"vcpu_count"`
	MemSizeMiB      *uint64 `json:"mem_size_mib"`
	SMT             *bool   `json:"smt"`
	TrackDirtyPages *bool   `json:"track_dirty_pages"`
	HugePages       *string `json:"huge_pages"`
	CPUTemplate     *string `json:"cpu_template"`
}

// MachineConfigUpdate is the body of PATCH /machine-config: only the
// fields present change.
type MachineConfigUpdate machineConfigBody

// BootSource is the body of PUT /boot-source.
type BootSource struct {
	KernelImagePath string  `json:"kernel_image_path"`
	InitrdPath      *string `json:"initrd_path,omitempty"`
	BootArgs        *string `json:"boot_args,omitempty"`
}

// TokenBucket is one of a rate limiter's two buckets (swagger
// "TokenBucket"): size tokens, refilled over refill_time ms, plus an
// initial one_time_burst.
type TokenBucket struct {
	Size         *uint64 `json:"size"`
	OneTimeBurst *uint64 `json:"one_time_burst,omitempty"`
	RefillTime   *uint64 `json:"refill_time"`
}

// RateLimiter is swagger's "RateLimiter": a bandwidth (bytes) and an ops
// bucket.
type RateLimiter struct {
	Bandwidth *TokenBucket `json:"bandwidth,omitempty"`
	Ops       *TokenBucket `json:"ops,omitempty"`
}

// Drive is the body of PUT /drives/{drive_id}.
type Drive struct {
	DriveID      string       `json:"drive_id"`
	PathOnHost   string       `json:"path_on_host"`
	IsRootDevice bool         `json:"is_root_device"`
	IsReadOnly   bool         `json:"is_read_only"`
	PartUUID     string       `json:"partuuid,omitempty"`
	CacheType    string       `json:"cache_type,omitempty"`
	IOEngine     string       `json:"io_engine,omitempty"`
	RateLimiter  *RateLimiter `json:"rate_limiter,omitempty"`
}

// driveBody is Drive with the fields Firecracker requires as pointers.
type driveBody struct {
	DriveID      *string      `json:"drive_id"`
	PathOnHost   *string      `json:"path_on_host"`
	IsRootDevice *bool        `json:"is_root_device"`
	IsReadOnly   *bool        `json:"is_read_only"`
	PartUUID     *string      `json:"partuuid"`
	CacheType    *string      `json:"cache_type"`
	IOEngine     *string      `json:"io_engine"`
	RateLimiter  *RateLimiter `json:"rate_limiter"`
}

// DriveUpdate is the body of PATCH /drives/{drive_id}.
type DriveUpdate struct {
	DriveID     string       `json:"drive_id"`
	PathOnHost  *string      `json:"path_on_host,omitempty"`
	RateLimiter *RateLimiter `json:"rate_limiter,omitempty"`
}

// NetworkInterface is the body of PUT /network-interfaces/{iface_id}.
type NetworkInterface struct {
	IfaceID       string       `json:"iface_id"`
	HostDevName   string       `json:"host_dev_name"`
	GuestMAC      string       `json:"guest_mac,omitempty"`
	RxRateLimiter *RateLimiter `json:"rx_rate_limiter,omitempty"`
	TxRateLimiter *RateLimiter `json:"tx_rate_limiter,omitempty"`
}

// NetworkInterfaceUpdate is the body of PATCH /network-interfaces/{iface_id}.
type NetworkInterfaceUpdate struct {
	IfaceID       string       `json:"iface_id"`
	RxRateLimiter *RateLimiter `json:"rx_rate_limiter,omitempty"`
	TxRateLimiter *RateLimiter `json:"tx_rate_limiter,omitempty"`
}

// Entropy is the body of PUT /entropy (swagger "EntropyDevice").
type Entropy struct {
	RateLimiter *RateLimiter `json:"rate_limiter,omitempty"`
}

// Vsock is the body of PUT /vsock (swagger "Vsock"): the guest's CID and
// the host-side unix socket. vsock_id is deprecated in Firecracker and
// accepted for old clients.
type Vsock struct {
	VsockID  string `json:"vsock_id,omitempty"`
	GuestCID uint32 `json:"guest_cid"`
	UDSPath  string `json:"uds_path"`
}

// Balloon is the body of PUT /balloon and the answer of GET /balloon
// (swagger "Balloon").
type Balloon struct {
	AmountMiB             uint64 `json:"amount_mib"`
	DeflateOnOOM          bool   `json:"deflate_on_oom"`
	StatsPollingIntervalS uint64 `json:"stats_polling_interval_s"`
}

// BalloonUpdate is the body of PATCH /balloon.
type BalloonUpdate struct {
	AmountMiB uint64 `json:"amount_mib"`
}

// BalloonStatsUpdate is the body of PATCH /balloon/statistics.
type BalloonStatsUpdate struct {
	StatsPollingIntervalS uint64 `json:"stats_polling_interval_s"`
}

// BalloonStats answers GET /balloon/statistics (swagger "BalloonStats"):
// the pages, and the guest's statistics it has reported.
type BalloonStats struct {
	TargetPages        uint32  `json:"target_pages"`
	ActualPages        uint32  `json:"actual_pages"`
	TargetMiB          uint32  `json:"target_mib"`
	ActualMiB          uint32  `json:"actual_mib"`
	SwapIn             *uint64 `json:"swap_in,omitempty"`
	SwapOut            *uint64 `json:"swap_out,omitempty"`
	MajorFaults        *uint64 `json:"major_faults,omitempty"`
	MinorFaults        *uint64 `json:"minor_faults,omitempty"`
	FreeMemory         *uint64 `json:"free_memory,omitempty"`
	TotalMemory        *uint64 `json:"total_memory,omitempty"`
	AvailableMemory    *uint64 `json:"available_memory,omitempty"`
	DiskCaches         *uint64 `json:"disk_caches,omitempty"`
	HugetlbAllocations *uint64 `json:"hugetlb_allocations,omitempty"`
	HugetlbFailures    *uint64 `json:"hugetlb_failures,omitempty"`
}

// Logger is the body of PUT /logger.
type Logger struct {
	LogPath       *string `json:"log_path,omitempty"`
	Level         *string `json:"level,omitempty"`
	ShowLevel     *bool   `json:"show_level,omitempty"`
	ShowLogOrigin *bool   `json:"show_log_origin,omitempty"`
	Module        *string `json:"module,omitempty"`
}

// Metrics is the body of PUT /metrics.
type Metrics struct {
	MetricsPath string `json:"metrics_path"`
}

// Action types of PUT /actions (swagger "InstanceActionInfo").
const (
	ActionInstanceStart  = "InstanceStart"
	ActionSendCtrlAltDel = "SendCtrlAltDel"
	ActionFlushMetrics   = "FlushMetrics"
)

// Action is the body of PUT /actions.
type Action struct {
	ActionType string `json:"action_type"`
}

// Instance states (swagger "InstanceInfo.state").
const (
	StateNotStarted = "Not started"
	StateRunning    = "Running"
	StatePaused     = "Paused"
)

// InstanceInfo answers GET /.
type InstanceInfo struct {
	ID         string `json:"id"`
	State      string `json:"state"`
	VMMVersion string `json:"vmm_version"`
	AppName    string `json:"app_name"`
}

// Version answers GET /version.
type Version struct {
	FirecrackerVersion string `json:"firecracker_version"`
}

// FullVMConfig answers GET /vm/config and is the configuration file's
// shape (swagger "FullVmConfiguration").
type FullVMConfig struct {
	BootSource        *BootSource        `json:"boot-source,omitempty"`
	Drives            []Drive            `json:"drives"`
	MachineConfig     *MachineConfig     `json:"machine-config,omitempty"`
	NetworkInterfaces []NetworkInterface `json:"network-interfaces"`
	Balloon           *Balloon           `json:"balloon,omitempty"`
	Vsock             *Vsock             `json:"vsock,omitempty"`
	Entropy           *Entropy           `json:"entropy,omitempty"`
	Logger            *Logger            `json:"logger,omitempty"`
	Metrics           *Metrics           `json:"metrics,omitempty"`
}

// Fault is every error's body.
type Fault struct {
	FaultMessage string `json:"fault_message"`
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		// Only our own plain structs are marshalled here.
		panic(fmt.Sprintf("api: marshal %T: %v", v, err))
	}
	return b
}
