package ratelimit_test

import (
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vmm-dev/vmm/devices/ratelimit"
)

// fakeClock moves only when Advance is called; timers fire then.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*fakeTimer
}

type fakeTimer struct {
	c    chan time.Time
	at   time.Time
	done bool
}

func (t *fakeTimer) C() <-chan time.Time { return t.c }
func (t *fakeTimer) Stop() bool          { was := !t.done; t.done = true; return was }

func newFakeClock() *fakeClock { return &fakeClock{now: time.Unix(1000, 0)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) NewTimer(d time.Duration) ratelimit.Timer {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &fakeTimer{c: make(chan time.Time, 1), at: c.now.Add(d)}
	c.timers = append(c.timers, t)
	return t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	keep := c.timers[:0]
	for _, t := range c.timers {
		switch {
		case t.done:
		case !t.at.After(c.now):
			t.done = true
			t.c <- c.now
		default:
			keep = append(keep, t)
		}
	}
	c.timers = keep
}

// pending returns how many timers wait.
func (c *fakeClock) pending() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, t := range c.timers {
		if !t.done {
			n++
		}
	}
	return n
}

// step is one action on a limiter: advance the clock, then try to take
// bytes (one operation); wantWait is TryAcquire's answer.
type step struct {
	advance  time.Duration
	bytes    uint64
	wantWait time.Duration
}

func TestTryAcquire(t *testing.T) {
	ms := time.Millisecond
	bw := func(size uint64, refill time.Duration, burst uint64) ratelimit.Config {
		return ratelimit.Config{Bandwidth: ratelimit.Bucket{Size: size, RefillTime: refill, OneTimeBurst: burst}}
	}
	for _, tc := range []struct {
		name  string
		cfg   ratelimit.Config
		steps []step
	}{
		{"unlimited", ratelimit.Config{}, []step{{0, 1 << 40, 0}, {0, 1 << 40, 0}}},
		{"size zero is unlimited", bw(0, time.Second, 0), []step{{0, 1 << 30, 0}}},
		{"refill zero is unlimited", bw(100, 0, 0), []step{{0, 1 << 30, 0}}},
		{"full bucket, then empty", bw(1000, time.Second, 0), []step{
			{0, 1000, 0}, {0, 1, ms}, {ms, 1, 0}, {0, 1, ms}}},
		{"partial refill", bw(1000, time.Second, 0), []step{
			{0, 1000, 0}, {100 * ms, 200, 100 * ms}, {100 * ms, 200, 0}}},
		{"refill stops at size", bw(1000, time.Second, 0), []step{
			{0, 1000, 0}, {10 * time.Second, 1000, 0}, {0, 1, ms}}},
		{"fractional tokens add up", bw(3, time.Second, 0), []step{
			{0, 3, 0}, {333 * ms, 1, 333334}, {333334, 1, 0}, {0, 1, 333333333}}},
		{"one-time burst first", bw(1000, time.Second, 500), []step{
			{0, 1500, 0}, {0, 1, ms}}},
		{"no refill while the burst lasts", bw(1000, time.Second, 500), []step{
			{0, 400, 0}, {time.Second, 1100, 0}, {0, 1, ms}}},
		{"over-consumption leaves a debt", bw(1000, time.Second, 0), []step{
			{0, 3000, 0}, {0, 1, 2001 * ms}, {2000 * ms, 1, ms}, {ms, 1, 0}}},
		{"an over-sized request waits for a full bucket", bw(1000, time.Second, 0), []step{
			{0, 500, 0}, {0, 5000, 500 * ms}, {500 * ms, 5000, 0}}},
		{"ops bucket", ratelimit.Config{Ops: ratelimit.Bucket{Size: 10, RefillTime: time.Second}}, []step{
			{0, 0, 0}, {0, 1 << 30, 0}, {0, 0, 0}, {0, 0, 0}, {0, 0, 0}, {0, 0, 0}, {0, 0, 0}, {0, 0, 0}, {0, 0, 0}, {0, 0, 0},
			{0, 0, 100 * ms}, {100 * ms, 0, 0}}},
		{"huge numbers do not overflow", bw(1<<61, 1000*time.Hour, 0), []step{
			{0, 1 << 61, 0}, {24 * 365 * time.Hour, 1 << 61, 0}, {0, 1, 2 * time.Millisecond}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clk := newFakeClock()
			l, err := ratelimit.New(tc.cfg, clk)
			require.NoError(t, err)
			for i, s := range tc.steps {
				clk.Advance(s.advance)
				got, _ := l.TryAcquire(s.bytes)
				if tc.name == "huge numbers do not overflow" && i == 2 {
					assert.Positive(t, got, "step %d", i)
					continue
				}
				assert.Equal(t, s.wantWait, got, "step %d: %+v", i, s)
			}
		})
	}
}

func TestBothBucketsOrNeither(t *testing.T) {
	clk := newFakeClock()
	l, err := ratelimit.New(ratelimit.Config{
		Bandwidth: ratelimit.Bucket{Size: 1000, RefillTime: time.Second},
		Ops:       ratelimit.Bucket{Size: 2, RefillTime: time.Second},
	}, clk)
	require.NoError(t, err)
	d, _ := l.TryAcquire(1000)
	require.Zero(t, d)
	// The bandwidth bucket refuses: the ops bucket keeps its token.
	d, _ = l.TryAcquire(1)
	require.Equal(t, time.Millisecond, d)
	clk.Advance(time.Millisecond)
	d, _ = l.TryAcquire(1)
	require.Zero(t, d, "the second op token is still there")
	clk.Advance(time.Millisecond)
	d, _ = l.TryAcquire(1)
	require.Equal(t, 500*time.Millisecond-2*time.Millisecond, d, "now the ops bucket is empty")
}

