package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"unicode"
)

// Request is one parsed API call: a value of one of the types below.
// ParseRequest checks its shape (JSON types, required fields, IDs);
// Controller.Handle checks its values against the VM's state.
type Request interface{ kind() string }

// The requests, one type per Firecracker action.
type (
	GetInstanceInfo       struct{}
	GetVersion            struct{}
	GetMachineConfig      struct{}
	GetVMConfig           struct{}
	PutMachineConfig      struct{ Config MachineConfig }
	PatchMachineConfig    struct{ Update MachineConfigUpdate }
	PutBootSource         struct{ Source BootSource }
	PutDrive              struct{ Drive Drive }
	PatchDrive            struct{ Update DriveUpdate }
	PutNetworkInterface   struct{ Iface NetworkInterface }
	PatchNetworkInterface struct{ Update NetworkInterfaceUpdate }
	PutEntropy            struct{ Entropy Entropy }
	PutVsock              struct{ Vsock Vsock }
	PutBalloon            struct{ Balloon Balloon }
	PatchBalloon          struct{ Update BalloonUpdate }
	GetBalloon            struct{}
	GetBalloonStats       struct{}
	PatchBalloonStats     struct{ Update BalloonStatsUpdate }
	PutLogger             struct{ Logger Logger }
	PutMetrics            struct{ Metrics Metrics }
	InstanceStart         struct{}
	SendCtrlAltDel        struct{}
	FlushMetrics          struct{}
	// Unsupported is an endpoint Firecracker has and vmm does not yet
	// (balloon, snapshots, MMDS ...): answered 400.
	Unsupported struct{ Reason string }
)

func (GetInstanceInfo) kind() string       { return "GetInstanceInfo" }
func (GetVersion) kind() string            { return "GetVersion" }
func (GetMachineConfig) kind() string      { return "GetMachineConfig" }
func (GetVMConfig) kind() string           { return "GetVMConfig" }
func (PutMachineConfig) kind() string      { return "PutMachineConfig" }
func (PatchMachineConfig) kind() string    { return "PatchMachineConfig" }
func (PutBootSource) kind() string         { return "PutBootSource" }
func (PutDrive) kind() string              { return "PutDrive" }
func (PatchDrive) kind() string            { return "PatchDrive" }
func (PutNetworkInterface) kind() string   { return "PutNetworkInterface" }
func (PatchNetworkInterface) kind() string { return "PatchNetworkInterface" }
func (PutEntropy) kind() string            { return "PutEntropy" }
func (PutVsock) kind() string              { return "PutVsock" }
func (PutBalloon) kind() string            { return "PutBalloon" }
func (PatchBalloon) kind() string          { return "PatchBalloon" }
func (GetBalloon) kind() string            { return "GetBalloon" }
func (GetBalloonStats) kind() string       { return "GetBalloonStats" }
func (PatchBalloonStats) kind() string     { return "PatchBalloonStats" }
func (PutLogger) kind() string             { return "PutLogger" }
func (PutMetrics) kind() string            { return "PutMetrics" }
func (InstanceStart) kind() string         { return "InstanceStart" }
func (SendCtrlAltDel) kind() string        { return "SendCtrlAltDel" }
func (FlushMetrics) kind() string          { return "FlushMetrics" }
func (Unsupported) kind() string           { return "Unsupported" }

// ErrBadRequest marks every error a client caused; the server answers it
// with 400 and the error's text as fault_message.
var ErrBadRequest = errors.New("bad request")

// badRequest is a client error whose text is the fault message as is.
type badRequest struct{ msg string }

func (e *badRequest) Error() string { return e.msg }
func (e *badRequest) Unwrap() error { return ErrBadRequest }

func fault(format string, args ...any) error {
	return &badRequest{msg: fmt.Sprintf(format, args...)}
}

// Refusals with Firecracker's wording (src/vmm/src/rpc_interface.rs,
// src/firecracker/src/api_server/parsed_request.rs), which clients match.
const (
	msgPostBoot   = "The requested operation is not supported after starting the microVM."
	msgPreBoot    = "The requested operation is not supported before starting the microVM."
	msgIDMismatch = "The id from the path does not match the id from the body!"
	msgEmptyID    = "The ID cannot be empty."
	msgInvalidID  = "API Resource IDs can only contain alphanumeric characters and underscores."
)

