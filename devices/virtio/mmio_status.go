package virtio

import (
	"fmt"
	"log/slog"
)

// The device status state machine: feature negotiation, activation on
// DRIVER_OK, and reset (virtio 1.2 §2.1, §3.1).

func (m *MMIO) writeStatus(v uint32) {
	if v == 0 {
		m.reset()
		return
	}
	// The driver only adds bits (§2.1.1); NEEDS_RESET is the device's.
	added := v & 0xff &^ StatusNeedsReset &^ m.status
	if added&StatusFeaturesOK != 0 {
		if err := m.checkFeatures(); err != nil {
			// §3.1.1: the driver reads FEATURES_OK back and gives up.
			slog.Info("virtio driver features refused", "device", m.dev.Type(), "err", err)
			added &^= StatusFeaturesOK
		}
	}
	if added&StatusDriverOK != 0 && (m.status|added)&StatusFeaturesOK == 0 {
		added &^= StatusDriverOK
	}
	m.status |= added
	if added&StatusDriverOK != 0 {
		m.activate()
	}
}

func (m *MMIO) checkFeatures() error {
	if extra := m.driverFeatures &^ m.offered; extra != 0 {
		return fmt.Errorf("%w: %#x not offered (offered %#x)", ErrFeatures, extra, m.offered)
	}
	// This is a non-legacy transport: the driver must speak virtio 1.
	if m.driverFeatures&FeatureVersion1 == 0 {
		return fmt.Errorf("%w: VIRTIO_F_VERSION_1 not accepted", ErrFeatures)
	}
	return nil
}

func (m *MMIO) activate() {
	queues := make([]*Queue, len(m.queues))
	for i, r := range m.queues {
		if r.ready {
			queues[i] = r.queue
		}
	}
	m.live.Store(&queues)
	m.running.Store(true)
	if m.needsReset.Load() {
		// Broken while being set up: tell the driver now that it listens.
		if err := m.raise(InterruptConfigChange); err != nil {
			slog.Warn("virtio device needs reset: cannot notify the driver", "err", err)
		}
		return
	}
	act := Activation{
		Memory:    m.mem,
		Features:  m.driverFeatures,
		Queues:    queues,
		Kicks:     m.kicks,
		Interrupt: m.raiseUsed,
		Fail:      m.fail,
	}
	if err := m.dev.Activate(act); err != nil {
		m.fail(fmt.Errorf("activate: %w", err))
	}
}

// reset returns the device to its initial state (virtio 1.2 §2.4, §4.2.2.1).
func (m *MMIO) reset() {
	m.dev.Reset()
	m.running.Store(false)
	m.live.Store(nil)
	m.status = 0
	m.deviceFeatSel, m.driverFeatSel, m.driverFeatures, m.queueSel = 0, 0, 0, 0
	clear(m.queues)
	m.interruptStatus.Store(0)
	m.needsReset.Store(false)
}
