package machine

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/vmm-dev/vmm/bus"
	"github.com/vmm-dev/vmm/devices/i8042"
	pcibus "github.com/vmm-dev/vmm/devices/pci"
	"github.com/vmm-dev/vmm/devices/power"
	"github.com/vmm-dev/vmm/devices/rtc"
	"github.com/vmm-dev/vmm/devices/serial"
	"github.com/vmm-dev/vmm/devices/virtio"
	"github.com/vmm-dev/vmm/devices/virtio/balloon"
	virtiopci "github.com/vmm-dev/vmm/devices/virtio/pci"
	"github.com/vmm-dev/vmm/kvm"
	"github.com/vmm-dev/vmm/memory"
	"github.com/vmm-dev/vmm/snapshot"
	"github.com/vmm-dev/vmm/vcpu"
)

// Sentinel errors of pause, snapshot and restore; callers branch on them.
var (
	// ErrNotPaused: a snapshot needs a paused VM.
	ErrNotPaused = errors.New("the VM is not paused")
	// ErrSnapshotUnsupported: this VM has a part whose state a snapshot
	// cannot save yet; the message names it.
	ErrSnapshotUnsupported = errors.New("snapshot not supported for this VM")
	// ErrNoDirtyBase: a Diff snapshot needs dirty page tracking and a
	// Full snapshot (or a restore) before it.
	ErrNoDirtyBase = errors.New("no base for a Diff snapshot")
	// ErrSnapshotState: the snapshot's sections are unusable (they
	// passed the checksum, so they were made so, not damaged).
	ErrSnapshotState = errors.New("invalid snapshot state")
)

// SnapshotType is Firecracker's snapshot_type.
type SnapshotType string

const (
	// SnapshotFull writes all of guest RAM.
	SnapshotFull SnapshotType = "Full"
	// SnapshotDiff writes only the pages the guest wrote since the last
	// snapshot, into a sparse file at their offsets.
	SnapshotDiff SnapshotType = "Diff"
)

// SnapshotParams say where a snapshot goes.
type SnapshotParams struct {
	StatePath  string // the state file (snapshot_path)
	MemPath    string // the guest memory file (mem_file_path)
	Type       SnapshotType
	VMMVersion string // recorded; a restore by another version is refused
}

// SnapshotStats is what a snapshot took.
type SnapshotStats struct {
	MemBytesWritten int64 // guest RAM bytes written (data, not holes)
	StateBytes      int
	Duration        time.Duration
}

// Section names of the state file.
const (
	secMachine = "machine"
	secVM      = "kvm-vm"
	secVCPUs   = "vcpus"
	secSerial  = "serial"
	// The virtio transports' state: virtio-mmio's, or virtio-pci's with
	// the PCI bus's own (its host bridge).
	secVirtio    = "virtio-mmio"
	secVirtioPCI = "virtio-pci"
	secPCIBus    = "pci-bus"
	// secBalloon: the balloon's own state, when the VM has one.
	secBalloon = "balloon"
	// The legacy platform devices: the keyboard controller, the CMOS
	// clock, and the ACPI sleep and reset control registers.
	secI8042 = "i8042"
	secRTC   = "rtc"
	secPower = "power"
)

// namedState is a section's name and the value it encodes (or, on
// restore, a pointer to decode it into).
type namedState struct {
	name string
	v    any
}

// savedMachine is the shape of the VM, which a restore rebuilds before
// it loads the state into it.
type savedMachine struct {
	CPUs    int
	Memory  uint64
	NoACPI  bool
	Regions []savedRegion
	// Transport carries the virtio devices: virtio-pci puts them in the
	// same slots with BARs where the guest's firmware tables say.
	Transport Transport
	// The virtio devices, rebuilt in the same order at the same slots:
	// disks (their images are not in the snapshot: the same paths must
	// hold the same data), NICs (with the MAC the guest knows) and the
	// entropy device.
	Disks   []Disk
	NICs    []NIC
	Entropy *Entropy
	// Vsock is the vsock device: its guest CID and host socket (a
	// restore listens there, or at its vsock_override). Its connections
	// are not saved: both the VM that goes on and every restored one get
	// a transport reset.
	Vsock *Vsock
	// Balloon is the balloon's configuration; its target and the
	// driver's count are in the balloon section.
	Balloon *Balloon
	// VMGenID: the VM has a generation ID, which a restore replaces
	// (devices/vmgenid).
	VMGenID bool
}

