package virtio

import (
	"fmt"
	"log/slog"
)

// The device status state machine: feature negotiation, activation on
// DRIVER_OK, and reset (virtio 1.2 §2.1, §3.1).

func (c *Core) writeStatus(v uint32) {
	if v == 0 {
		c.reset()
		return
	}
	// The driver only adds bits (§2.1.1); NEEDS_RESET is the device's.
	added := v & 0xff &^ StatusNeedsReset &^ c.status
	if added&StatusFeaturesOK != 0 {
		if err := c.checkFeatures(); err != nil {
			// §3.1.1: the driver reads FEATURES_OK back and gives up.
			slog.Info("virtio driver features refused", "device", c.dev.Type(), "err", err)
			added &^= StatusFeaturesOK
		}
	}
	if added&StatusDriverOK != 0 && (c.status|added)&StatusFeaturesOK == 0 {
		added &^= StatusDriverOK
	}
	c.status |= added
	if added&StatusDriverOK != 0 {
		c.activate()
	}
}

func (c *Core) checkFeatures() error {
	if extra := c.driverFeatures &^ c.offered; extra != 0 {
		return fmt.Errorf("%w: %#x not offered (offered %#x)", ErrFeatures, extra, c.offered)
	}
	// Both transports are non-legacy: the driver must speak virtio 1.
	if c.driverFeatures&FeatureVersion1 == 0 {
		return fmt.Errorf("%w: VIRTIO_F_VERSION_1 not accepted", ErrFeatures)
	}
	return nil
}

func (c *Core) activate() {
	queues := make([]*Queue, len(c.queues))
	for i, r := range c.queues {
		if r.ready {
			queues[i] = r.queue
		}
	}
	c.live.Store(&queues)
	c.running.Store(true)
	if c.needsReset.Load() {
		// Broken while being set up: tell the driver now that it listens.
		if err := c.irq.ConfigChange(); err != nil {
			slog.Warn("virtio device needs reset: cannot notify the driver", "err", err)
		}
		return
	}
	act := Activation{
		Memory:         c.mem,
		Features:       c.driverFeatures,
		Queues:         queues,
		Kicks:          c.kicks,
		Interrupt:      func() error { return c.irq.UsedBuffer(0) },
		QueueInterrupt: c.irq.UsedBuffer,
		Fail:           c.fail,
	}
	if err := c.dev.Activate(act); err != nil {
		c.fail(fmt.Errorf("activate: %w", err))
	}
}

// reset returns the device to its initial state (virtio 1.2 §2.4).
func (c *Core) reset() {
	c.dev.Reset()
	c.quiesced = false
	c.running.Store(false)
	c.live.Store(nil)
	c.status = 0
	c.deviceFeatSel, c.driverFeatSel, c.driverFeatures, c.queueSel = 0, 0, 0, 0
	clear(c.queues)
	c.needsReset.Store(false)
	if c.onReset != nil {
		c.onReset()
	}
}
