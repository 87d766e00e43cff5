package pci

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Snapshot state of PCI: a function's configuration space as the guest
// programmed it, and its MSI-X table and pending bits. What the device
// built (identity, capabilities, BAR sizes, which bits are writable) is
// not state: a restore builds the same device and loads the guest's
// writes into it, refusing a saved space whose read-only bytes differ,
// since that is another device's.

// ErrState reports a saved state that cannot be loaded.
var ErrState = errors.New("invalid PCI state")

// ConfigState is one function's configuration space.
type ConfigState struct {
	Bytes []byte // ConfigSize bytes
}

// Save returns the configuration space.
func (c *Config) Save() ConfigState { return ConfigState{Bytes: c.Bytes()} }

// Restore loads s into a space the guest has not written: every
// read-only bit must be the one this function has, the guest-writable
// ones are taken from s. No hook runs; the owner of a hooked register
// restores what it mirrors (MSIX.Restore). The bus decodes the restored
// BARs at its Restore.
func (c *Config) Restore(s ConfigState) error {
	if len(s.Bytes) != ConfigSize {
		return fmt.Errorf("%w: %d bytes of configuration space, want %d", ErrState, len(s.Bytes), ConfigSize)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, v := range s.Bytes {
		if (v^c.b[i])&^c.wmask[i] != 0 {
			return fmt.Errorf("%w: configuration space byte %#x is %#02x, this function has %#02x in its read-only bits (%s)",
				ErrState, i, v, c.b[i], c.id())
		}
	}
	for i, v := range s.Bytes {
		c.b[i] = c.b[i]&^c.wmask[i] | v&c.wmask[i]
	}
	c.command.Store(uint32(binary.LittleEndian.Uint16(c.b[RegCommand:])))
	return nil
}

// id is the function's identity, for messages; c.mu is held.
func (c *Config) id() ID {
	return ID{
		Vendor:   binary.LittleEndian.Uint16(c.b[RegVendorID:]),
		Device:   binary.LittleEndian.Uint16(c.b[RegDeviceID:]),
		Revision: c.b[RegRevisionID],
		Class:    uint32(c.b[RegClassCode]) | uint32(c.b[RegClassCode+1])<<8 | uint32(c.b[RegClassCode+2])<<16,
	}
}

// MSIXState is the vector table and the pending bit array. Whether MSI-X
// is enabled and the function masked is in the capability's Message
// Control, in the configuration space.
type MSIXState struct {
	Table   []byte
	Pending []uint64
}

// Save returns the table and the PBA.
func (x *MSIX) Save() MSIXState {
	x.mu.Lock()
	defer x.mu.Unlock()
	return MSIXState{Table: append([]byte(nil), x.table...), Pending: append([]uint64(nil), x.pending...)}
}

// Restore loads s, after the configuration space it was installed in
// was restored: Message Control there says whether MSI-X is enabled and
// the function masked. Routes are programmed again at each vector's next
// interrupt, as after a reset; a pending vector that is no longer masked
// is delivered now.
func (x *MSIX) Restore(s MSIXState) error {
	if err := x.Validate(s); err != nil {
		return err
	}
	var mc [2]byte
	x.cfg.Read(x.capOff+2, mc[:])
	ctl := binary.LittleEndian.Uint16(mc[:])
	x.mu.Lock()
	defer x.mu.Unlock()
	copy(x.table, s.Table)
	for v := range x.routes {
		// Only the mask bit of Vector Control is defined (§6.8.2.9).
		vc := x.table[v*MSIXEntrySize+msixEntryVectorCtl:]
		binary.LittleEndian.PutUint32(vc, binary.LittleEndian.Uint32(vc)&msixEntryCtrlMask)
	}
	copy(x.pending, s.Pending)
	clear(x.isRouted)
	x.enabled, x.masked = ctl&msixControlEnable != 0, ctl&msixControlMask != 0
	x.deliverPending()
	return nil
}

// Validate reports whether s fits this function's table, without
// loading it.
func (x *MSIX) Validate(s MSIXState) error {
	if len(s.Table) != len(x.table) || len(s.Pending) != len(x.pending) {
		return fmt.Errorf("%w: MSI-X table of %d bytes and PBA of %d words, this function has %d and %d",
			ErrState, len(s.Table), len(s.Pending), len(x.table), len(x.pending))
	}
	if n := len(x.routes); n%64 != 0 && s.Pending[len(s.Pending)-1]>>(n%64) != 0 {
		return fmt.Errorf("%w: MSI-X pending bits past vector %d", ErrState, n-1)
	}
	if x.cfg == nil {
		return fmt.Errorf("%w: MSI-X not installed", ErrState)
	}
	return nil
}

// BusState is the bus's own function, the host bridge; every other
// function is saved by its device.
type BusState struct {
	HostBridge ConfigState
}

// Save returns the host bridge's configuration space.
func (b *Bus) Save() BusState {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return BusState{HostBridge: b.devices[0].Config().Save()}
}

// Restore loads the host bridge's state and decodes every function's
// BARs afresh: call it after each device restored its configuration
// space, so the BAR windows, and what the devices register on them
// (BARObserver), follow the restored addresses.
func (b *Bus) Restore(s BusState) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.devices[0].Config().Restore(s.HostBridge); err != nil {
		return fmt.Errorf("host bridge: %w", err)
	}
	for _, d := range b.devices[1:] {
		if d != nil {
			b.remapLocked(d)
		}
	}
	return nil
}
