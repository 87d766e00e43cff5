// Package balloon is a virtio memory balloon (virtio 1.2 §5.5): the host
// sets a target in pages, the guest's driver gives that many pages up on
// the inflate queue, and the device hands them back to the host
// (memory.Discard: MADV_DONTNEED, so the VMM's RSS falls). Pages the
// guest takes back on the deflate queue fault in again, zeroed. With
// VIRTIO_BALLOON_F_STATS_VQ the driver reports memory statistics, which
// the device asks for every StatsInterval.
package balloon

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vmm-dev/vmm/devices/virtio"
	"github.com/vmm-dev/vmm/memory"
)

// Queues (virtio 1.2 §5.5.2).
const (
	InflateQueue = 0
	DeflateQueue = 1
	StatsQueue   = 2
	QueueSize    = 256
)

// Feature bits (virtio 1.2 §5.5.3).
const (
	FeatureMustTellHost = 1 << 0 // VIRTIO_BALLOON_F_MUST_TELL_HOST
	FeatureStatsVQ      = 1 << 1 // VIRTIO_BALLOON_F_STATS_VQ
	FeatureDeflateOnOOM = 1 << 2 // VIRTIO_BALLOON_F_DEFLATE_ON_OOM
)

// PageSize is the balloon's page: PFNs are guest addresses >> 12
// (VIRTIO_BALLOON_PFN_SHIFT), whatever the guest's own page size.
const PageSize = 4096

// struct virtio_balloon_config (§5.5.4): le32 num_pages (the device's
// target), le32 actual (the driver's count).
const (
	configNumPages = 0
	configActual   = 4
	configSize     = 8
)

// Statistic tags (§5.5.6.3).
const (
	TagSwapIn      = 0
	TagSwapOut     = 1
	TagMajFlt      = 2
	TagMinFlt      = 3
	TagMemFree     = 4
	TagMemTot      = 5
	TagAvail       = 6
	TagCaches      = 7
	TagHTLBPgAlloc = 8
	TagHTLBPgFail  = 9
	statSize       = 10 // le16 tag, le64 val, packed
)

// Sentinel errors.
var (
	// ErrActive: Activate on a device that is already running.
	ErrActive = errors.New("balloon already active")
)

// Config configures a Balloon.
type Config struct {
	// TargetPages is the initial target (num_pages).
	TargetPages uint32
	// DeflateOnOOM offers VIRTIO_BALLOON_F_DEFLATE_ON_OOM: the guest
	// may take pages back when it runs out of memory.
	DeflateOnOOM bool
	// StatsInterval, when positive, offers the statistics queue and
	// asks for fresh statistics that often.
	StatsInterval time.Duration
}

// Stats is the last statistics report, by tag; Valid says which tags
// the driver sent.
type Stats struct {
	Values  [10]uint64
	Valid   [10]bool
	Updated time.Time
}

// Balloon is a virtio balloon. It implements virtio.Device.
type Balloon struct {
	deflateOnOOM bool
	statsOffered bool

	mu       sync.Mutex
	target   uint32
	actual   uint32
	interval time.Duration
	stats    Stats
	workers  []*virtio.Worker
	statsRun *statsLoop

	inflated, deflated, badPFNs atomic.Uint64
}

var _ virtio.Device = (*Balloon)(nil)

// New returns a balloon.
func New(cfg Config) *Balloon {
	return &Balloon{target: cfg.TargetPages, deflateOnOOM: cfg.DeflateOnOOM,
		statsOffered: cfg.StatsInterval > 0, interval: cfg.StatsInterval}
}

// Type implements virtio.Device.
func (b *Balloon) Type() virtio.DeviceType { return virtio.DeviceBalloon }

// Features implements virtio.Device. MUST_TELL_HOST is not offered: the
// device needs no notice before the guest reuses a deflated page.
func (b *Balloon) Features() uint64 {
	var f uint64
	if b.statsOffered {
		f |= FeatureStatsVQ
	}
	if b.deflateOnOOM {
		f |= FeatureDeflateOnOOM
	}
	return f
}

// QueueMaxSizes implements virtio.Device.
func (b *Balloon) QueueMaxSizes() []uint16 {
	if b.statsOffered {
		return []uint16{QueueSize, QueueSize, QueueSize}
	}
	return []uint16{QueueSize, QueueSize}
}

// ReadConfig implements virtio.Device.
func (b *Balloon) ReadConfig(offset uint64, data []byte) {
	var cfg [configSize]byte
	b.mu.Lock()
	binary.LittleEndian.PutUint32(cfg[configNumPages:], b.target)
	binary.LittleEndian.PutUint32(cfg[configActual:], b.actual)
	b.mu.Unlock()
	clear(data)
	if offset < configSize {
		copy(data, cfg[offset:])
	}
}

