package api

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"time"

	"github.com/vmm-dev/vmm/console"
	"github.com/vmm-dev/vmm/devices/virtio/balloon"
	"github.com/vmm-dev/vmm/host"
	"github.com/vmm-dev/vmm/machine"
)

// Pause, resume and snapshots: Firecracker's PATCH /vm, PUT
// /snapshot/create and PUT /snapshot/load (swagger "Vm",
// "SnapshotCreateParams", "SnapshotLoadParams").

// VM states of PATCH /vm.
const (
	VMStatePaused  = "Paused"
	VMStateResumed = "Resumed"
)

// VMState is the body of PATCH /vm.
type VMState struct {
	State string `json:"state"`
}

// SnapshotCreateParams is the body of PUT /snapshot/create.
type SnapshotCreateParams struct {
	SnapshotPath string `json:"snapshot_path"`
	MemFilePath  string `json:"mem_file_path"`
	// SnapshotType is "Full" (the default) or "Diff".
	SnapshotType string `json:"snapshot_type,omitempty"`
	// Version is Firecracker's deprecated target version: accepted and
	// ignored, as a snapshot is always of this vmm's format.
	Version string `json:"version,omitempty"`
}

// MemoryBackend says where a restored guest's memory comes from.
type MemoryBackend struct {
	// BackendType is "File" (mapped MAP_PRIVATE); "Uffd" is refused.
	BackendType string `json:"backend_type"`
	BackendPath string `json:"backend_path"`
}

// NetworkOverride gives a restored interface another host TAP.
type NetworkOverride struct {
	IfaceID     string `json:"iface_id"`
	HostDevName string `json:"host_dev_name"`
}

// VsockOverride gives a restored vsock device another host socket.
type VsockOverride struct {
	UDSPath string `json:"uds_path"`
}

// SnapshotLoadParams is the body of PUT /snapshot/load.
type SnapshotLoadParams struct {
	SnapshotPath string `json:"snapshot_path"`
	// MemFilePath is the deprecated form of MemBackend (a File).
	MemFilePath string         `json:"mem_file_path,omitempty"`
	MemBackend  *MemoryBackend `json:"mem_backend,omitempty"`
	// EnableDiffSnapshots is the older name of TrackDirtyPages.
	EnableDiffSnapshots bool              `json:"enable_diff_snapshots,omitempty"`
	TrackDirtyPages     bool              `json:"track_dirty_pages,omitempty"`
	ResumeVM            bool              `json:"resume_vm,omitempty"`
	NetworkOverrides    []NetworkOverride `json:"network_overrides,omitempty"`
	VsockOverride       *VsockOverride    `json:"vsock_override,omitempty"`
}

// The requests.
type (
	PatchVM        struct{ State VMState }
	SnapshotCreate struct{ Params SnapshotCreateParams }
	SnapshotLoad   struct{ Params SnapshotLoadParams }
)

func (PatchVM) kind() string        { return "PatchVM" }
func (SnapshotCreate) kind() string { return "SnapshotCreate" }
func (SnapshotLoad) kind() string   { return "SnapshotLoad" }

// parseVMRequest parses PATCH /vm.
func parseVMRequest(method string, tokens []string, body []byte) (Request, bool, error) {
	if method != http.MethodPatch || len(tokens) != 1 {
		return nil, false, nil
	}
	var s VMState
	if err := decode(body, &s); err != nil {
		return nil, true, err
	}
	switch s.State {
	case VMStatePaused, VMStateResumed:
		return PatchVM{s}, true, nil
	}
	return nil, true, jsonFault(fmt.Errorf("unknown variant `%s`, expected `%s` or `%s`", s.State, VMStatePaused, VMStateResumed))
}

// parseSnapshotRequest parses PUT /snapshot/create and /snapshot/load.
func parseSnapshotRequest(method string, tokens []string, body []byte) (Request, bool, error) {
	if method != http.MethodPut || len(tokens) != 2 {
		return nil, false, nil
	}
	switch tokens[1] {
	case "create":
		var p SnapshotCreateParams
		if err := decode(body, &p); err != nil {
			return nil, true, err
		}
		switch {
		case p.SnapshotPath == "":
			return nil, true, missing("snapshot_path")
		case p.MemFilePath == "":
			return nil, true, missing("mem_file_path")
		}
		switch machine.SnapshotType(p.SnapshotType) {
		case "", machine.SnapshotFull, machine.SnapshotDiff:
		default:
			return nil, true, jsonFault(fmt.Errorf("unknown variant `%s`, expected `Full` or `Diff`", p.SnapshotType))
		}
		return SnapshotCreate{p}, true, nil
	case "load":
		var p SnapshotLoadParams
		if err := decode(body, &p); err != nil {
			return nil, true, err
		}
		if p.SnapshotPath == "" {
			return nil, true, missing("snapshot_path")
		}
		switch {
		case p.MemBackend != nil && p.MemFilePath != "":
			return nil, true, fault("Only one of mem_file_path and mem_backend may be given.")
		case p.MemBackend == nil && p.MemFilePath == "":
			return nil, true, fault("One of mem_file_path or mem_backend must be given.")
		case p.MemBackend == nil:
			p.MemBackend = &MemoryBackend{BackendType: "File", BackendPath: p.MemFilePath}
			p.MemFilePath = ""
		}
		switch {
		case p.MemBackend.BackendType == "Uffd":
			return nil, true, fault("mem_backend Uffd is not supported: use File.")
		case p.MemBackend.BackendType != "File":
			return nil, true, jsonFault(fmt.Errorf("unknown variant `%s`, expected `File` or `Uffd`", p.MemBackend.BackendType))
		case p.MemBackend.BackendPath == "":
			return nil, true, missing("backend_path")
		}
		for _, o := range p.NetworkOverrides {
			if o.IfaceID == "" || o.HostDevName == "" {
				return nil, true, fault("A network override needs iface_id and host_dev_name.")
			}
		}
		if p.VsockOverride != nil && p.VsockOverride.UDSPath == "" {
			return nil, true, missing("uds_path")
		}
		return SnapshotLoad{p}, true, nil
	}
	return nil, false, nil
}