// ParseRequest turns one HTTP request into a Request. body is nil or
// empty when the request had none.
func ParseRequest(method, path string, body []byte) (Request, error) {
	tokens := strings.Split(strings.Trim(path, "/"), "/")
	if len(tokens) == 1 && tokens[0] == "" {
		tokens = nil
	}
	head, id := "", ""
	if len(tokens) > 0 {
		head = tokens[0]
	}
	if len(tokens) > 1 {
		id = tokens[1]
	}
	invalid := fault("Invalid request method and/or path: %s %s.", method, path)
	if len(tokens) > 2 {
		return nil, invalid
	}
	// Like Firecracker, a GET may not carry a body and a PUT or PATCH
	// must.
	has := len(body) > 0
	switch method {
	case http.MethodGet:
		if has {
			return nil, fault("GET request cannot have a body.")
		}
	case http.MethodPut:
		if !has {
			return nil, fault("Empty PUT request.")
		}
	case http.MethodPatch:
		if !has && head != "balloon" {
			return nil, fault("Empty PATCH request.")
		}
	default:
		return nil, invalid
	}
	// Endpoints without a resource ID take no second path token.
	noID := func(r Request) (Request, error) {
		if len(tokens) > 1 {
			return nil, invalid
		}
		return r, nil
	}

	switch method + " " + head {
	case "GET ":
		return GetInstanceInfo{}, nil
	case "GET version":
		return noID(GetVersion{})
	case "GET machine-config":
		return noID(GetMachineConfig{})
	case "GET vm":
		if id != "config" {
			return nil, invalid
		}
		return GetVMConfig{}, nil
	case "PUT machine-config":
		c, err := parseMachineConfig(body)
		if err != nil {
			return nil, err
		}
		return noID(PutMachineConfig{c})
	case "PATCH machine-config":
		var u MachineConfigUpdate
		if err := decode(body, &u); err != nil {
			return nil, err
		}
		if u == (MachineConfigUpdate{}) {
			return nil, fault("Empty PATCH request.")
		}
		return noID(PatchMachineConfig{u})
	case "PUT boot-source":
		var b BootSource
		if err := decode(body, &b); err != nil {
			return nil, err
		}
		return noID(PutBootSource{b})
	case "PUT drives":
		if err := checkID(id); err != nil {
			return nil, err
		}
		d, err := parseDrive(body)
		if err != nil {
			return nil, err
		}
		if d.DriveID != id {
			return nil, fault(msgIDMismatch)
		}
		return PutDrive{d}, nil
	case "PATCH drives":
		if err := checkID(id); err != nil {
			return nil, err
		}
		var u DriveUpdate
		if err := decode(body, &u); err != nil {
			return nil, err
		}
		if u.DriveID != id {
			return nil, fault(msgIDMismatch)
		}
		if err := checkLimiter("rate_limiter", u.RateLimiter); err != nil {
			return nil, err
		}
		return PatchDrive{u}, nil
	case "PUT network-interfaces":
		if err := checkID(id); err != nil {
			return nil, err
		}
		n, err := parseNetworkInterface(body)
		if err != nil {
			return nil, err
		}
		if n.IfaceID != id {
			return nil, fault(msgIDMismatch)
		}
		return PutNetworkInterface{n}, nil
	case "PATCH network-interfaces":
		if err := checkID(id); err != nil {
			return nil, err
		}
		var u NetworkInterfaceUpdate
		if err := decode(body, &u); err != nil {
			return nil, err
		}
		if u.IfaceID != id {
			return nil, fault(msgIDMismatch)
		}
		for _, l := range []struct {
			name string
			rl   *RateLimiter
		}{{"rx_rate_limiter", u.RxRateLimiter}, {"tx_rate_limiter", u.TxRateLimiter}} {
			if err := checkLimiter(l.name, l.rl); err != nil {
				return nil, err
			}
		}
		return PatchNetworkInterface{u}, nil
	case "PUT balloon":
		b, err := parseBalloon(body)
		if err != nil {
			return nil, err
		}
		return noID(PutBalloon{b})
	case "GET balloon", "PATCH balloon":
		switch {
		case id == "" && method == http.MethodGet:
			return GetBalloon{}, nil
		case id == "statistics" && len(tokens) == 2 && method == http.MethodGet:
			return GetBalloonStats{}, nil
		case id == "":
			var b struct {
				AmountMiB *uint64 `json:"amount_mib"`
			}
			if err := decode(body, &b); err != nil {
				return nil, err
			}
			if b.AmountMiB == nil {
				return nil, missing("amount_mib")
			}
			return PatchBalloon{BalloonUpdate{AmountMiB: *b.AmountMiB}}, nil
		case id == "statistics" && len(tokens) == 2:
			var b struct {
				Interval *uint64 `json:"stats_polling_interval_s"`
			}
			if err := decode(body, &b); err != nil {
				return nil, err
			}
			if b.Interval == nil {
				return nil, missing("stats_polling_interval_s")
			}
			return PatchBalloonStats{BalloonStatsUpdate{StatsPollingIntervalS: *b.Interval}}, nil
		}
		return nil, invalid
	case "PUT vsock":
		vs, err := parseVsock(body)
		if err != nil {
			return nil, err
		}
		return noID(PutVsock{vs})
	case "PUT entropy":
		e, err := parseEntropy(body)
		if err != nil {
			return nil, err
		}
		return noID(PutEntropy{e})
	case "PUT logger":
		var l Logger
		if err := decode(body, &l); err != nil {
			return nil, err
		}
		if l.Level != nil {
			if _, err := parseLevel(*l.Level); err != nil {
				return nil, err
			}
		}
		return noID(PutLogger{l})
	case "PUT metrics":
		var m struct {
			MetricsPath *string `json:"metrics_path"`
		}
		if err := decode(body, &m); err != nil {
			return nil, err
		}
		if m.MetricsPath == nil {
			return nil, jsonFault(errors.New("missing field `metrics_path`"))
		}
		return noID(PutMetrics{Metrics{MetricsPath: *m.MetricsPath}})
	case "PUT actions":
		var a Action
		if err := decode(body, &a); err != nil {
			return nil, err
		}
		switch a.ActionType {
		case ActionInstanceStart:
			return noID(InstanceStart{})
		case ActionSendCtrlAltDel:
			return noID(SendCtrlAltDel{})
		case ActionFlushMetrics:
			return noID(FlushMetrics{})
		}
		return nil, jsonFault(fmt.Errorf("unknown variant `%s`, expected one of `%s`, `%s`, `%s`",
			a.ActionType, ActionFlushMetrics, ActionInstanceStart, ActionSendCtrlAltDel))
	}

	// Endpoints of Firecracker that vmm does not serve yet: a clear
	// refusal, not "invalid path", so a client sees what is missing.
	switch head {
	case "snapshot":
		if r, ok, err := parseSnapshotRequest(method, tokens, body); ok {
			return r, err
		}
	case "vm":
		if r, ok, err := parseVMRequest(method, tokens, body); ok {
			return r, err
		}
	case "mmds":
		return Unsupported{"MMDS is not supported yet"}, nil
	case "cpu-config":
		return Unsupported{"custom CPU templates are not supported yet"}, nil
	}
	return nil, invalid
}