type savedRegion struct {
	Base uint64
	Size uint64
}

// savedVM is the VM-wide state KVM keeps: the PIT, kvmclock and the
// irqchips.
type savedVM struct {
	PIT      kvm.PITState2
	Clock    kvm.ClockData
	IRQChips []kvm.IRQChipState // PIC master, PIC slave, IOAPIC
}

// savedPower is the power section: the sleep registers and the reset
// control register.
type savedPower struct {
	Sleep power.State
	Reset power.ResetState
}

var irqChips = []kvm.IRQChip{kvm.IRQChipPICMaster, kvm.IRQChipPICSlave, kvm.IRQChipIOAPIC}

// Pause stops every vCPU out of KVM_RUN and returns once all of them
// wait. Device requests already in flight complete; virtio devices take
// no new ones, since only the stopped guest could make them.
func (m *Machine) Pause() {
	for _, v := range m.vcpus {
		v.Pause()
	}
}

// Resume lets the vCPUs run again; each tells the guest's kvmclock it
// was stopped (KVM_KVMCLOCK_CTRL) on its way back in.
func (m *Machine) Resume() {
	for _, v := range m.vcpus {
		v.Resume()
	}
}

// Paused reports whether every vCPU is held out of the guest.
func (m *Machine) Paused() bool {
	for _, v := range m.vcpus {
		if !v.Paused() {
			return false
		}
	}
	return len(m.vcpus) > 0
}

// snapshotBlocker names what keeps this VM from being snapshotted, or
// returns "".
func (m *Machine) snapshotBlocker() string {
	switch {
	case len(m.cfg.Shares) > 0:
		// A shared directory's state is the host's open files and the
		// guest's FUSE node IDs or 9p fids for them.
		return "shared directories"
	case len(m.mmioTransports)+len(m.pciTransports) != len(m.cores):
		return "a virtio device without a transport that saves it"
	}
	return ""
}