// bootResource marks the requests that configure a VM to boot: after
// one of them, a snapshot load is refused, as in Firecracker.
func bootResource(r Request) bool {
	switch r.(type) {
	case PutMachineConfig, PatchMachineConfig, PutBootSource, PutDrive, PutNetworkInterface,
		PutEntropy, PutVsock, PutBalloon:
		return true
	}
	return false
}

func (c *Controller) patchVM(s VMState) error {
	if !c.started {
		return fault(msgPreBoot)
	}
	switch s.State {
	case VMStatePaused:
		c.m.Pause()
		c.paused = true
		c.log.Infof("The microVM is paused")
	case VMStateResumed:
		c.m.Resume()
		c.paused = false
		c.log.Infof("The microVM is resumed")
	}
	return nil
}

func (c *Controller) createSnapshot(p SnapshotCreateParams) error {
	if !c.started {
		return fault(msgPreBoot)
	}
	if !c.paused {
		return fault("Cannot create a snapshot of a running microVM: pause it first (PATCH /vm {\"state\": \"Paused\"}).")
	}
	st, err := c.m.Snapshot(machine.SnapshotParams{StatePath: p.SnapshotPath, MemPath: p.MemFilePath,
		Type: machine.SnapshotType(p.SnapshotType), VMMVersion: c.opts.Version})
	if err != nil {
		return fault("Failed to create the snapshot: %v", err)
	}
	c.log.Infof("Snapshot created: %s (%d bytes), memory %s (%d bytes of data) in %v",
		p.SnapshotPath, st.StateBytes, p.MemFilePath, st.MemBytesWritten, st.Duration.Round(time.Microsecond))
	return nil
}

// loadSnapshot restores a VM in this process, which must not have
// configured or started one. On any failure nothing of it is left, and
// the process can still boot or load another.
func (c *Controller) loadSnapshot(p SnapshotLoadParams) error {
	switch {
	case c.started:
		return fault("Loading a microVM snapshot is not allowed after the microVM started.")
	case c.configured:
		return fault("Loading a microVM snapshot not allowed after configuring boot-specific resources.")
	}
	select {
	case <-c.stopped:
		return fault("the VMM is stopping")
	default:
	}
	var vsockPath string
	if p.VsockOverride != nil {
		vsockPath = p.VsockOverride.UDSPath
	}
	overrides := map[string]string{}
	for _, o := range p.NetworkOverrides {
		overrides[o.IfaceID] = o.HostDevName
	}
	m, err := machine.Restore(machine.RestoreParams{
		StatePath: p.SnapshotPath, MemPath: p.MemBackend.BackendPath, VMMVersion: c.opts.Version,
		TrackDirtyPages: p.TrackDirtyPages || p.EnableDiffSnapshots, Console: c.opts.Console,
		NetworkOverrides: overrides, VsockUDSPath: vsockPath,
	})
	if err != nil {
		return fault("Failed to load the snapshot: %v", err)
	}
	if !c.opts.AllowEmulated {
		if virt, err := host.Detect(); err == nil && !virt.Hardware() {
			err := errors.Join(m.Close())
			return fault("Failed to load the snapshot: %v: %s%s", host.ErrNoHardwareVirt, virt.Explanation(), errText(err))
		}
	}
	spec := c.opts.ConsoleInput
	if spec == "" {
		spec = "none"
	}
	in, err := console.Open(spec, console.Options{Sink: m.Console().Receive, Quit: m.Stop, Stdin: os.Stdin})
	if err != nil {
		return fault("Failed to load the snapshot: %v%s", err, errText(m.Close()))
	}
	c.m, c.started, c.paused = m, true, true
	// The restored devices, for GET /vm/config and the PATCHes (a
	// clone's balloon target, its rate limits).
	c.res = restoredResources(m.Config())
	if st, err := m.Balloon(); err == nil && c.res.Balloon != nil {
		c.res.Balloon.AmountMiB = uint64(st.TargetPages) / (1 << 20 / balloon.PageSize)
	}
	c.log.Infof("Loaded the snapshot %s", p.SnapshotPath)
	go c.run(m, in)
	if p.ResumeVM {
		m.Resume()
		c.paused = false
	}
	return nil
}
