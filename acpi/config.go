package acpi

import (
	"fmt"
	"sort"
)

// validate checks everything the tables would otherwise state wrongly.
func (c Config) validate() error {
	if c.CPUs < 1 || c.CPUs > MaxCPUs {
		return fmt.Errorf("%w: %d CPUs (must be 1 to %d)", ErrConfig, c.CPUs, MaxCPUs)
	}
	if c.IOAPICAddr == 0 {
		return fmt.Errorf("%w: IOAPIC address is zero", ErrConfig)
	}
	if c.CPUs < 0xff && int(c.IOAPICID) < c.CPUs {
		return fmt.Errorf("%w: IOAPIC ID %d is also a local APIC ID (0-%d)", ErrConfig, c.IOAPICID, c.CPUs-1)
	}
	if err := c.Power.Validate(); err != nil {
		return fmt.Errorf("%w: %w", ErrConfig, err)
	}
	gsiUser := map[uint32]string{}
	claim := func(gsi uint32, user string) error {
		if gsi >= IOAPICPins {
			return fmt.Errorf("%w: %s: GSI %d is not an IOAPIC pin (0-%d)", ErrConfig, user, gsi, IOAPICPins-1)
		}
		if other, ok := gsiUser[gsi]; ok {
			return fmt.Errorf("%w: %s: GSI %d is already used by %s", ErrConfig, user, gsi, other)
		}
		gsiUser[gsi] = user
		return nil
	}
	if c.SerialPort != 0 {
		if uint32(c.SerialPort)+serialPorts > 1<<16 {
			return fmt.Errorf("%w: serial port %#x: its %d registers pass port 0xffff", ErrConfig, c.SerialPort, serialPorts)
		}
		if err := claim(c.SerialIRQ, "serial port"); err != nil {
			return err
		}
	}
	if c.KeyboardPorts != [2]uint16{} {
		if err := claim(c.KeyboardIRQ, "keyboard controller"); err != nil {
			return err
		}
	}
	if g := c.VMGenID; g != nil {
		if g.Addr == 0 || g.Addr%8 != 0 {
			return fmt.Errorf("%w: VM generation ID at %#x: must be a non-zero, 8-byte aligned address", ErrConfig, g.Addr)
		}
		if err := claim(g.GSI, "VM generation ID event"); err != nil {
			return err
		}
	}
	if len(c.VirtioMMIO) > MaxVirtioMMIO {
		return fmt.Errorf("%w: %d virtio-mmio devices (max %d)", ErrConfig, len(c.VirtioMMIO), MaxVirtioMMIO)
	}
	for i, v := range c.VirtioMMIO {
		name := fmt.Sprintf("virtio-mmio %s at %#x", virtioName(i), v.Base)
		if v.Size == 0 || v.Base >= 1<<32 || v.Base+uint64(v.Size) > 1<<32 {
			return fmt.Errorf("%w: %s+%#x must be non-empty and below 4 GiB (Memory32Fixed)", ErrConfig, name, v.Size)
		}
		if err := claim(v.GSI, name); err != nil {
			return err
		}
	}
	if c.PCI != nil {
		if err := c.PCI.validate(gsiUser); err != nil {
			return err
		}
	}
	sorted := append([]VirtioMMIO(nil), c.VirtioMMIO...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Base < sorted[j].Base })
	for i := 1; i < len(sorted); i++ {
		if p := sorted[i-1]; p.Base+uint64(p.Size) > sorted[i].Base {
			return fmt.Errorf("%w: virtio-mmio windows %#x+%#x and %#x overlap", ErrConfig, p.Base, p.Size, sorted[i].Base)
		}
	}
	return nil
}