// Snapshot writes the paused VM to p.StatePath and p.MemPath. The VM
// stays paused; Resume continues it.
func (m *Machine) Snapshot(p SnapshotParams) (SnapshotStats, error) {
	start := time.Now()
	var st SnapshotStats
	if !m.Paused() {
		return st, ErrNotPaused
	}
	if b := m.snapshotBlocker(); b != "" {
		return st, fmt.Errorf("%w: %s", ErrSnapshotUnsupported, b)
	}
	switch p.Type {
	case SnapshotFull, "":
		p.Type = SnapshotFull
	case SnapshotDiff:
		if !m.cfg.TrackDirtyPages {
			return st, fmt.Errorf("%w: dirty page tracking is off (track_dirty_pages)", ErrNoDirtyBase)
		}
		if !m.dirtyBase {
			// KVM logs only the guest's writes; the VMM's own (the
			// kernel it loaded) are in no log, so a diff is only
			// complete against a snapshot or restore taken after them.
			return st, fmt.Errorf("%w: take a Full snapshot first", ErrNoDirtyBase)
		}
	default:
		return st, fmt.Errorf("snapshot type %q: want Full or Diff", p.Type)
	}
	// The devices finish their requests in flight and stop, so their
	// rings and guest memory hold still while both are written; they
	// start again when the snapshot is done, whether or not it worked.
	// The vsock device's stop closed its host connections: a transport
	// reset tells the guest (virtio 1.2 §5.10.6.7), as it tells every VM
	// restored from the snapshot.
	for _, c := range m.cores {
		c.Quiesce()
	}
	defer func() {
		for _, c := range m.cores {
			c.Unquiesce()
		}
		if m.vsock != nil {
			m.vsock.TransportReset()
		}
	}()
	f, err := m.saveState(p.VMMVersion)
	if err != nil {
		return st, err
	}
	var regions [][]byte
	for _, r := range m.mem.Regions() {
		regions = append(regions, r.Host)
	}
	// Read (and so clear) the dirty logs in both cases: after a Full
	// snapshot the next Diff holds what changed since this one. A page
	// is dirty if KVM saw the guest (or itself) write it, or the VMM's
	// devices did (memory's own log: buffers and rings they wrote).
	var dirty [][]uint64
	if m.cfg.TrackDirtyPages {
		own := m.mem.TakeDirty()
		for slot, r := range m.mem.Regions() {
			bm, err := m.vm.DirtyLog(uint32(slot), uint64(len(r.Host)))
			if err != nil {
				return st, fmt.Errorf("snapshot: %w", err)
			}
			if slot < len(own) {
				for i := range min(len(bm), len(own[slot])) {
					bm[i] |= own[slot][i]
				}
			}
			dirty = append(dirty, bm)
		}
	}
	if p.Type == SnapshotFull {
		dirty = nil
	}
	if st.MemBytesWritten, err = snapshot.WriteMemory(p.MemPath, regions, dirty); err != nil {
		return st, fmt.Errorf("snapshot: %w", err)
	}
	b, err := snapshot.Encode(f)
	if err != nil {
		return st, fmt.Errorf("snapshot: %w", err)
	}
	st.StateBytes = len(b)
	if err := snapshot.WriteFile(p.StatePath, f); err != nil {
		return st, err
	}
	m.dirtyBase = true
	st.Duration = time.Since(start)
	return st, nil
}

func (m *Machine) saveState(version string) (*snapshot.File, error) {
	hdr, err := hostHeader(m.sys, version)
	if err != nil {
		return nil, err
	}
	// The devices as they are now: a disk's file and the rate limits may
	// have changed since boot (PATCH /drives, /network-interfaces).
	sm := savedMachine{CPUs: m.cfg.CPUs, Memory: m.cfg.Memory, NoACPI: m.cfg.NoACPI, Transport: m.cfg.Transport,
		Vsock: m.cfg.Vsock, Balloon: m.cfg.Balloon, VMGenID: m.genID != nil}
	for i, d := range m.cfg.Disks {
		d.Path, d.RateLimit = m.disks[i].Path(), m.disks[i].Limiter().Config()
		sm.Disks = append(sm.Disks, d)
	}
	for i, n := range m.cfg.NICs {
		n.MAC = m.nics[i].MAC() // the generated one, when none was given
		n.RXRateLimit, n.TXRateLimit = m.nics[i].RXLimiter().Config(), m.nics[i].TXLimiter().Config()
		sm.NICs = append(sm.NICs, n)
	}
	if e := m.cfg.Entropy; e != nil {
		sm.Entropy = &Entropy{RateLimit: m.entropy.Limiter().Config()}
	}
	transports, err := m.saveTransports()
	if err != nil {
		return nil, err
	}
	for _, r := range m.mem.Regions() {
		sm.Regions = append(sm.Regions, savedRegion{Base: uint64(r.Base), Size: uint64(len(r.Host))})
	}
	var svm savedVM
	if svm.PIT, err = m.vm.PIT2(); err != nil {
		return nil, fmt.Errorf("snapshot: %w", err)
	}
	if svm.Clock, err = m.vm.Clock(); err != nil {
		return nil, fmt.Errorf("snapshot: %w", err)
	}
	for _, c := range irqChips {
		s, err := m.vm.IRQChip(c)
		if err != nil {
			return nil, fmt.Errorf("snapshot: %w", err)
		}
		svm.IRQChips = append(svm.IRQChips, s)
	}
	list, err := m.sys.MSRIndexList()
	if err != nil {
		return nil, fmt.Errorf("snapshot: %w", err)
	}
	msrs := vcpu.SnapshotMSRs(list)
	xsave, err := m.vm.XSaveSize()
	if err != nil {
		return nil, fmt.Errorf("snapshot: %w", err)
	}
	var vcpus []*vcpu.State
	for _, v := range m.vcpus {
		s, err := v.Save(msrs, xsave)
		if err != nil {
			return nil, fmt.Errorf("snapshot: %w", err)
		}
		vcpus = append(vcpus, s)
	}
	f := &snapshot.File{Header: hdr}
	sections := []namedState{
		{secMachine, sm}, {secVM, svm}, {secVCPUs, vcpus}, {secSerial, m.uart.Save()},
		{secI8042, m.kbd.Save()}, {secRTC, m.rtc.Save()}, {secPower, savedPower{m.pm.Save(), m.resetCtl.Save()}},
	}
	sections = append(sections, transports...)
	if m.balloon != nil {
		sections = append(sections, namedState{secBalloon, m.balloon.Save()})
	}
	for _, s := range sections {
		b, err := json.Marshal(s.v)
		if err != nil {
			return nil, fmt.Errorf("snapshot: encode %s: %w", s.name, err)
		}
		f.Sections = append(f.Sections, snapshot.Section{Name: s.name, Data: b})
	}
	return f, nil
}