// WriteConfig implements virtio.Device: the driver writes actual
// (§5.5.6); num_pages is the device's.
func (b *Balloon) WriteConfig(offset uint64, data []byte) {
	if offset < configActual || offset >= configSize {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	var cfg [configSize]byte
	binary.LittleEndian.PutUint32(cfg[configActual:], b.actual)
	copy(cfg[offset:], data)
	b.actual = binary.LittleEndian.Uint32(cfg[configActual:])
}

// SetTarget sets num_pages. The caller then signals a configuration
// change through the transport (§5.5.6: the driver re-reads num_pages on
// it).
func (b *Balloon) SetTarget(pages uint32) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.target = pages
}

// Target returns num_pages; Actual what the driver last reported.
func (b *Balloon) Target() uint32 { b.mu.Lock(); defer b.mu.Unlock(); return b.target }

// Actual returns the pages the driver says it holds.
func (b *Balloon) Actual() uint32 { b.mu.Lock(); defer b.mu.Unlock(); return b.actual }

// DeflateOnOOM reports whether the feature is offered.
func (b *Balloon) DeflateOnOOM() bool { return b.deflateOnOOM }

// StatsInterval returns how often statistics are asked for (0: never).
func (b *Balloon) StatsInterval() time.Duration { b.mu.Lock(); defer b.mu.Unlock(); return b.interval }

// SetStatsInterval changes the polling interval; it must stay positive
// when statistics were offered, and zero when they were not (the feature
// cannot change after negotiation, as in Firecracker).
func (b *Balloon) SetStatsInterval(d time.Duration) error {
	if (d > 0) != b.statsOffered {
		return fmt.Errorf("balloon: statistics were %s at start; the interval cannot turn them %s",
			map[bool]string{true: "on", false: "off"}[b.statsOffered], map[bool]string{true: "on", false: "off"}[d > 0])
	}
	b.mu.Lock()
	b.interval = d
	s := b.statsRun
	b.mu.Unlock()
	if s != nil {
		s.retime()
	}
	return nil
}

// Stats returns the last statistics report.
func (b *Balloon) Stats() Stats { b.mu.Lock(); defer b.mu.Unlock(); return b.stats }

// Counters are what the device did since it was created.
type Counters struct {
	InflatedPages, DeflatedPages, BadPFNs uint64
}

// Counters returns the counters.
func (b *Balloon) Counters() Counters {
	return Counters{b.inflated.Load(), b.deflated.Load(), b.badPFNs.Load()}
}

// Activate implements virtio.Device.
func (b *Balloon) Activate(act virtio.Activation) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.workers != nil {
		return ErrActive
	}
	inflate, err := virtio.StartWorker(act, InflateQueue, func(c *virtio.Chain) (uint32, error) {
		b.pages(act.Memory, c, true)
		return 0, nil
	})
	if err != nil {
		return fmt.Errorf("balloon: inflate queue: %w", err)
	}
	deflate, err := virtio.StartWorker(act, DeflateQueue, func(c *virtio.Chain) (uint32, error) {
		b.pages(act.Memory, c, false)
		return 0, nil
	})
	if err != nil {
		inflate.Stop()
		return fmt.Errorf("balloon: deflate queue: %w", err)
	}
	b.workers = []*virtio.Worker{inflate, deflate}
	if act.Features&FeatureStatsVQ != 0 && StatsQueue < len(act.Queues) && act.Queues[StatsQueue] != nil {
		b.statsRun = startStats(b, act)
	}
	return nil
}

// Reset implements virtio.Device: the workers stop, and the driver's
// count of its pages is forgotten with the driver's state.
func (b *Balloon) Reset() {
	b.stop()
	b.mu.Lock()
	b.actual = 0
	b.mu.Unlock()
}

// Quiesce implements virtio.Quiescer: the workers stop (the statistics
// buffer the device held goes back to its ring) and the target and the
// driver's count stay, for a snapshot.
func (b *Balloon) Quiesce() { b.stop() }

func (b *Balloon) stop() {
	b.mu.Lock()
	ws, s := b.workers, b.statsRun
	b.workers, b.statsRun = nil, nil
	b.mu.Unlock()
	if s != nil {
		s.stop()
	}
	for _, w := range ws {
		w.Stop()
	}
}

// State is what a snapshot keeps of the device beyond its transport's
// queues: the target, the driver's count and the polling interval.
type State struct {
	TargetPages   uint32
	ActualPages   uint32
	StatsInterval time.Duration
}

// Save returns the state; the device is quiesced or was never active.
func (b *Balloon) Save() State {
	b.mu.Lock()
	defer b.mu.Unlock()
	return State{TargetPages: b.target, ActualPages: b.actual, StatsInterval: b.interval}
}

