package machine

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/vmm-dev/vmm/boot"
	"github.com/vmm-dev/vmm/bus"
	"github.com/vmm-dev/vmm/devices"
	"github.com/vmm-dev/vmm/devices/i8042"
	"github.com/vmm-dev/vmm/devices/power"
	"github.com/vmm-dev/vmm/devices/rtc"
	"github.com/vmm-dev/vmm/devices/serial"
	"github.com/vmm-dev/vmm/devices/virtio"
	"github.com/vmm-dev/vmm/devices/virtio/balloon"
	"github.com/vmm-dev/vmm/devices/virtio/blk"
	vconsole "github.com/vmm-dev/vmm/devices/virtio/console"
	"github.com/vmm-dev/vmm/devices/virtio/net"
	virtiopci "github.com/vmm-dev/vmm/devices/virtio/pci"
	"github.com/vmm-dev/vmm/devices/virtio/rng"
	"github.com/vmm-dev/vmm/devices/virtio/vsock"
	"github.com/vmm-dev/vmm/devices/vmgenid"
	"github.com/vmm-dev/vmm/kvm"
	"github.com/vmm-dev/vmm/memory"
	"github.com/vmm-dev/vmm/vcpu"
)

// Sentinel errors for how a run can end other than by the guest's choice.
var (
	// ErrStopped: Stop was called (the user quit, or a signal arrived).
	ErrStopped = errors.New("VM stopped by the host")
	// ErrGuestPanic: the guest kernel panicked: its pvpanic device said
	// so, or its console did and it then reset, powered off or stayed
	// halted (panicwatch.go).
	ErrGuestPanic = errors.New("guest kernel panicked")
)

// Machine is one assembled VM, ready to run once.
type Machine struct {
	cfg      Config
	sys      *kvm.System
	vm       *kvm.VM
	mem      *memory.Memory
	pio      *bus.Bus
	mmio     *bus.Bus
	vcpus    []*vcpu.VCPU
	uart     *serial.UART
	progress *i8042.ProgressPort
	kbd      *i8042.Controller
	rtc      *rtc.RTC
	pm       *power.Device
	resetCtl *power.ResetControl
	panics   *panicWatch
	panicked panicState
	genID    *vmgenid.Device // nil with NoACPI
	pci      *pciHost        // nil with the virtio-mmio transport
	disks    []*blk.Block    // in Config.Disks order
	nics     []*net.Net      // in Config.NICs order
	entropy  *rng.RNG
	vsock    *vsock.Vsock
	balloon  *balloon.Balloon
	vconsole *vconsole.Console
	// cores are the virtio devices' transport-neutral state, in
	// buildVirtioDevices' order, whichever transport carries them.
	cores        []*virtio.Core
	balloonIndex int // the balloon's index in cores, when there is one
	// mmioTransports carry the cores with virtio-mmio, pciTransports
	// with virtio-pci, in the same order.
	mmioTransports []*virtio.MMIO
	pciTransports  []*virtiopci.Transport
	Image          *boot.Image

	// dirtyBase: a Full snapshot or a restore happened, so KVM's dirty
	// log since then is a complete Diff (snapshot.go).
	dirtyBase bool

	closers []func() error // undone in reverse order by Close
	phases  []Phase

	endOnce sync.Once
	end     outcome
}

type outcome struct {
	action devices.PowerAction
	err    error
}