// saveTransports returns the sections of the virtio transports.
func (m *Machine) saveTransports() ([]namedState, error) {
	if m.pci == nil {
		mmio, err := saveEach[virtio.MMIOState](m.mmioTransports)
		return []namedState{{secVirtio, mmio}}, err
	}
	pci, err := saveEach[virtiopci.State](m.pciTransports)
	return []namedState{{secVirtioPCI, pci}, {secPCIBus, m.pci.bus.Save()}}, err
}

// saveEach saves each transport, in order.
func saveEach[S any, T interface{ Save() (S, error) }](ts []T) ([]S, error) {
	var states []S
	for _, t := range ts {
		s, err := t.Save()
		if err != nil {
			return nil, fmt.Errorf("snapshot: %w", err)
		}
		states = append(states, s)
	}
	return states, nil
}

// restoreEach restores each transport from its state, in order.
func restoreEach[S any, T interface{ Restore(S) error }](ts []T, states []S) error {
	for i, t := range ts {
		if err := t.Restore(states[i]); err != nil {
			return fmt.Errorf("virtio device %d: %w", i, err)
		}
	}
	return nil
}

// savedTransports is the transport sections a restore reads.
type savedTransports struct {
	mmio []virtio.MMIOState
	pci  []virtiopci.State
	bus  pcibus.BusState
}

func (t *savedTransports) sections(tr Transport) []namedState {
	if tr == TransportPCI {
		return []namedState{{secVirtioPCI, &t.pci}, {secPCIBus, &t.bus}}
	}
	return []namedState{{secVirtio, &t.mmio}}
}

func (t *savedTransports) count(tr Transport) int {
	if tr == TransportPCI {
		return len(t.pci)
	}
	return len(t.mmio)
}

// restoreTransports loads the transports' state, last of all: a restored
// device starts its workers and raises its pending interrupt into the
// irqchip and local APICs restored before it. Under virtio-pci the bus
// then decodes the restored BARs, which registers the notification
// ioeventfds where the guest put them.
func (m *Machine) restoreTransports(t *savedTransports) error {
	if m.pci == nil {
		return restoreEach(m.mmioTransports, t.mmio)
	}
	if err := restoreEach(m.pciTransports, t.pci); err != nil {
		return err
	}
	if err := m.pci.bus.Restore(t.bus); err != nil {
		return fmt.Errorf("%w: PCI bus: %w", ErrSnapshotState, err)
	}
	return nil
}

