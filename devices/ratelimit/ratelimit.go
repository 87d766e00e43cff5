// Package ratelimit is Firecracker's I/O rate limiter: two token buckets,
// one counting bytes (bandwidth) and one counting operations, each of
// Size tokens refilled evenly over RefillTime, with an extra OneTimeBurst
// spent first and never refilled.
//
// A device worker asks for tokens with Acquire before it serves a
// request; Acquire sleeps on a timer (never spins) until both buckets
// have them, so a limited device delays its requests in order and drops
// none. A request larger than a bucket waits for the bucket to be full,
// takes it all and leaves a debt that later requests wait out
// (Firecracker's over-consumption), so the long-run rate is the bucket's
// whatever the request sizes. Update swaps the buckets at run time
// (PATCH) and wakes every waiter, so a new limit applies at once.
package ratelimit

import (
	"errors"
	"fmt"
	"math"
	"math/bits"
	"sync"
	"sync/atomic"
	"time"
)

// ErrCanceled: Acquire or Wait gave up because its cancel channel closed.
var ErrCanceled = errors.New("rate limiter wait canceled")

// ErrConfig: a bucket whose numbers cannot be used.
var ErrConfig = errors.New("invalid rate limiter")

// Bucket configures one token bucket (Firecracker's TokenBucket: size,
// one_time_burst, refill_time in ms).
type Bucket struct {
	// Size is the bucket's capacity: the largest burst after an idle
	// period, and the tokens added per RefillTime.
	Size uint64
	// OneTimeBurst is spent before the bucket and never comes back.
	OneTimeBurst uint64
	// RefillTime is how long an empty bucket takes to fill.
	RefillTime time.Duration
}

// Unlimited reports whether the bucket limits nothing: as in Firecracker,
// a size or refill time of zero means no bucket at all.
func (b Bucket) Unlimited() bool { return b.Size == 0 || b.RefillTime <= 0 }

// Rate returns the bucket's sustained rate in tokens per second (0 when
// unlimited).
func (b Bucket) Rate() float64 {
	if b.Unlimited() {
		return 0
	}
	return float64(b.Size) / b.RefillTime.Seconds()
}

func (b Bucket) String() string {
	if b.Unlimited() {
		return "unlimited"
	}
	s := fmt.Sprintf("%d per %v", b.Size, b.RefillTime)
	if b.OneTimeBurst > 0 {
		s += fmt.Sprintf(" (+%d once)", b.OneTimeBurst)
	}
	return s
}

// Config is a rate limiter: a bandwidth bucket in bytes and an ops bucket
// in operations. The zero Config limits nothing.
type Config struct {
	Bandwidth Bucket
	Ops       Bucket
}

// Unlimited reports whether neither bucket limits anything.
func (c Config) Unlimited() bool { return c.Bandwidth.Unlimited() && c.Ops.Unlimited() }

// Validate refuses numbers the arithmetic cannot hold.
func (c Config) Validate() error {
	for _, b := range []struct {
		name string
		b    Bucket
	}{{"bandwidth", c.Bandwidth}, {"ops", c.Ops}} {
		if b.b.Unlimited() {
			continue
		}
		if b.b.Size > math.MaxInt64/2 || b.b.OneTimeBurst > math.MaxInt64/2 {
			return fmt.Errorf("%w: %s bucket %v: size and one_time_burst must be below 2^62", ErrConfig, b.name, b.b)
		}
	}
	return nil
}

func (c Config) String() string {
	return fmt.Sprintf("bandwidth %v bytes, ops %v", c.Bandwidth, c.Ops)
}

// Clock is the time source; tests inject a fake one.
type Clock interface {
	Now() time.Time
	// NewTimer returns a timer that fires once after d.
	NewTimer(d time.Duration) Timer
}

// Timer is a one-shot timer from a Clock.
type Timer interface {
	C() <-chan time.Time
	Stop() bool
}

// RealClock is the system's monotonic clock.
type RealClock struct{}