// New builds the VM described by cfg. Nothing runs until Run.
func New(cfg Config) (_ *Machine, err error) {
	cfg = cfg.withDefaults()
	m := &Machine{cfg: cfg, pio: &bus.Bus{}, mmio: &bus.Bus{}}
	defer func() {
		if err != nil {
			err = errors.Join(err, m.Close())
		}
	}()

	mark := m.phaseTimer()
	if m.sys, err = kvm.Open(); err != nil {
		return nil, err
	}
	m.onClose(m.sys.Close)
	maxCPUs, err := m.sys.MaxVCPUs()
	if err != nil {
		return nil, err
	}
	if err := cfg.validate(maxCPUs); err != nil {
		return nil, err
	}
	if m.mem, err = memory.New(cfg.Memory); err != nil {
		return nil, fmt.Errorf("guest memory: %w", err)
	}
	m.onClose(m.mem.Close)
	if cfg.TrackDirtyPages {
		// The devices' writes, which KVM's dirty log does not see.
		m.mem.TrackDirty()
	}

	// The kernel and initrd load into guest RAM while KVM is set up and
	// the devices are built: the two need nothing from each other, and
	// reading the images is the longest step of start-up. Every return
	// below waits for the loader, which writes into the RAM that Close
	// unmaps.
	type loaded struct {
		st  *boot.CPUState
		img *boot.Image
		err error
	}
	slots := plannedSlots(cfg)
	loader := make(chan loaded, 1)
	go func() {
		st, img, err := boot.Load(m.mem, boot.Config{
			KernelPath:  cfg.Kernel,
			InitrdPath:  cfg.Initrd,
			Cmdline:     cmdlineWithDevices(cfg.Cmdline, slots, !cfg.NoACPI),
			RSDP:        rsdpAddr(cfg),
			MPTableCPUs: mpTableCPUs(cfg),
		})
		loader <- loaded{st, img, err}
	}()
	var load loaded
	waitLoader := sync.OnceFunc(func() { load = <-loader })
	defer waitLoader()

	if err := m.createVM(); err != nil {
		return nil, err
	}
	mark("KVM VM and irqchip")

	// Registering guest RAM with KVM is, on some hosts, the slowest ioctl
	// of start-up (2-7 ms for the first slot, whatever its size, seen on
	// a nested host); the devices and vCPUs do not need it until the
	// first KVM_RUN, so it runs alongside them.
	slotsDone := make(chan error, 1)
	go func() { slotsDone <- m.registerMemory() }()
	var slotsErr error
	waitSlots := sync.OnceFunc(func() { slotsErr = <-slotsDone })
	defer waitSlots()

	if err := m.addPlatformDevices(); err != nil {
		return nil, err
	}
	var virtio []virtioSlot
	if cfg.Transport == TransportPCI {
		err = m.addVirtioPCIDevices()
	} else {
		virtio, err = m.addVirtioDevices()
	}
	if err != nil {
		return nil, err
	}
	if err := m.writeFirmwareTables(virtio); err != nil {
		return nil, err
	}
	mark("devices and firmware tables")
	if err := m.createVCPUs(); err != nil {
		return nil, err
	}
	mark("vCPUs")
	waitLoader()
	if load.err != nil {
		return nil, load.err
	}
	m.Image = load.img
	if err := m.vcpus[0].SetBootState(load.st); err != nil {
		return nil, err
	}
	mark("kernel and initrd (rest)")
	waitSlots()
	if slotsErr != nil {
		return nil, slotsErr
	}
	mark("guest memory slots (rest)")
	return m, nil
}

// registerMemory gives KVM the guest RAM, one slot per region.
func (m *Machine) registerMemory() error {
	for slot, r := range m.mem.Regions() {
		var flags uint32
		if m.cfg.TrackDirtyPages {
			flags = kvm.MemLogDirtyPages
		}
		if err := m.vm.SetUserMemoryRegion(kvm.UserspaceMemoryRegion{
			Slot: uint32(slot), Flags: flags, GuestPhysAddr: uint64(r.Base),
			MemorySize: uint64(len(r.Host)), UserspaceAddr: kvm.HostAddr(r.Host),
		}); err != nil {
			return fmt.Errorf("guest memory slot %d: %w", slot, err)
		}
	}
	return nil
}

// plannedSlots is where the virtio devices will sit: known from the
// configuration alone, so the command line can be written before the
// devices exist.
func plannedSlots(cfg Config) []virtioSlot {
	if cfg.Transport == TransportPCI {
		return nil
	}
	slots := make([]virtioSlot, cfg.virtioDevices())
	for i := range slots {
		slots[i] = slotFor(i)
	}
	return slots
}

func rsdpAddr(cfg Config) memory.GuestAddr {
	if cfg.NoACPI {
		return 0
	}
	return acpiTableBase
}

func mpTableCPUs(cfg Config) int {
	if cfg.NoACPI {
		return cfg.CPUs
	}
	return 0
}

// Addresses KVM needs inside the guest's physical space on Intel hosts
// (a TSS and an identity-map page for real-mode emulation): placed in the
// MMIO hole, just below the BIOS area, where nothing else lives.
const (
	tssAddr         = 0xfffb_d000
	identityMapAddr = 0xfffb_c000
)

func (m *Machine) createVM() error {
	var err error
	if m.vm, err = m.sys.CreateVM(); err != nil {
		return err
	}
	m.onClose(m.vm.Close)
	if err := m.vm.SetIdentityMapAddr(identityMapAddr); err != nil {
		return err
	}
	if err := m.vm.SetTSSAddr(tssAddr); err != nil {
		return err
	}
	// The in-kernel PIC, IOAPIC and local APICs, and the PIT: interrupts
	// and timers never leave the kernel.
	if err := m.vm.CreateIRQChip(); err != nil {
		return err
	}
	return m.vm.CreatePIT2()
}

// createVCPUs creates and configures every vCPU; the boot vCPU's
// registers are set once the kernel is loaded.
func (m *Machine) createVCPUs() error {
	supported, err := m.sys.SupportedCPUID()
	if err != nil {
		return err
	}
	for id := 0; id < m.cfg.CPUs; id++ {
		fd, err := m.vm.CreateVCPU(id)
		if err != nil {
			return err
		}
		m.onClose(fd.Close)
		v, err := vcpu.New(fd, vcpu.Config{
			Buses:  vcpu.Buses{PIO: m.pio, MMIO: m.mmio},
			CPUID:  vcpu.CPUIDFor(supported, id, m.cfg.CPUs),
			Memory: m.mem,
		})
		if err != nil {
			return err
		}
		m.vcpus = append(m.vcpus, v)
	}
	return nil
}