// hostHeader is the header a snapshot made on this host carries.
func hostHeader(sys *kvm.System, version string) (snapshot.Header, error) {
	h := snapshot.Header{FormatVersion: snapshot.FormatVersion, VMMVersion: version}
	leaves, err := sys.SupportedCPUID()
	if err != nil {
		return h, fmt.Errorf("snapshot: %w", err)
	}
	for _, l := range leaves {
		switch l.Function {
		case 0:
			var v [12]byte
			for i, r := range []uint32{l.EBX, l.EDX, l.ECX} {
				v[4*i], v[4*i+1], v[4*i+2], v[4*i+3] = byte(r), byte(r>>8), byte(r>>16), byte(r>>24)
			}
			h.CPUVendor = string(v[:])
		case 1:
			h.CPUSignature = l.EAX
		}
	}
	return h, nil
}

// RestoreParams say what to restore and how the restored VM meets the
// host.
type RestoreParams struct {
	StatePath  string
	MemPath    string // mem_backend File: mapped MAP_PRIVATE
	VMMVersion string // must equal the snapshot's
	// TrackDirtyPages logs the guest's writes from the restore on, for
	// Diff snapshots of the restored VM.
	TrackDirtyPages bool
	// NetworkOverrides give restored NICs other TAPs: NIC ID (iface_id)
	// to TAP name. Every ID must be the snapshot's.
	NetworkOverrides map[string]string
	// VsockUDSPath, when set, is the restored vsock device's host socket
	// instead of the snapshot's (vsock_override): the original VM, or
	// another clone, may still listen there.
	VsockUDSPath string
	Console      io.Writer
	Progress     func(value byte, sinceStart time.Duration)
}

