package machine

import (
	"fmt"

	"github.com/vmm-dev/vmm/devices/virtio"
	"github.com/vmm-dev/vmm/devices/virtio/blk"
	"github.com/vmm-dev/vmm/devices/virtio/net"
	"github.com/vmm-dev/vmm/kvm"
)

// addVirtioDevices attaches the configured disks and NICs as virtio-mmio
// devices, in a stable order (disks, then NICs: the first disk is
// /dev/vda), and returns where each sits.
func (m *Machine) addVirtioDevices() ([]virtioSlot, error) {
	var slots []virtioSlot
	for i, d := range m.cfg.Disks {
		dev, err := blk.New(d.Path, blk.Options{ReadOnly: d.ReadOnly})
		if err != nil {
			return nil, fmt.Errorf("--disk %s: %w", d.Path, err)
		}
		m.onClose(dev.Close)
		slot, err := m.attachVirtio(fmt.Sprintf("virtio-blk %d (%s)", i, d.Path), len(slots), dev)
		if err != nil {
			return nil, err
		}
		slots = append(slots, slot)
	}
	for _, n := range m.cfg.NICs {
		slot, err := m.attachNIC(n, len(slots))
		if err != nil {
			return nil, err
		}
		slots = append(slots, slot)
	}
	return slots, nil
}

// attachVirtio puts dev behind a virtio-mmio transport in slot index: the
// window on the MMIO bus, an irqfd for its interrupt, and an ioeventfd
// per queue on QueueNotify so the guest's kicks reach the device's
// goroutine without a trip through a vCPU thread.
func (m *Machine) attachVirtio(name string, index int, dev virtio.Device) (virtioSlot, error) {
	slot := slotFor(index)
	irq, err := m.newIRQLine(slot.GSI)
	if err != nil {
		return slot, fmt.Errorf("%s: %w", name, err)
	}
	t, err := virtio.NewMMIO(dev, m.mem, irq)
	if err != nil {
		return slot, fmt.Errorf("%s: %w", name, err)
	}
	m.onClose(t.Close)
	if err := m.mmio.Register(name, slot.Base, uint64(slot.Size), t); err != nil {
		return slot, err
	}
	for q, fd := range t.QueueNotifyFDs() {
		match := uint64(q)
		ev := kvm.IOEventFD{FD: fd, Addr: slot.Base + virtio.RegQueueNotify, Len: 4, DataMatch: &match}
		if err := m.vm.RegisterIOEventFD(ev); err != nil {
			return slot, fmt.Errorf("%s: queue %d: %w", name, q, err)
		}
		m.onClose(func() error { return m.vm.UnregisterIOEventFD(ev) })
	}
	return slot, nil
}

// attachNIC opens (or creates) the NIC's TAP and puts a virtio-net device
// on it in slot index.
func (m *Machine) attachNIC(n NIC, index int) (virtioSlot, error) {
	dev, err := net.New(net.Config{TAP: n.TAP, MAC: n.MAC})
	if err != nil {
		return virtioSlot{}, fmt.Errorf("--net tap=%s: %w", n.TAP, err)
	}
	m.onClose(dev.Close)
	return m.attachVirtio(fmt.Sprintf("virtio-net %d (%s)", index, dev.Name()), index, dev)
}