func TestValidate(t *testing.T) {
	_, err := ratelimit.New(ratelimit.Config{Bandwidth: ratelimit.Bucket{Size: 1 << 63, RefillTime: time.Second}}, nil)
	require.ErrorIs(t, err, ratelimit.ErrConfig)
	l := ratelimit.Unlimited()
	require.ErrorIs(t, l.Update(ratelimit.Config{Ops: ratelimit.Bucket{Size: 1, OneTimeBurst: 1 << 63, RefillTime: 1}}), ratelimit.ErrConfig)
	require.True(t, l.Config().Unlimited(), "a refused update changes nothing")
}

// TestLongRunRate takes requests of mixed sizes as fast as the limiter
// allows for 60 simulated seconds: the bytes moved match the rate.
func TestLongRunRate(t *testing.T) {
	for _, size := range []uint64{512, 4096, 65536, 1 << 20, 3 << 20} {
		clk := newFakeClock()
		const rate = 1 << 20 // 1 MiB/s as 64 KiB per 62.5 ms
		l, err := ratelimit.New(ratelimit.Config{Bandwidth: ratelimit.Bucket{Size: 64 << 10, RefillTime: 62500 * time.Microsecond}}, clk)
		require.NoError(t, err)
		start := clk.Now()
		var moved uint64
		for clk.Now().Sub(start) < 60*time.Second {
			d, _ := l.TryAcquire(size)
			if d > 0 {
				clk.Advance(d)
				continue
			}
			moved += size
		}
		got := float64(moved) / clk.Now().Sub(start).Seconds()
		assert.InEpsilon(t, float64(rate), got, 0.02, "requests of %d bytes: %.0f B/s", size, got)
	}
}

func TestAcquireSleepsOnTimer(t *testing.T) {
	clk := newFakeClock()
	l, err := ratelimit.New(ratelimit.Config{Bandwidth: ratelimit.Bucket{Size: 100, RefillTime: time.Second}}, clk)
	require.NoError(t, err)
	require.NoError(t, l.Acquire(100, nil))
	done := make(chan error, 1)
	go func() { done <- l.Acquire(50, nil) }()
	require.Eventually(t, func() bool { return clk.pending() == 1 }, time.Second, time.Millisecond)
	select {
	case <-done:
		t.Fatal("Acquire returned before its tokens existed")
	case <-time.After(20 * time.Millisecond):
	}
	clk.Advance(499 * time.Millisecond)
	clk.Advance(time.Millisecond)
	require.NoError(t, <-done)
	assert.Equal(t, uint64(1), l.Throttled())
}

func TestUpdateWakesWaiters(t *testing.T) {
	clk := newFakeClock()
	l, err := ratelimit.New(ratelimit.Config{Bandwidth: ratelimit.Bucket{Size: 10, RefillTime: time.Hour}}, clk)
	require.NoError(t, err)
	require.NoError(t, l.Acquire(10, nil))
	done := make(chan error, 4)
	for range 4 {
		go func() { done <- l.Acquire(1000, nil) }()
	}
	require.Eventually(t, func() bool { return clk.pending() == 4 }, time.Second, time.Millisecond)
	require.NoError(t, l.Update(ratelimit.Config{}))
	for range 4 {
		select {
		case err := <-done:
			require.NoError(t, err)
		case <-time.After(5 * time.Second):
			t.Fatal("Update to unlimited did not wake a waiter")
		}
	}
	assert.True(t, l.Config().Unlimited())
}

func TestAcquireCancel(t *testing.T) {
	clk := newFakeClock()
	l, err := ratelimit.New(ratelimit.Config{Ops: ratelimit.Bucket{Size: 1, RefillTime: time.Hour}}, clk)
	require.NoError(t, err)
	require.NoError(t, l.Acquire(0, nil))
	cancel := make(chan struct{})
	done := make(chan error, 1)
	go func() { done <- l.Acquire(0, cancel) }()
	require.Eventually(t, func() bool { return clk.pending() == 1 }, time.Second, time.Millisecond)
	close(cancel)
	require.ErrorIs(t, <-done, ratelimit.ErrCanceled)
	clk.Advance(time.Hour)
	d, _ := l.TryAcquire(0)
	assert.Zero(t, d, "a canceled Acquire took nothing")
}

func TestWaitAndCharge(t *testing.T) {
	clk := newFakeClock()
	l, err := ratelimit.New(ratelimit.Config{Bandwidth: ratelimit.Bucket{Size: 1000, RefillTime: time.Second}}, clk)
	require.NoError(t, err)
	require.NoError(t, l.Wait(nil))
	l.Charge(2500) // a frame learned after the fact: 1500 of debt
	done := make(chan error, 1)
	go func() { done <- l.Wait(nil) }()
	require.Eventually(t, func() bool { return clk.pending() == 1 }, time.Second, time.Millisecond)
	clk.Advance(1500 * time.Millisecond)
	select {
	case <-done:
		t.Fatal("Wait returned while in debt")
	case <-time.After(20 * time.Millisecond):
	}
	clk.Advance(time.Millisecond)
	require.NoError(t, <-done)
}

func TestRealClock(t *testing.T) {
	l, err := ratelimit.New(ratelimit.Config{Bandwidth: ratelimit.Bucket{Size: 1000, RefillTime: 100 * time.Millisecond}}, nil)
	require.NoError(t, err)
	start := time.Now()
	for range 5 {
		require.NoError(t, l.Acquire(1000, nil))
	}
	assert.GreaterOrEqual(t, time.Since(start), 400*time.Millisecond)
}
