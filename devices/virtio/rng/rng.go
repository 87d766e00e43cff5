// Package rng is a virtio entropy device (virtio 1.2 §5.4): the guest
// posts device-writable buffers on its one request queue and the device
// fills them from the host's getrandom(2), optionally through a rate
// limiter.
package rng

import (
	"errors"
	"fmt"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/vmm-dev/vmm/devices/ratelimit"
	"github.com/vmm-dev/vmm/devices/virtio"
)

// QueueSize is the size of the request queue.
const QueueSize = 256

// MaxRequest bounds the bytes one chain gets: a driver may post a chain
// of gigabytes, and §5.4.6.1 asks only for "one or more" bytes, with
// the used length saying how many (Linux asks for at most a page or so).
const MaxRequest = 64 << 10

// ErrActive: Activate on a device that is already running.
var ErrActive = errors.New("entropy device already active")

// Source fills b with random bytes and returns how many it wrote.
type Source func(b []byte) (int, error)

// Getrandom is the host's getrandom(2) without flags: it blocks only
// until the kernel's pool is first initialized, which on a running host
// it long has been.
func Getrandom(b []byte) (int, error) {
	for {
		n, err := unix.Getrandom(b, 0)
		if !errors.Is(err, unix.EINTR) {
			return n, err
		}
	}
}

// Options configure an RNG.
type Options struct {
	// RateLimiter delays requests (one operation each, plus the bytes
	// given); nil gives an unlimited one that Limiter returns.
	RateLimiter *ratelimit.Limiter
	// Source supplies the bytes; nil means Getrandom.
	Source Source
}

// RNG is a virtio entropy device. It implements virtio.Device.
type RNG struct {
	limiter *ratelimit.Limiter
	source  Source

	mu     sync.Mutex
	worker *virtio.Worker
	stop   chan struct{} // closed by Reset: ends a wait for tokens
}

var _ virtio.Device = (*RNG)(nil)

// New returns an entropy device.
func New(opts Options) *RNG {
	r := &RNG{limiter: opts.RateLimiter, source: opts.Source}
	if r.limiter == nil {
		r.limiter = ratelimit.Unlimited()
	}
	if r.source == nil {
		r.source = Getrandom
	}
	return r
}

// Limiter returns the device's rate limiter.
func (r *RNG) Limiter() *ratelimit.Limiter { return r.limiter }

// Type implements virtio.Device.
func (r *RNG) Type() virtio.DeviceType { return virtio.DeviceEntropy }

// Features implements virtio.Device: §5.4.3 defines none.
func (r *RNG) Features() uint64 { return 0 }

// QueueMaxSizes implements virtio.Device: one requestq (§5.4.2).
func (r *RNG) QueueMaxSizes() []uint16 { return []uint16{QueueSize} }

// ReadConfig implements virtio.Device: §5.4.4, there is no configuration.
func (r *RNG) ReadConfig(_ uint64, data []byte) { clear(data) }

// WriteConfig implements virtio.Device.
func (r *RNG) WriteConfig(uint64, []byte) {}

// Activate implements virtio.Device.
func (r *RNG) Activate(act virtio.Activation) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.worker != nil {
		return ErrActive
	}
	stop := make(chan struct{})
	w, err := virtio.StartWorker(act, 0, func(c *virtio.Chain) (uint32, error) { return r.handle(c, stop) })
	if err != nil {
		return fmt.Errorf("virtio-rng: %w", err)
	}
	r.worker, r.stop = w, stop
	return nil
}

// Reset implements virtio.Device.
func (r *RNG) Reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.worker != nil {
		close(r.stop)
		r.worker.Stop()
		r.worker = nil
	}
}

// handle fills one chain's writable buffers, up to MaxRequest bytes, and
// returns how many it wrote (§5.4.6). Device-readable buffers carry
// nothing for this device and are ignored. A chain with no writable
// byte is returned with length 0 rather than breaking the device: the
// driver asked for nothing and got it.
func (r *RNG) handle(c *virtio.Chain, stop <-chan struct{}) (uint32, error) {
	want := min(c.WritableLen(), MaxRequest)
	if want == 0 {
		return 0, nil
	}
	if err := r.limiter.Acquire(want, stop); err != nil {
		return 0, nil // a reset ended the wait; the driver forgot the chain
	}
	var done uint64
	for _, b := range c.Writable {
		if done == want {
			break
		}
		b = b[:min(uint64(len(b)), want-done)]
		for len(b) > 0 {
			n, err := r.source(b)
			if err != nil || n <= 0 {
				// The used length tells the driver how much it got
				// (§2.7.8.2); a failing host source gives it less, not
				// made-up bytes.
				return uint32(done), nil
			}
			done += uint64(n)
			b = b[n:]
		}
	}
	return uint32(done), nil
}