// Restore builds a VM from a snapshot. It comes back paused: Run it, and
// Resume it when it should go on. Nothing of the VM is left when it
// fails, and nothing runs before every check passed.
func Restore(p RestoreParams) (_ *Machine, err error) {
	m := &Machine{pio: &bus.Bus{}, mmio: &bus.Bus{}}
	defer func() {
		if err != nil {
			err = errors.Join(err, m.Close())
		}
	}()
	mark := m.phaseTimer()
	f, err := snapshot.ReadFile(p.StatePath)
	if err != nil {
		return nil, err
	}
	if m.sys, err = kvm.Open(); err != nil {
		return nil, err
	}
	m.onClose(m.sys.Close)
	host, err := hostHeader(m.sys, p.VMMVersion)
	if err != nil {
		return nil, err
	}
	if err := snapshot.Check(f.Header, host); err != nil {
		return nil, fmt.Errorf("snapshot %s: %w", p.StatePath, err)
	}
	var (
		sm         savedMachine
		svm        savedVM
		cpus       []*vcpu.State
		uart       serial.State
		transports savedTransports
		kbd        i8042.State
		clock      rtc.State
		pm         savedPower
	)
	for _, s := range []namedState{
		{secMachine, &sm}, {secVM, &svm}, {secVCPUs, &cpus}, {secSerial, &uart},
		{secI8042, &kbd}, {secRTC, &clock}, {secPower, &pm},
	} {
		if err := readSection(f, s); err != nil {
			return nil, err
		}
	}
	if sm.Transport == "" {
		sm.Transport = TransportMMIO
	}
	for _, s := range transports.sections(sm.Transport) {
		if err := readSection(f, s); err != nil {
			return nil, err
		}
	}
	maxCPUs, err := m.sys.MaxVCPUs()
	if err != nil {
		return nil, err
	}
	if err := checkSaved(sm, svm, cpus, maxCPUs); err != nil {
		return nil, err
	}
	nics, err := overrideNICs(sm.NICs, p.NetworkOverrides)
	if err != nil {
		return nil, err
	}
	vs, err := overrideVsock(sm.Vsock, p.VsockUDSPath)
	if err != nil {
		return nil, err
	}
	var bal balloon.State
	if sm.Balloon != nil {
		b, ok := f.Section(secBalloon)
		if !ok {
			return nil, fmt.Errorf("%w: a balloon but no %q section", ErrSnapshotState, secBalloon)
		}
		if err := json.Unmarshal(b, &bal); err != nil {
			return nil, fmt.Errorf("%w: section %q: %w", ErrSnapshotState, secBalloon, err)
		}
	}
	m.cfg = Config{Kernel: p.StatePath, CPUs: sm.CPUs, Memory: sm.Memory, NoACPI: sm.NoACPI, Transport: sm.Transport,
		Disks: sm.Disks, NICs: nics, Entropy: sm.Entropy, Vsock: vs, Balloon: sm.Balloon,
		Console: p.Console, Progress: p.Progress, TrackDirtyPages: p.TrackDirtyPages}.withDefaults()
	if err := m.cfg.validate(maxCPUs); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrSnapshotState, err)
	}
	if n, got := m.cfg.virtioDevices(), transports.count(sm.Transport); n != got {
		return nil, fmt.Errorf("%w: %d virtio device states for %d devices", ErrSnapshotState, got, n)
	}
	mark("snapshot file")

	mf, err := snapshot.OpenMemory(p.MemPath, sm.Memory)
	if err != nil {
		return nil, err
	}
	m.mem, err = memory.NewFromFile(mf, sm.Memory)
	err = errors.Join(err, mf.Close())
	if err != nil {
		return nil, fmt.Errorf("guest memory: %w", err)
	}
	m.onClose(m.mem.Close)
	if p.TrackDirtyPages {
		m.mem.TrackDirty()
	}
	for i, r := range m.mem.Regions() {
		if i >= len(sm.Regions) || sm.Regions[i] != (savedRegion{uint64(r.Base), uint64(len(r.Host))}) {
			return nil, fmt.Errorf("%w: guest RAM layout differs from this vmm's for %d bytes", ErrSnapshotState, sm.Memory)
		}
	}
	mark("guest memory mapped")
	if err := m.createVM(); err != nil {
		return nil, err
	}
	mark("KVM VM and irqchip")
	if err := m.registerMemory(); err != nil {
		return nil, err
	}
	mark("guest memory slots")
	if err := m.addPlatformDevices(); err != nil {
		return nil, err
	}
	if m.cfg.Transport == TransportPCI {
		err = m.addVirtioPCIDevices()
	} else {
		_, err = m.addVirtioDevices()
	}
	if err != nil {
		return nil, err
	}
	mark("devices")
	if err := m.vm.SetPIT2(svm.PIT); err != nil {
		return nil, err
	}
	for _, s := range svm.IRQChips {
		if err := m.vm.SetIRQChip(s); err != nil {
			return nil, err
		}
	}
	for _, st := range cpus {
		fd, err := m.vm.CreateVCPU(st.ID)
		if err != nil {
			return nil, err
		}
		m.onClose(fd.Close)
		v, err := vcpu.New(fd, vcpu.Config{
			Buses: vcpu.Buses{PIO: m.pio, MMIO: m.mmio}, CPUID: st.CPUID, Memory: m.mem,
		})
		if err != nil {
			return nil, err
		}
		v.Pause()
		if err := v.Restore(st); err != nil {
			return nil, err
		}
		m.vcpus = append(m.vcpus, v)
	}
	// KVM_SET_CLOCK with the flags cleared (api.rst 4.56): the guest's
	// clock goes on from the value it had when paused, not from a host
	// time stamp of another boot, so it jumps neither back nor forward by
	// the time the snapshot sat on disk.
	if err := m.vm.SetClock(kvm.ClockData{Clock: svm.Clock.Clock}); err != nil {
		return nil, err
	}
	if err := m.uart.Restore(uart); err != nil {
		return nil, err
	}
	if err := m.kbd.Restore(kbd); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrSnapshotState, err)
	}
	if err := m.rtc.Restore(clock); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrSnapshotState, err)
	}
	m.pm.Restore(pm.Sleep)
	m.resetCtl.Restore(pm.Reset)
	if m.balloon != nil {
		if err := m.balloon.Restore(bal); err != nil {
			return nil, err
		}
	}
	if err := m.restoreTransports(&transports); err != nil {
		return nil, err
	}
	// The guest's vsock connections had host ends in another process:
	// the guest drops them on this event.
	if m.vsock != nil {
		m.vsock.TransportReset()
	}
	// A restored VM may be one of many copies: a new generation ID, and
	// the GED's interrupt to tell the guest (the write is in memory's
	// own dirty log, so a Diff of this VM carries the new ID).
	if sm.VMGenID {
		if m.genID == nil {
			return nil, fmt.Errorf("%w: a VM generation ID without ACPI", ErrSnapshotState)
		}
		if err := m.genID.Regenerate(); err != nil {
			return nil, err
		}
	}
	m.dirtyBase = true
	mark("vCPU and device state")
	return m, nil
}