// Now implements Clock.
func (RealClock) Now() time.Time { return time.Now() }

// NewTimer implements Clock.
func (RealClock) NewTimer(d time.Duration) Timer { return realTimer{time.NewTimer(d)} }

type realTimer struct{ t *time.Timer }

func (t realTimer) C() <-chan time.Time { return t.t.C }
func (t realTimer) Stop() bool          { return t.t.Stop() }

// bucket is a Bucket's state. budget goes negative after an
// over-consumption: the debt later requests wait out.
type bucket struct {
	cfg    Bucket
	budget int64
	burst  uint64
	last   time.Time
	rem    uint64 // size*elapsed ns not yet worth a whole token
}

func newBucket(cfg Bucket, now time.Time) *bucket {
	if cfg.Unlimited() {
		return nil
	}
	return &bucket{cfg: cfg, budget: int64(cfg.Size), burst: cfg.OneTimeBurst, last: now}
}

// refill adds the tokens earned since the last refill, up to Size. While
// the one-time burst lasts nothing accrues: Firecracker starts refilling
// only once the burst is spent.
func (b *bucket) refill(now time.Time) {
	elapsed := now.Sub(b.last)
	if elapsed <= 0 {
		return
	}
	b.last = now
	if b.burst > 0 {
		b.rem = 0
		return
	}
	size, refill := b.cfg.Size, uint64(b.cfg.RefillTime)
	// tokens = (elapsed*size + rem) / refill, in 128 bits: a long idle
	// period times a big bucket overflows 64.
	hi, lo := bits.Mul64(uint64(elapsed), size)
	lo, carry := bits.Add64(lo, b.rem, 0)
	hi += carry
	if hi >= refill {
		b.budget, b.rem = int64(size), 0
		return
	}
	tokens, rem := bits.Div64(hi, lo, refill)
	if tokens >= uint64(int64(size)-b.budget) {
		b.budget, b.rem = int64(size), 0
		return
	}
	b.budget += int64(tokens)
	b.rem = rem
}

// need is what the budget must hold before n tokens (after the burst)
// may be taken: n itself, or a full bucket for a request larger than it.
func (b *bucket) need(n uint64) int64 {
	return int64(min(n, b.cfg.Size))
}

// check reports how long until n tokens can be taken (0: now).
func (b *bucket) check(n uint64) time.Duration {
	if n <= b.burst {
		return 0
	}
	n -= b.burst
	short := b.need(n) - b.budget
	if short <= 0 {
		return 0
	}
	// Time to earn short tokens, rounded up, less what rem already holds.
	// short >= 1 and rem < RefillTime, so this cannot go below zero.
	hi, lo := bits.Mul64(uint64(short), uint64(b.cfg.RefillTime))
	lo, borrow := bits.Sub64(lo, b.rem, 0)
	hi -= borrow
	if hi >= b.cfg.Size {
		return time.Duration(math.MaxInt64)
	}
	q, r := bits.Div64(hi, lo, b.cfg.Size)
	if r != 0 {
		q++
	}
	return time.Duration(max(q, 1))
}

// take spends n tokens; check(n) must have returned 0.
func (b *bucket) take(n uint64) {
	if n <= b.burst {
		b.burst -= n
		return
	}
	n -= b.burst
	b.burst = 0
	b.budget -= int64(min(n, math.MaxInt64/2))
}

// Limiter applies a Config to one device queue (or several: it is safe
// for concurrent use).
type Limiter struct {
	clock Clock

	mu      sync.Mutex
	cfg     Config
	bw, ops *bucket
	changed chan struct{} // closed and replaced by Update

	throttled atomic.Uint64
}

// New returns a limiter applying cfg; a nil clock means RealClock.
func New(cfg Config, clock Clock) (*Limiter, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if clock == nil {
		clock = RealClock{}
	}
	l := &Limiter{clock: clock, changed: make(chan struct{})}
	l.set(cfg)
	return l, nil
}

