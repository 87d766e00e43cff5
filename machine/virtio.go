package machine

import (
	"errors"
	"fmt"
	"time"

	"github.com/vmm-dev/vmm/devices/ratelimit"
	"github.com/vmm-dev/vmm/devices/virtio"
	"github.com/vmm-dev/vmm/devices/virtio/balloon"
	"github.com/vmm-dev/vmm/devices/virtio/blk"
	vconsole "github.com/vmm-dev/vmm/devices/virtio/console"
	"github.com/vmm-dev/vmm/devices/virtio/fs"
	"github.com/vmm-dev/vmm/devices/virtio/net"
	"github.com/vmm-dev/vmm/devices/virtio/p9"
	"github.com/vmm-dev/vmm/devices/virtio/rng"
	"github.com/vmm-dev/vmm/devices/virtio/vsock"
	"github.com/vmm-dev/vmm/kvm"
)

// virtioDevice is a configured virtio device before a transport carries
// it: the devices never know which one does.
type virtioDevice struct {
	name string
	dev  virtio.Device
}

// buildVirtioDevices makes the configured devices in their stable order
// (disks, then NICs, the entropy device, vsock, the balloon: the first disk is
// /dev/vda), whichever transport will carry them.
func (m *Machine) buildVirtioDevices() ([]virtioDevice, error) {
	var devs []virtioDevice
	for i, d := range m.cfg.Disks {
		lim, err := ratelimit.New(d.RateLimit, nil)
		if err != nil {
			return nil, fmt.Errorf("--disk %s: %w", d.Path, err)
		}
		dev, err := blk.New(d.Path, blk.Options{ReadOnly: d.ReadOnly, RateLimiter: lim})
		if err != nil {
			return nil, fmt.Errorf("--disk %s: %w", d.Path, err)
		}
		m.onClose(dev.Close)
		m.disks = append(m.disks, dev)
		devs = append(devs, virtioDevice{fmt.Sprintf("virtio-blk %d (%s)", i, d.Path), dev})
	}
	for _, n := range m.cfg.NICs {
		dev, err := m.newNIC(n)
		if err != nil {
			return nil, err
		}
		devs = append(devs, virtioDevice{fmt.Sprintf("virtio-net %d (%s)", len(devs), dev.Name()), dev})
	}
	if e := m.cfg.Entropy; e != nil {
		lim, err := ratelimit.New(e.RateLimit, nil)
		if err != nil {
			return nil, fmt.Errorf("--entropy: %w", err)
		}
		m.entropy = rng.New(rng.Options{RateLimiter: lim})
		devs = append(devs, virtioDevice{"virtio-rng", m.entropy})
	}
	if vc := m.cfg.Vsock; vc != nil {
		dev, err := vsock.New(vsock.Config{GuestCID: vc.GuestCID, UDSPath: vc.UDSPath})
		if err != nil {
			return nil, fmt.Errorf("--vsock: %w", err)
		}
		// Registered before the transport's closer: Close runs closers in
		// reverse, so the transport stops before the device closes.
		m.onClose(dev.Close)
		m.vsock = dev
		devs = append(devs, virtioDevice{fmt.Sprintf("virtio-vsock (cid %d, %s)", vc.GuestCID, vc.UDSPath), dev})
	}
	if bc := m.cfg.Balloon; bc != nil {
		m.balloon = balloon.New(balloon.Config{TargetPages: mibToPages(bc.AmountMiB),
			DeflateOnOOM: bc.DeflateOnOOM, StatsInterval: bc.StatsInterval})
		m.balloonIndex = len(devs)
		devs = append(devs, virtioDevice{"virtio-balloon", m.balloon})
	}
	for _, sh := range m.cfg.Shares {
		d, err := m.shareDevices(sh)
		if err != nil {
			return nil, err
		}
		devs = append(devs, d...)
	}
	if len(m.cfg.ConsolePorts) > 0 {
		dev, err := vconsole.New(m.cfg.ConsolePorts)
		if err != nil {
			return nil, fmt.Errorf("virtio-console: %w", err)
		}
		m.vconsole = dev
		devs = append(devs, virtioDevice{"virtio-console", dev})
	}
	return devs, nil
}