// Run runs the guest until it powers off or resets, an error ends it, or
// Stop is called. It returns what the guest asked for.
func (m *Machine) Run() (devices.PowerAction, error) {
	var wg sync.WaitGroup
	for _, v := range m.vcpus {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ev, err := v.Run()
			switch {
			case err != nil:
				m.finish(0, err)
			case ev == vcpu.EventPowerOff:
				m.finish(devices.PowerOff, nil)
			case ev == vcpu.EventReset:
				m.finish(devices.Reset, nil)
			}
		}()
	}
	wg.Wait()
	end := m.end
	if end.err == nil {
		end.err = m.panicAfter(end.action.String())
	}
	return end.action, end.err
}

// StopStates returns where each vCPU was when Stop ended Run, in vCPU
// order; call it after Run returned.
func (m *Machine) StopStates() []vcpu.StopState {
	var states []vcpu.StopState
	for _, v := range m.vcpus {
		if st := v.StopState(); st != nil {
			states = append(states, *st)
		}
	}
	return states
}

// DeviceStates describes each running virtio device's queues as their
// rings in guest memory show them (and a virtio-mmio device's unacknowledged
// interrupt causes), one line a queue: with StopStates, the evidence of
// which side a stalled transfer waits on. Safe while the VM runs.
func (m *Machine) DeviceStates() []string {
	mmio := make(map[*virtio.Core]*virtio.MMIO, len(m.mmioTransports))
	for _, t := range m.mmioTransports {
		mmio[t.Core] = t
	}
	var lines []string
	for i, c := range m.cores {
		name := fmt.Sprintf("virtio-%v #%d", c.Type(), i)
		if t := mmio[c]; t != nil {
			name += fmt.Sprintf(" (mmio, interrupt status %#x)", t.InterruptStatus())
		}
		// Only atomics here: a stop report must not wait on a lock that
		// a stuck vCPU may hold (Core.Status takes the core's mutex).
		states := c.RingStates()
		if states == nil {
			lines = append(lines, name+": not running (no DRIVER_OK yet, or reset)")
			continue
		}
		for q, st := range states {
			if st != nil {
				lines = append(lines, fmt.Sprintf("%s queue %d: %v", name, q, st))
			}
		}
	}
	// A NIC's counters: whether frames still moved, what was refused.
	for _, n := range m.nics {
		lines = append(lines, fmt.Sprintf("virtio-net %s: %v", n.Name(), n.Stats()))
	}
	return lines
}

// Stop ends Run from any goroutine.
func (m *Machine) Stop() { m.finish(0, ErrStopped) }

// finish records the first way the run ended and stops every vCPU.
func (m *Machine) finish(action devices.PowerAction, err error) {
	m.endOnce.Do(func() {
		m.end = outcome{action: action, err: err}
		for _, v := range m.vcpus {
			v.Kick()
		}
	})
}

// power is the devices' way to end the run.
func (m *Machine) power(a devices.PowerAction) { m.finish(a, nil) }

// Stats returns the exit counters of all vCPUs, summed.
func (m *Machine) Stats() *vcpu.Stats {
	total := &vcpu.Stats{Exits: map[string]uint64{}, Ports: map[uint16]uint64{}}
	for _, v := range m.vcpus {
		total.Add(v.Stats())
	}
	return total
}

// Phase is one step of building the VM and how long it took.
type Phase struct {
	Name     string
	Duration time.Duration
}

// Phases returns how long each step of New took, for --stats.
func (m *Machine) Phases() []Phase { return m.phases }

func (m *Machine) phaseTimer() func(name string) {
	last := time.Now()
	return func(name string) {
		now := time.Now()
		m.phases = append(m.phases, Phase{name, now.Sub(last)})
		last = now
	}
}

// Config returns what the machine was built from; for a restored one,
// what its snapshot held: the devices with the files and rate limits in
// force when it was taken.
func (m *Machine) Config() Config { return m.cfg }

// FirstRun returns when the boot vCPU first entered the guest.
func (m *Machine) FirstRun() time.Time { return m.vcpus[0].FirstRun() }

// Started is closed when the boot vCPU first entered the guest.
func (m *Machine) Started() <-chan struct{} { return m.vcpus[0].Started() }

// Console returns the serial port, to feed it the host's input.
func (m *Machine) Console() *serial.UART { return m.uart }

func (m *Machine) onClose(f func() error) { m.closers = append(m.closers, f) }

// Close releases everything New acquired, in reverse order.
func (m *Machine) Close() error {
	var errs []error
	for i := len(m.closers) - 1; i >= 0; i-- {
		errs = append(errs, m.closers[i]())
	}
	m.closers = nil
	return errors.Join(errs...)
}
