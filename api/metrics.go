package api

import (
	"encoding/json"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/vmm-dev/vmm/machine"
)

// MetricsWriter counts API requests and writes them, with the VM's exit
// counters, as one JSON object per line (Firecracker's metrics format:
// utc_timestamp_ms and groups of counters). Counters are reset by each
// flush, as Firecracker's SharedIncMetric are.
type MetricsWriter struct {
	mu   sync.Mutex
	file *os.File
	// Requests by group ("get_api_requests", ...) and counter name.
	groups map[string]map[string]uint64
}

// NewMetricsWriter returns metrics that go nowhere until Configure.
func NewMetricsWriter() *MetricsWriter { return &MetricsWriter{groups: map[string]map[string]uint64{}} }

// msgMetricsReinit: Firecracker's metrics can be set up once.
var msgMetricsReinit = "Reinitialization of metrics not allowed."

// Configure opens the metrics path (a file or a FIFO).
func (m *MetricsWriter) Configure(path string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.file != nil {
		return fault("%s", msgMetricsReinit)
	}
	f, err := openOutput(path)
	if err != nil {
		return fault("Cannot open the metrics file: %v", err)
	}
	m.file = f
	return nil
}

// Configured reports whether a metrics path is set.
func (m *MetricsWriter) Configured() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.file != nil
}

// Inc adds one to group.name.
func (m *MetricsWriter) Inc(group, name string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	g := m.groups[group]
	if g == nil {
		g = map[string]uint64{}
		m.groups[group] = g
	}
	g[name]++
}

// Flush writes one line with the counters and extra groups (the VM's
// exits), then resets the counters. Without a metrics path it does
// nothing, as Firecracker's METRICS.write does.
func (m *MetricsWriter) Flush(extra map[string]any) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.file == nil {
		return nil
	}
	line := map[string]any{"utc_timestamp_ms": time.Now().UnixMilli()}
	for k, v := range m.groups {
		line[k] = v
	}
	for k, v := range extra {
		line[k] = v
	}
	b, err := json.Marshal(line)
	if err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	if _, err := m.file.Write(append(b, '\n')); err != nil {
		return fault("Failed to write metrics: %v", err)
	}
	m.groups = map[string]map[string]uint64{}
	return nil
}

// Close closes the metrics file.
func (m *MetricsWriter) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.file == nil {
		return nil
	}
	err := m.file.Close()
	m.file = nil
	return err
}

// deviceMetrics turns the devices' counters into Firecracker's groups:
// "block" and "net" sum every device, "block_<drive_id>" and
// "net_<iface_id>" are each one's (src/vmm/src/logger/metrics.rs and the
// devices' metrics.rs: BlockDeviceMetrics, NetDeviceMetrics). The
// counters are what happened since prev, the previous flush, as
// Firecracker's SharedIncMetric reset on every write.
func deviceMetrics(cur, prev machine.DeviceStats, driveIDs, ifaceIDs []string) map[string]any {
	out := map[string]any{}
	block := map[string]uint64{}
	for i, d := range cur.Disks {
		var p machine.DiskStats
		if i < len(prev.Disks) {
			p = prev.Disks[i]
		}
		g := map[string]uint64{
			"read_bytes":                    d.ReadBytes - p.ReadBytes,
			"write_bytes":                   d.WriteBytes - p.WriteBytes,
			"read_count":                    d.ReadCount - p.ReadCount,
			"write_count":                   d.WriteCount - p.WriteCount,
			"flush_count":                   d.FlushCount - p.FlushCount,
			"invalid_reqs_count":            d.InvalidReqs - p.InvalidReqs,
			"execute_fails":                 d.ExecuteFails - p.ExecuteFails,
			"rate_limiter_throttled_events": d.RateLimiterThrottled - p.RateLimiterThrottled,
		}
		addInto(block, g)
		if i < len(driveIDs) {
			out["block_"+driveIDs[i]] = g
		}
	}
	if len(cur.Disks) > 0 {
		out["block"] = block
	}
	nets := map[string]uint64{}
	for i, n := range cur.NICs {
		var p machine.NICStats
		if i < len(prev.NICs) {
			p = prev.NICs[i]
		}
		g := map[string]uint64{
			"rx_bytes_count":            n.RXBytes - p.RXBytes,
			"rx_packets_count":          n.RXFrames - p.RXFrames,
			"rx_fails":                  n.RXErrors - p.RXErrors,
			"no_rx_avail_buffer":        n.RXStalls - p.RXStalls,
			"rx_rate_limiter_throttled": n.RXThrottled - p.RXThrottled,
			"tx_bytes_count":            n.TXBytes - p.TXBytes,
			"tx_packets_count":          n.TXFrames - p.TXFrames,
			"tx_fails":                  n.TXErrors - p.TXErrors,
			"tx_malformed_frames":       n.TXMalformed - p.TXMalformed,
			"tx_rate_limiter_throttled": n.TXThrottled - p.TXThrottled,
		}
		addInto(nets, g)
		if i < len(ifaceIDs) {
			out["net_"+ifaceIDs[i]] = g
		}
	}
	if len(cur.NICs) > 0 {
		out["net"] = nets
	}
	return out
}

func addInto(sum, g map[string]uint64) {
	for k, v := range g {
		sum[k] += v
	}
}
