package pci

import (
	"fmt"

	pcibus "github.com/vmm-dev/vmm/devices/pci"
	"github.com/vmm-dev/vmm/devices/virtio"
)

// State is a virtio-pci transport's snapshot state: the Core's, the
// function's configuration space and MSI-X table, the ISR, and which
// MSI-X vector the driver gave each queue and configuration changes.
type State struct {
	Core         virtio.CoreState
	Config       pcibus.ConfigState
	MSIX         pcibus.MSIXState
	ISR          uint32
	ConfigVector uint16
	QueueVectors []uint16
}

// Save returns the transport's state (see virtio.Core.Save: the device
// must be quiesced).
func (t *Transport) Save() (State, error) {
	cs, err := t.core.Save()
	if err != nil {
		return State{}, err
	}
	s := State{Core: cs, Config: t.cfg.Save(), MSIX: t.msix.Save(), ISR: t.isr.Load(),
		ConfigVector: uint16(t.configVector.Load())}
	for i := range t.queueVectors {
		s.QueueVectors = append(s.QueueVectors, uint16(t.queueVectors[i].Load()))
	}
	return s, nil
}

// Restore loads s into a transport the driver has not touched. The
// configuration space and MSI-X come first, so the device, activated
// last by the Core, interrupts through the restored vectors. The bus
// decodes the restored BAR (and so registers the notification
// ioeventfds) at its own Restore, which follows. An INTx interrupt the
// driver had not acknowledged is raised again, as virtio-mmio's is; MSI
// messages already sent are in the restored local APICs. A refused
// state may leave the configuration space loaded and the device not
// activated: the machine discards a VM whose restore failed.
func (t *Transport) Restore(s State) error {
	fail := func(format string, a ...any) error {
		return fmt.Errorf("%w: virtio-pci %v: %s", virtio.ErrState, t.core.Type(), fmt.Sprintf(format, a...))
	}
	if len(s.QueueVectors) != len(t.queueVectors) {
		return fail("%d queue vectors saved, the device has %d queues", len(s.QueueVectors), len(t.queueVectors))
	}
	if s.ISR&^(isrQueue|isrConfig) != 0 {
		return fail("ISR %#x", s.ISR)
	}
	vector := func(v uint16) (uint32, error) {
		if v != NoVector && int(v) >= t.msix.Vectors() {
			return 0, fail("MSI-X vector %d of %d", v, t.msix.Vectors())
		}
		return uint32(v), nil
	}
	cv, err := vector(s.ConfigVector)
	if err != nil {
		return err
	}
	qv := make([]uint32, len(s.QueueVectors))
	for i, v := range s.QueueVectors {
		if qv[i], err = vector(v); err != nil {
			return err
		}
	}
	if err := t.msix.Validate(s.MSIX); err != nil {
		return fmt.Errorf("%w: virtio-pci %v: %w", virtio.ErrState, t.core.Type(), err)
	}
	if err := t.cfg.Restore(s.Config); err != nil {
		return fmt.Errorf("%w: virtio-pci %v: %w", virtio.ErrState, t.core.Type(), err)
	}
	if err := t.msix.Restore(s.MSIX); err != nil {
		return fmt.Errorf("%w: virtio-pci %v: %w", virtio.ErrState, t.core.Type(), err)
	}
	// The VIRTIO_PCI_CAP_PCI_CFG window's bar, offset and length, which
	// the hook mirrors.
	t.pciCfgMu.Lock()
	copy(t.pciCfg[:], s.Config.Bytes[t.pciCfgOff:int(t.pciCfgOff)+pciCfgCapLen])
	t.pciCfgMu.Unlock()
	t.configVector.Store(cv)
	for i, v := range qv {
		t.queueVectors[i].Store(v)
	}
	t.isr.Store(s.ISR)
	if err := t.core.Restore(s.Core); err != nil {
		return err
	}
	if t.isr.Load() != 0 && !t.msix.Enabled() {
		if err := t.raiseINTx(); err != nil {
			return fmt.Errorf("virtio-pci: restore: raise the pending interrupt: %w", err)
		}
	}
	return nil
}
