package virtio_test

import (
	"sync"
	"testing"

	"github.com/vmm-dev/vmm/devices/virtio"
	"github.com/vmm-dev/vmm/devices/virtio/virtiotest"
)

// echoDevice copies each chain's readable bytes into its writable buffers,
// on every queue. It is the smallest useful device for transport tests.
type echoDevice struct {
	maxSizes []uint16
	features uint64
	config   [8]byte

	mu          sync.Mutex
	workers     []*virtio.Worker
	activations int
	resets      int
	lastAct     virtio.Activation
}

func (e *echoDevice) Type() virtio.DeviceType    { return 0x7e }
func (e *echoDevice) Features() uint64           { return e.features }
func (e *echoDevice) QueueMaxSizes() []uint16    { return e.maxSizes }
func (e *echoDevice) WriteConfig(uint64, []byte) {}

func (e *echoDevice) ReadConfig(off uint64, data []byte) {
	if off < uint64(len(e.config)) {
		copy(data, e.config[off:])
	}
}

func (e *echoDevice) Activate(act virtio.Activation) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.activations++
	e.lastAct = act
	for i, q := range act.Queues {
		if q == nil {
			continue
		}
		w, err := virtio.StartWorker(act, i, echo)
		if err != nil {
			return err
		}
		e.workers = append(e.workers, w)
	}
	return nil
}

func (e *echoDevice) Reset() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.resets++
	for _, w := range e.workers {
		w.Stop()
	}
	e.workers = nil
}

func echo(c *virtio.Chain) (uint32, error) {
	var n uint32
	r, w := c.Readable, c.Writable
	var rb, wb []byte
	for {
		for len(rb) == 0 && len(r) > 0 {
			rb, r = r[0], r[1:]
		}
		for len(wb) == 0 && len(w) > 0 {
			wb, w = w[0], w[1:]
		}
		if len(rb) == 0 || len(wb) == 0 {
			return n, nil
		}
		k := copy(wb, rb)
		rb, wb = rb[k:], wb[k:]
		n += uint32(k)
	}
}

// echoRig is an echo device behind a virtio-mmio transport and a driver.
type echoRig struct {
	dev  *echoDevice
	mmio *virtio.MMIO
	drv  *virtiotest.Driver
	irq  *virtiotest.IRQ
}

func newEchoRig(t *testing.T, maxSizes ...uint16) *echoRig {
	t.Helper()
	dev := &echoDevice{maxSizes: maxSizes, features: 1 << 3, config: [8]byte{1, 2, 3, 4, 5, 6, 7, 8}}
	drv, m := virtiotest.Attach(t, dev, testRAM)
	return &echoRig{dev: dev, mmio: m, drv: drv, irq: drv.IRQ}
}