// decode reads exactly one JSON value into v, refusing unknown fields and
// trailing data, as Firecracker's serde(deny_unknown_fields) does.
func decode(body []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return jsonFault(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return jsonFault(errors.New("trailing data after the JSON value"))
	}
	return nil
}

func jsonFault(err error) error {
	return fault("An error occurred when deserializing the json body of a request: %v.", err)
}

func missing(field string) error {
	return jsonFault(fmt.Errorf("missing field `%s`", field))
}

// checkID applies Firecracker's rule for resource IDs in paths.
func checkID(id string) error {
	if id == "" {
		return fault(msgEmptyID)
	}
	for _, r := range id {
		if r != '_' && !unicode.IsLetter(r) && !unicode.IsDigit(r) {
			return fault(msgInvalidID)
		}
	}
	return nil
}

func parseMachineConfig(body []byte) (MachineConfig, error) {
	var b machineConfigBody
	if err := decode(body, &b); err != nil {
		return MachineConfig{}, err
	}
	if b.VCPUCount == nil {
		return MachineConfig{}, missing("vcpu_count")
	}
	if b.MemSizeMiB == nil {
		return MachineConfig{}, missing("mem_size_mib")
	}
	c := MachineConfig{VCPUCount: *b.VCPUCount, MemSizeMiB: *b.MemSizeMiB}
	if b.SMT != nil {
		c.SMT = *b.SMT
	}
	if b.TrackDirtyPages != nil {
		c.TrackDirtyPages = *b.TrackDirtyPages
	}
	if b.HugePages != nil {
		c.HugePages = *b.HugePages
	}
	if b.CPUTemplate != nil {
		c.CPUTemplate = *b.CPUTemplate
	}
	return c, nil
}

func parseDrive(body []byte) (Drive, error) {
	var b driveBody
	if err := decode(body, &b); err != nil {
		return Drive{}, err
	}
	switch {
	case b.DriveID == nil:
		return Drive{}, missing("drive_id")
	case b.IsRootDevice == nil:
		return Drive{}, missing("is_root_device")
	}
	d := Drive{DriveID: *b.DriveID, IsRootDevice: *b.IsRootDevice, RateLimiter: b.RateLimiter}
	// path_on_host is optional in the swagger only for vhost-user
	// drives, which vmm does not have.
	if b.PathOnHost == nil {
		return Drive{}, missing("path_on_host")
	}
	d.PathOnHost = *b.PathOnHost
	if b.IsReadOnly != nil {
		d.IsReadOnly = *b.IsReadOnly
	}
	if b.PartUUID != nil {
		d.PartUUID = *b.PartUUID
	}
	d.CacheType = "Unsafe"
	if b.CacheType != nil {
		d.CacheType = *b.CacheType
	}
	if d.CacheType != "Unsafe" && d.CacheType != "Writeback" {
		return Drive{}, jsonFault(fmt.Errorf("unknown variant `%s`, expected `Unsafe` or `Writeback`", d.CacheType))
	}
	d.IOEngine = "Sync"
	if b.IOEngine != nil {
		d.IOEngine = *b.IOEngine
	}
	if d.IOEngine != "Sync" && d.IOEngine != "Async" {
		return Drive{}, jsonFault(fmt.Errorf("unknown variant `%s`, expected `Sync` or `Async`", d.IOEngine))
	}
	if err := checkLimiter("rate_limiter", d.RateLimiter); err != nil {
		return Drive{}, err
	}
	return d, nil
}