// Restore loads a saved state into a device built with the same Config
// and not activated yet.
func (b *Balloon) Restore(s State) error {
	if (s.StatsInterval > 0) != b.statsOffered || s.StatsInterval < 0 {
		return fmt.Errorf("%w: balloon: statistics interval %v with statistics %s",
			virtio.ErrState, s.StatsInterval, map[bool]string{true: "offered", false: "not offered"}[b.statsOffered])
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.workers != nil {
		return fmt.Errorf("%w: balloon: restore into a running device", virtio.ErrState)
	}
	b.target, b.actual, b.interval = s.TargetPages, s.ActualPages, s.StatsInterval
	return nil
}

// pages takes a chain of le32 PFNs (§5.5.6.1). Inflated pages go back to
// the host, runs of neighbours in one call; deflated ones need nothing
// (they fault in again). A PFN outside guest RAM is counted and skipped:
// it can only hurt the guest that sent it.
func (b *Balloon) pages(mem *memory.Memory, c *virtio.Chain, inflate bool) {
	var run, runLen uint64 // a run of contiguous PFNs
	flush := func() {
		if runLen == 0 || !inflate {
			return
		}
		if err := mem.Discard(memory.GuestAddr(run*PageSize), runLen*PageSize); err != nil {
			if b.badPFNs.Add(runLen) == runLen {
				slog.Warn("virtio-balloon: inflated pages outside guest RAM skipped (first occurrence)", "err", err)
			}
		} else {
			b.inflated.Add(runLen)
		}
		runLen = 0
	}
	var carry [4]byte
	have := 0
	for _, buf := range c.Readable {
		for len(buf) > 0 {
			k := copy(carry[have:], buf)
			have += k
			buf = buf[k:]
			if have < 4 {
				continue
			}
			have = 0
			pfn := uint64(binary.LittleEndian.Uint32(carry[:]))
			if !inflate {
				b.deflated.Add(1)
				continue
			}
			if runLen > 0 && pfn == run+runLen {
				runLen++
				continue
			}
			flush()
			run, runLen = pfn, 1
		}
	}
	flush()
}

// statsLoop serves the statistics queue (§5.5.6.3): the driver keeps one
// buffer there; the device reads it, holds it, and returns it when it
// wants a fresh report, which the driver then sends in the same buffer.
type statsLoop struct {
	b     *Balloon
	act   virtio.Activation
	q     *virtio.Queue
	kick  *virtio.EventFD
	quit  atomic.Bool
	stopc chan struct{}
	tick  chan struct{} // capacity 1: the interval changed
	done  chan struct{}
}

func startStats(b *Balloon, act virtio.Activation) *statsLoop {
	s := &statsLoop{b: b, act: act, q: act.Queues[StatsQueue], kick: act.Kicks[StatsQueue],
		stopc: make(chan struct{}), tick: make(chan struct{}, 1), done: make(chan struct{})}
	go s.run()
	return s
}

func (s *statsLoop) retime() {
	select {
	case s.tick <- struct{}{}:
	default:
	}
}

func (s *statsLoop) stop() {
	s.quit.Store(true)
	close(s.stopc)
	_ = s.kick.Signal() // a closed eventfd ends the wait too
	<-s.done
}

func (s *statsLoop) run() {
	defer close(s.done)
	var c virtio.Chain
	for !s.quit.Load() {
		ok, err := s.q.Pop(&c)
		if err != nil {
			s.act.Fail(fmt.Errorf("statistics queue: %w", err))
			return
		}
		if !ok {
			more, err := s.q.EnableNotification()
			if err != nil {
				s.act.Fail(fmt.Errorf("statistics queue: %w", err))
				return
			}
			if !more {
				if _, err := s.kick.Wait(); err != nil {
					return
				}
			}
			continue
		}
		s.b.record(c.Readable)
		// Hold the buffer until the next poll.
		for {
			t := time.NewTimer(s.b.StatsInterval())
			select {
			case <-t.C:
			case <-s.tick:
				t.Stop()
				continue
			case <-s.stopc:
				t.Stop()
				// The driver's buffer goes back to the ring: a device
				// started again on the same queues (after a quiesce for
				// a snapshot, or in a restored VM) takes it anew.
				s.q.Rewind(1)
				return
			}
			break
		}
		if err := s.q.Push(c.Head, 0); err != nil {
			s.act.Fail(fmt.Errorf("statistics queue: %w", err))
			return
		}
		if err := s.act.SignalUsed(s.q); err != nil {
			s.act.Fail(fmt.Errorf("statistics queue: %w", err))
			return
		}
	}
}

// record parses a report: packed struct virtio_balloon_stat entries;
// unknown tags and a trailing partial entry are ignored.
func (b *Balloon) record(bufs [][]byte) {
	var raw []byte
	for _, x := range bufs {
		raw = append(raw, x...)
		if len(raw) > 64*statSize {
			break
		}
	}
	var st Stats
	for len(raw) >= statSize {
		tag := binary.LittleEndian.Uint16(raw)
		val := binary.LittleEndian.Uint64(raw[2:])
		raw = raw[statSize:]
		if int(tag) < len(st.Values) {
			st.Values[tag], st.Valid[tag] = val, true
		}
	}
	st.Updated = time.Now()
	b.mu.Lock()
	b.stats = st
	b.mu.Unlock()
}