// readSection decodes the section s names into s.v.
func readSection(f *snapshot.File, s namedState) error {
	b, ok := f.Section(s.name)
	if !ok {
		return fmt.Errorf("%w: no %q section", ErrSnapshotState, s.name)
	}
	if err := json.Unmarshal(b, s.v); err != nil {
		return fmt.Errorf("%w: section %q: %w", ErrSnapshotState, s.name, err)
	}
	return nil
}

// overrideNICs applies a restore's network overrides (iface_id to TAP).
func overrideNICs(saved []NIC, overrides map[string]string) ([]NIC, error) {
	nics := append([]NIC(nil), saved...)
	for id, tap := range overrides {
		found := false
		for i := range nics {
			if nics[i].ID == id && id != "" {
				nics[i].TAP, found = tap, true
			}
		}
		if !found {
			return nil, fmt.Errorf("%w: network override for %q: the snapshot has no network interface of that id", ErrSnapshotState, id)
		}
	}
	return nics, nil
}

// overrideVsock applies a restore's vsock_override.
func overrideVsock(saved *Vsock, udsPath string) (*Vsock, error) {
	switch {
	case udsPath == "":
		return saved, nil
	case saved == nil:
		return nil, fmt.Errorf("%w: vsock override %q: the snapshot has no vsock device", ErrSnapshotState, udsPath)
	}
	v := *saved
	v.UDSPath = udsPath
	return &v, nil
}

// checkSaved validates the decoded sections before any of them reaches
// KVM.
func checkSaved(sm savedMachine, svm savedVM, cpus []*vcpu.State, maxCPUs int) error {
	var errs []error
	if sm.CPUs < 1 || sm.CPUs > maxCPUs || sm.CPUs > 254 {
		errs = append(errs, fmt.Errorf("%d vCPUs (this host allows 1 to %d)", sm.CPUs, min(maxCPUs, 254)))
	}
	if len(cpus) != sm.CPUs {
		errs = append(errs, fmt.Errorf("%d vCPU states for %d vCPUs", len(cpus), sm.CPUs))
	}
	for i, c := range cpus {
		if c == nil || c.ID != i {
			errs = append(errs, fmt.Errorf("vCPU state %d is missing or out of order", i))
		}
	}
	if sm.Memory < memory.MinSize || sm.Memory > memory.MaxSize {
		errs = append(errs, fmt.Errorf("%d bytes of guest RAM", sm.Memory))
	}
	if len(svm.IRQChips) != len(irqChips) {
		errs = append(errs, fmt.Errorf("%d irqchip states, want %d", len(svm.IRQChips), len(irqChips)))
	} else {
		for i, c := range irqChips {
			if svm.IRQChips[i].ChipID != c {
				errs = append(errs, fmt.Errorf("irqchip state %d is for %v, want %v", i, svm.IRQChips[i].ChipID, c))
			}
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w: %w", ErrSnapshotState, errors.Join(errs...))
	}
	return nil
}
