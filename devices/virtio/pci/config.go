package pci

import (
	"encoding/binary"
	"fmt"

	pcibus "github.com/vmm-dev/vmm/devices/pci"
	"github.com/vmm-dev/vmm/devices/virtio"
)

// virtio_pci_cap cfg_type values (§4.1.4).
const (
	capCommon = 1
	capNotify = 2
	capISR    = 3
	capDevice = 4
	capPCICfg = 5
)

const (
	// capLen is sizeof(struct virtio_pci_cap), from cap_vndr on.
	capLen = 16
	// notifyCapLen adds notify_off_multiplier.
	notifyCapLen = 20
	// pciCfgCapLen adds pci_cfg_data[4].
	pciCfgCapLen = 20
)

// vendorCap returns the body of a virtio_pci_cap after cap_vndr and
// cap_next: cap_len, cfg_type, bar, id, padding, offset, length.
func vendorCap(length, cfgType uint8, offset, size uint32) []byte {
	b := make([]byte, length-2)
	b[0], b[1], b[2] = length, cfgType, BAR
	binary.LittleEndian.PutUint32(b[6:], offset)
	binary.LittleEndian.PutUint32(b[10:], size)
	return b
}

func (t *Transport) buildConfig(typ virtio.DeviceType, queues int, c Config) error {
	id := pcibus.ID{
		Vendor:       VendorID,
		Device:       DeviceIDBase + uint16(typ),
		Revision:     Revision,
		Class:        classCode(typ),
		SubsysVendor: VendorID,
		// §4.1.2.1: a non-transitional device's subsystem device ID is
		// 0x40 or more; the PCI device ID says it.
		Subsys: DeviceIDBase + uint16(typ),
	}
	cfg := pcibus.NewConfig(id, 1)
	cfg.SetInterruptLine(c.INTxLine)
	if err := cfg.SetBAR(BAR, pcibus.BAR{Kind: pcibus.BARMem64, Size: BARSize}, c.BARAddr); err != nil {
		return fmt.Errorf("virtio-pci %v: %w", typ, err)
	}
	x, err := pcibus.NewMSIX(c.MSIRoutes)
	if err != nil {
		return fmt.Errorf("virtio-pci %v: %w", typ, err)
	}
	if _, err := x.Install(cfg, BAR, msixTableOff, msixPBAOff); err != nil {
		return fmt.Errorf("virtio-pci %v: %w", typ, err)
	}
	notify := vendorCap(notifyCapLen, capNotify, notifyOff, uint32(queues*NotifyOffMultiplier))
	binary.LittleEndian.PutUint32(notify[14:], NotifyOffMultiplier)
	for _, body := range [][]byte{
		vendorCap(capLen, capCommon, commonOff, commonLen),
		notify,
		vendorCap(capLen, capISR, isrOff, isrLen),
		vendorCap(capLen, capDevice, deviceOff, deviceLen),
	} {
		if _, err := cfg.AddCapability(pcibus.CapVendor, body, nil); err != nil {
			return fmt.Errorf("virtio-pci %v: %w", typ, err)
		}
	}
	if err := t.addPCICfgCap(cfg); err != nil {
		return fmt.Errorf("virtio-pci %v: %w", typ, err)
	}
	t.cfg, t.msix = cfg, x
	return nil
}

// addPCICfgCap adds VIRTIO_PCI_CAP_PCI_CFG (§4.1.4.9): the driver writes
// bar, offset and length, then reads or writes pci_cfg_data to reach the
// BAR through configuration space.
func (t *Transport) addPCICfgCap(cfg *pcibus.Config) error {
	body := vendorCap(pciCfgCapLen, capPCICfg, 0, 0)
	body[2] = 0
	wmask := make([]byte, len(body))
	wmask[2] = 0xff                                  // bar
	copy(wmask[6:], []byte{0xff, 0xff, 0xff, 0xff})  // offset
	copy(wmask[10:], []byte{0xff, 0xff, 0xff, 0xff}) // length
	copy(wmask[14:], []byte{0xff, 0xff, 0xff, 0xff}) // pci_cfg_data
	off, err := cfg.AddCapability(pcibus.CapVendor, body, wmask)
	if err != nil {
		return err
	}
	t.pciCfgOff = off
	t.pciCfg[0] = pcibus.CapVendor
	copy(t.pciCfg[2:], body)
	return cfg.AddHook(pcibus.Hook{
		Offset: off, Len: pciCfgCapLen,
		Read:  t.readPCICfg,
		Write: t.writePCICfg,
	})
}

// pci_cfg_data is at offset 16 of the capability.
const pciCfgData = 16

func (t *Transport) pciCfgTarget() (bar uint8, offset uint64, n int) {
	return t.pciCfg[4], uint64(binary.LittleEndian.Uint32(t.pciCfg[8:])), int(binary.LittleEndian.Uint32(t.pciCfg[12:]))
}

func (t *Transport) readPCICfg(off uint16, data []byte) {
	if off < pciCfgData {
		return
	}
	t.pciCfgMu.Lock()
	bar, offset, n := t.pciCfgTarget()
	t.pciCfgMu.Unlock()
	clear(data)
	// §4.1.4.9.1: lengths 1, 2 and 4 at a naturally aligned offset; the
	// data sits at the start of pci_cfg_data.
	if bar != BAR || (n != 1 && n != 2 && n != 4) || offset%uint64(n) != 0 || off != pciCfgData {
		return
	}
	buf := make([]byte, n)
	t.ReadBAR(BAR, offset, buf)
	copy(data, buf)
}

func (t *Transport) writePCICfg(off uint16, data, stored []byte) {
	t.pciCfgMu.Lock()
	copy(t.pciCfg[off:], stored)
	bar, offset, n := t.pciCfgTarget()
	var buf []byte
	if off == pciCfgData && len(data) >= n {
		buf = append([]byte(nil), data[:n]...)
	}
	t.pciCfgMu.Unlock()
	if buf == nil || bar != BAR || (n != 1 && n != 2 && n != 4) || offset%uint64(n) != 0 {
		return
	}
	t.WriteBAR(BAR, offset, buf)
}
