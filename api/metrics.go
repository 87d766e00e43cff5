package api

import (
	"encoding/json"
	"fmt"
	"os"
	"sync"
	"time"
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