// shareDevices makes the devices that offer one shared directory.
func (m *Machine) shareDevices(sh Share) ([]virtioDevice, error) {
	var devs []virtioDevice
	for _, p := range sh.protocols() {
		switch p {
		case protoVirtioFS:
			dev, err := fs.New(fs.Config{HostDir: sh.HostDir, Tag: sh.Tag, ReadOnly: sh.ReadOnly})
			if err != nil {
				return nil, fmt.Errorf("--share %s: %w", sh.HostDir, err)
			}
			m.onClose(dev.Close)
			devs = append(devs, virtioDevice{fmt.Sprintf("virtio-fs %s (%s)", sh.Tag, sh.HostDir), dev})
		case protoP9:
			dev, err := p9.New(p9.Config{HostDir: sh.HostDir, Tag: sh.Tag, ReadOnly: sh.ReadOnly})
			if err != nil {
				return nil, fmt.Errorf("--share %s: %w", sh.HostDir, err)
			}
			m.onClose(dev.Close)
			devs = append(devs, virtioDevice{fmt.Sprintf("virtio-9p %s (%s)", sh.Tag, sh.HostDir), dev})
		}
	}
	return devs, nil
}

// addVirtioDevices attaches the configured devices as virtio-mmio
// devices, in buildVirtioDevices' order, and returns where each sits.
func (m *Machine) addVirtioDevices() ([]virtioSlot, error) {
	devs, err := m.buildVirtioDevices()
	if err != nil {
		return nil, err
	}
	slots := make([]virtioSlot, 0, len(devs))
	for i, d := range devs {
		slot, err := m.attachVirtio(d.name, i, d.dev)
		if err != nil {
			return nil, err
		}
		slots = append(slots, slot)
	}
	return slots, nil
}