// Unlimited returns a limiter that limits nothing until Update.
func Unlimited() *Limiter {
	l, _ := New(Config{}, nil) // the zero Config is always valid
	return l
}

func (l *Limiter) set(cfg Config) {
	now := l.clock.Now()
	l.cfg = cfg
	l.bw, l.ops = newBucket(cfg.Bandwidth, now), newBucket(cfg.Ops, now)
}

// Update replaces the buckets with fresh, full ones for cfg, as
// Firecracker's PATCH does, and wakes every waiter to re-check.
func (l *Limiter) Update(cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.set(cfg)
	close(l.changed)
	l.changed = make(chan struct{})
	return nil
}

// Config returns the configuration in force.
func (l *Limiter) Config() Config {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.cfg
}

// Throttled counts the requests that had to wait (Firecracker's
// rate_limiter_throttled_events metrics).
func (l *Limiter) Throttled() uint64 { return l.throttled.Load() }

// TryAcquire takes one operation and bytes bytes if both buckets have
// them now, and otherwise takes nothing and says how long to wait before
// trying again, and a channel that closes if the limits change meanwhile.
func (l *Limiter) TryAcquire(bytes uint64) (time.Duration, <-chan struct{}) {
	return l.try(bytes, 1, false)
}

// TryWait is TryAcquire for a caller that learns a request's size only
// after serving it (a received frame): it asks for one token of each
// kind, so it passes once any debt is repaid, and takes nothing; Charge
// then takes what was used.
func (l *Limiter) TryWait() (time.Duration, <-chan struct{}) {
	return l.try(1, 1, true)
}

func (l *Limiter) try(bytes, ops uint64, probe bool) (time.Duration, <-chan struct{}) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.bw == nil && l.ops == nil {
		return 0, nil
	}
	now := l.clock.Now()
	var wait time.Duration
	if l.bw != nil {
		l.bw.refill(now)
		wait = max(wait, l.bw.check(bytes))
	}
	if l.ops != nil {
		l.ops.refill(now)
		wait = max(wait, l.ops.check(ops))
	}
	if wait > 0 {
		return wait, l.changed
	}
	if !probe {
		l.takeLocked(bytes, ops)
	}
	return 0, nil
}

func (l *Limiter) takeLocked(bytes, ops uint64) {
	if l.bw != nil {
		l.bw.take(bytes)
	}
	if l.ops != nil {
		l.ops.take(ops)
	}
}

// Charge takes one operation and bytes bytes whatever the budget, leaving
// a debt if there are not enough (see Wait).
func (l *Limiter) Charge(bytes uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.clock.Now()
	if l.bw != nil {
		l.bw.refill(now)
	}
	if l.ops != nil {
		l.ops.refill(now)
	}
	l.takeLocked(bytes, 1)
}

// Acquire takes one operation and bytes bytes, sleeping until both
// buckets have them. It returns ErrCanceled, having taken nothing, when
// cancel closes first.
func (l *Limiter) Acquire(bytes uint64, cancel <-chan struct{}) error {
	return l.wait(func() (time.Duration, <-chan struct{}) { return l.TryAcquire(bytes) }, cancel)
}

// Wait sleeps until the limiter is out of debt and has a token in each
// bucket, without taking any: for a device that learns a request's size
// only after serving it, and then calls Charge.
func (l *Limiter) Wait(cancel <-chan struct{}) error {
	return l.wait(l.TryWait, cancel)
}

func (l *Limiter) wait(try func() (time.Duration, <-chan struct{}), cancel <-chan struct{}) error {
	counted := false
	for {
		d, changed := try()
		if d == 0 {
			return nil
		}
		if !counted {
			counted = true
			l.throttled.Add(1)
		}
		t := l.clock.NewTimer(d)
		select {
		case <-t.C():
		case <-changed:
			t.Stop()
		case <-cancel:
			t.Stop()
			return ErrCanceled
		}
	}
}