func parseBalloon(body []byte) (Balloon, error) {
	var b struct {
		AmountMiB    *uint64 `json:"amount_mib"`
		DeflateOnOOM *bool   `json:"deflate_on_oom"`
		Interval     *uint64 `json:"stats_polling_interval_s"`
	}
	if err := decode(body, &b); err != nil {
		return Balloon{}, err
	}
	switch {
	case b.AmountMiB == nil:
		return Balloon{}, missing("amount_mib")
	case b.DeflateOnOOM == nil:
		return Balloon{}, missing("deflate_on_oom")
	}
	bl := Balloon{AmountMiB: *b.AmountMiB, DeflateOnOOM: *b.DeflateOnOOM}
	if b.Interval != nil {
		bl.StatsPollingIntervalS = *b.Interval
	}
	return bl, nil
}

func parseVsock(body []byte) (Vsock, error) {
	var b struct {
		VsockID  *string `json:"vsock_id"`
		GuestCID *uint32 `json:"guest_cid"`
		UDSPath  *string `json:"uds_path"`
	}
	if err := decode(body, &b); err != nil {
		return Vsock{}, err
	}
	switch {
	case b.GuestCID == nil:
		return Vsock{}, missing("guest_cid")
	case b.UDSPath == nil:
		return Vsock{}, missing("uds_path")
	}
	vs := Vsock{GuestCID: *b.GuestCID, UDSPath: *b.UDSPath}
	if b.VsockID != nil {
		vs.VsockID = *b.VsockID
	}
	return vs, nil
}

func parseEntropy(body []byte) (Entropy, error) {
	var e Entropy
	if err := decode(body, &e); err != nil {
		return Entropy{}, err
	}
	if err := checkLimiter("rate_limiter", e.RateLimiter); err != nil {
		return Entropy{}, err
	}
	return e, nil
}

func parseNetworkInterface(body []byte) (NetworkInterface, error) {
	var b struct {
		IfaceID       *string      `json:"iface_id"`
		HostDevName   *string      `json:"host_dev_name"`
		GuestMAC      *string      `json:"guest_mac"`
		RxRateLimiter *RateLimiter `json:"rx_rate_limiter"`
		TxRateLimiter *RateLimiter `json:"tx_rate_limiter"`
	}
	if err := decode(body, &b); err != nil {
		return NetworkInterface{}, err
	}
	switch {
	case b.IfaceID == nil:
		return NetworkInterface{}, missing("iface_id")
	case b.HostDevName == nil:
		return NetworkInterface{}, missing("host_dev_name")
	}
	n := NetworkInterface{IfaceID: *b.IfaceID, HostDevName: *b.HostDevName,
		RxRateLimiter: b.RxRateLimiter, TxRateLimiter: b.TxRateLimiter}
	if b.GuestMAC != nil {
		n.GuestMAC = *b.GuestMAC
	}
	for _, l := range []struct {
		name string
		rl   *RateLimiter
	}{{"rx_rate_limiter", n.RxRateLimiter}, {"tx_rate_limiter", n.TxRateLimiter}} {
		if err := checkLimiter(l.name, l.rl); err != nil {
			return NetworkInterface{}, err
		}
	}
	return n, nil
}

// checkLimiter validates a rate limiter's shape as Firecracker does: each
// bucket given needs size and refill_time; a bucket with size 0 or
// refill_time 0 limits nothing (Firecracker's TokenBucket::new returns
// None). The numbers must fit the token arithmetic.
func checkLimiter(name string, rl *RateLimiter) error {
	if rl == nil {
		return nil
	}
	for _, b := range []*TokenBucket{rl.Bandwidth, rl.Ops} {
		if b == nil {
			continue
		}
		if b.Size == nil {
			return missing("size")
		}
		if b.RefillTime == nil {
			return missing("refill_time")
		}
	}
	if err := limiterConfig(rl).Validate(); err != nil {
		return fault("%s: %v", name, err)
	}
	return nil
}
