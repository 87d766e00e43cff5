package i8042

import (
	"sync"
	"time"
)

// ProgressPortAddr is the PC POST-code port. Firmware writes boot stage
// codes there; Linux writes it as an I/O delay (outb_p) until it finds it
// runs on KVM; a guest init can write markers to time its own boot.
const ProgressPortAddr = 0x80

// MaxProgressRecords bounds the records a ProgressPort keeps.
const MaxProgressRecords = 4096

// ProgressRecord is one guest write to the progress port.
type ProgressRecord struct {
	Value byte
	// Since is the time from the port's creation to the write, on the
	// monotonic clock.
	Since time.Duration
}

// ProgressPort records guest writes to port 0x80 with their time. It
// keeps the most recent MaxProgressRecords writes: a late boot marker
// matters more than the I/O-delay writes of early boot. It implements
// bus.Device (one port) and is safe for concurrent use.
type ProgressPort struct {
	start   time.Time
	onWrite func(value byte, since time.Duration)

	mu      sync.Mutex
	records []ProgressRecord // ring once full; next is the oldest then
	next    int
	total   uint64
	last    byte
}

// NewProgressPort returns a port whose clock starts now. onWrite, when not
// nil, is called on the writing vCPU's thread for every write, possibly
// from several vCPUs at once; it must be quick and must not block.
func NewProgressPort(onWrite func(value byte, since time.Duration)) *ProgressPort {
	return &ProgressPort{start: time.Now(), onWrite: onWrite, last: unclaimedRead}
}

// Read returns the last value written, as many chipsets' POST-code latches
// do (0xff before any write).
func (p *ProgressPort) Read(offset uint64, data []byte) {
	p.mu.Lock()
	last := p.last
	p.mu.Unlock()
	for i := range data {
		data[i] = unclaimedRead
		if offset+uint64(i) == 0 {
			data[i] = last
		}
	}
}

// Write records the byte written at offset 0; a wider write records its
// first byte only (the port is one byte wide).
func (p *ProgressPort) Write(offset uint64, data []byte) {
	if offset != 0 || len(data) == 0 {
		return
	}
	rec := ProgressRecord{Value: data[0], Since: time.Since(p.start)}
	p.mu.Lock()
	p.last = rec.Value
	p.total++
	if len(p.records) < MaxProgressRecords {
		p.records = append(p.records, rec)
	} else {
		p.records[p.next] = rec
		p.next = (p.next + 1) % MaxProgressRecords
	}
	p.mu.Unlock()
	if p.onWrite != nil {
		p.onWrite(rec.Value, rec.Since)
	}
}

// Records returns a copy of the kept records, oldest first.
func (p *ProgressPort) Records() []ProgressRecord {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]ProgressRecord, 0, len(p.records))
	out = append(out, p.records[p.next:]...)
	return append(out, p.records[:p.next]...)
}

// Dropped returns how many writes were evicted from the records.
func (p *ProgressPort) Dropped() uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.total - uint64(len(p.records))
}