// attachVirtio puts dev behind a virtio-mmio transport in slot index: the
// window on the MMIO bus, a KVM_IRQ_LINE GSI for its interrupt, and an ioeventfd
// per queue on QueueNotify so the guest's kicks reach the device's
// goroutine without a trip through a vCPU thread.
func (m *Machine) attachVirtio(name string, index int, dev virtio.Device) (virtioSlot, error) {
	slot := slotFor(index)
	t, err := virtio.NewMMIO(dev, m.mem, m.newIRQLine(slot.GSI))
	if err != nil {
		return slot, fmt.Errorf("%s: %w", name, err)
	}
	m.onClose(t.Close)
	m.cores = append(m.cores, t.Core)
	m.mmioTransports = append(m.mmioTransports, t)
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

// newNIC opens (or creates) the NIC's TAP and makes a virtio-net device
// on it.
func (m *Machine) newNIC(n NIC) (*net.Net, error) {
	rx, err := ratelimit.New(n.RXRateLimit, nil)
	if err != nil {
		return nil, fmt.Errorf("--net tap=%s: receive: %w", n.TAP, err)
	}
	tx, err := ratelimit.New(n.TXRateLimit, nil)
	if err != nil {
		return nil, fmt.Errorf("--net tap=%s: transmit: %w", n.TAP, err)
	}
	dev, err := net.New(net.Config{TAP: n.TAP, MAC: n.MAC, RXLimiter: rx, TXLimiter: tx,
		NoMergeableRX: n.NoMergeableRX})
	if err != nil {
		return nil, fmt.Errorf("--net tap=%s: %w", n.TAP, err)
	}
	m.onClose(dev.Close)
	m.nics = append(m.nics, dev)
	return dev, nil
}

// ErrNoDevice: a device index that the machine does not have.
var ErrNoDevice = errors.New("no such device")

// SetDiskRateLimit replaces the rate limit of disk i (in Config.Disks
// order) on the running machine; requests waiting for tokens re-check at
// once.
func (m *Machine) SetDiskRateLimit(i int, cfg ratelimit.Config) error {
	if i < 0 || i >= len(m.disks) {
		return fmt.Errorf("%w: disk %d of %d", ErrNoDevice, i, len(m.disks))
	}
	if err := m.disks[i].Limiter().Update(cfg); err != nil {
		return fmt.Errorf("disk %d: %w", i, err)
	}
	return nil
}

// DiskRateLimit returns the rate limit in force on disk i.
func (m *Machine) DiskRateLimit(i int) (ratelimit.Config, error) {
	if i < 0 || i >= len(m.disks) {
		return ratelimit.Config{}, fmt.Errorf("%w: disk %d of %d", ErrNoDevice, i, len(m.disks))
	}
	return m.disks[i].Limiter().Config(), nil
}

// SetNICRateLimit replaces the receive and transmit rate limits of NIC i
// (in Config.NICs order); nil leaves one as it is.
func (m *Machine) SetNICRateLimit(i int, rx, tx *ratelimit.Config) error {
	if i < 0 || i >= len(m.nics) {
		return fmt.Errorf("%w: NIC %d of %d", ErrNoDevice, i, len(m.nics))
	}
	if rx != nil {
		if err := m.nics[i].RXLimiter().Update(*rx); err != nil {
			return fmt.Errorf("NIC %d: receive: %w", i, err)
		}
	}
	if tx != nil {
		if err := m.nics[i].TXLimiter().Update(*tx); err != nil {
			return fmt.Errorf("NIC %d: transmit: %w", i, err)
		}
	}
	return nil
}

// SetEntropyRateLimit replaces the entropy device's rate limit.
func (m *Machine) SetEntropyRateLimit(cfg ratelimit.Config) error {
	if m.entropy == nil {
		return fmt.Errorf("%w: no entropy device", ErrNoDevice)
	}
	return m.entropy.Limiter().Update(cfg)
}

// mibToPages converts a balloon size to 4 KiB pages, saturating at what
// num_pages holds.
func mibToPages(mib uint64) uint32 {
	return uint32(min(mib*(1<<20/balloon.PageSize), 1<<32-1))
}

// BalloonState is the balloon as the API reports it.
type BalloonState struct {
	TargetPages, ActualPages uint32
	DeflateOnOOM             bool
	StatsInterval            time.Duration
	Stats                    balloon.Stats
}

// Balloon returns the balloon's state; ErrNoDevice without one.
func (m *Machine) Balloon() (BalloonState, error) {
	b := m.balloon
	if b == nil {
		return BalloonState{}, fmt.Errorf("%w: no balloon", ErrNoDevice)
	}
	return BalloonState{TargetPages: b.Target(), ActualPages: b.Actual(), DeflateOnOOM: b.DeflateOnOOM(),
		StatsInterval: b.StatsInterval(), Stats: b.Stats()}, nil
}

// SetBalloonTarget sets the balloon's target and tells the driver, which
// inflates or deflates to it (virtio 1.2 §5.5.6: a configuration change).
func (m *Machine) SetBalloonTarget(mib uint64) error {
	if m.balloon == nil {
		return fmt.Errorf("%w: no balloon", ErrNoDevice)
	}
	if mib > m.cfg.Memory>>20 {
		return fmt.Errorf("balloon target %d MiB exceeds the guest's %d MiB", mib, m.cfg.Memory>>20)
	}
	m.balloon.SetTarget(mibToPages(mib))
	if err := m.cores[m.balloonIndex].ConfigChanged(); err != nil {
		return fmt.Errorf("balloon: %w", err)
	}
	return nil
}

// SetBalloonStatsInterval changes how often the balloon asks for
// statistics.
func (m *Machine) SetBalloonStatsInterval(d time.Duration) error {
	if m.balloon == nil {
		return fmt.Errorf("%w: no balloon", ErrNoDevice)
	}
	return m.balloon.SetStatsInterval(d)
}

// VirtioConsole returns the virtio-console device; nil without
// Config.ConsolePorts.
func (m *Machine) VirtioConsole() *vconsole.Console { return m.vconsole }

// SwapDisk replaces the backing file of disk i (in Config.Disks order)
// on the running machine and tells the driver its configuration changed,
// so the guest re-reads the capacity (Firecracker's PATCH /drives
// path_on_host). The disks are the first virtio devices, so disk i's
// transport is cores[i].
func (m *Machine) SwapDisk(i int, path string) error {
	if i < 0 || i >= len(m.disks) {
		return fmt.Errorf("%w: disk %d of %d", ErrNoDevice, i, len(m.disks))
	}
	if err := m.disks[i].Swap(path); err != nil {
		return fmt.Errorf("disk %d: %w", i, err)
	}
	if i < len(m.cores) {
		if err := m.cores[i].ConfigChanged(); err != nil {
			return fmt.Errorf("disk %d: %w", i, err)
		}
	}
	return nil
}

// DiskPath returns the file backing disk i now.
func (m *Machine) DiskPath(i int) (string, error) {
	if i < 0 || i >= len(m.disks) {
		return "", fmt.Errorf("%w: disk %d of %d", ErrNoDevice, i, len(m.disks))
	}
	return m.disks[i].Path(), nil
}

// DeviceStats are the counters of the virtio devices, for metrics.
type DeviceStats struct {
	Disks []DiskStats // in Config.Disks order
	NICs  []NICStats  // in Config.NICs order
}

// DiskStats are a disk's counters.
type DiskStats = blk.Stats

// NICStats are a NIC's counters and its limiters' throttled events.
type NICStats struct {
	net.Stats
	RXThrottled, TXThrottled uint64
}

// DeviceStats returns the devices' counters now.
func (m *Machine) DeviceStats() DeviceStats {
	var s DeviceStats
	for _, d := range m.disks {
		s.Disks = append(s.Disks, d.Stats())
	}
	for _, n := range m.nics {
		s.NICs = append(s.NICs, NICStats{Stats: n.Stats(),
			RXThrottled: n.RXLimiter().Throttled(), TXThrottled: n.TXLimiter().Throttled()})
	}
	return s
}
