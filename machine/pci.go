package machine

import (
	"errors"
	"fmt"
	"sync"

	"github.com/vmm-dev/vmm/acpi"
	"github.com/vmm-dev/vmm/devices/pci"
	"github.com/vmm-dev/vmm/devices/virtio"
	virtiopci "github.com/vmm-dev/vmm/devices/virtio/pci"
	"github.com/vmm-dev/vmm/kvm"
	"github.com/vmm-dev/vmm/memory"
)

// PCI wiring (docs/ARCHITECTURE.md): the root bridge forwards the low
// 256 MiB of the 32-bit MMIO hole and a window above RAM; ECAM for bus 0
// sits higher in the hole; INTx of slot s, pin p goes to GSI 16 +
// (s+p)%8, the IOAPIC pins no other device uses; MSI-X vectors get GSIs
// from 24 on, routed by KVM_SET_GSI_ROUTING.
const (
	pciMem32Base   = uint64(memory.MMIOHoleStart)
	pciMem32Size   = 0x1000_0000
	pciECAMBase    = 0xe000_0000
	pciIOMin       = 0x1000
	pciIOMax       = 0xffff
	pciMem64Size   = 32 << 30
	pciMem64Align  = 1 << 30
	pciFirstINTx   = 16
	pciINTxLines   = 8
	pciFirstMSIGSI = 24
)

// pciHost is the PCI side of a machine: the bus, its MSI routes and the
// description the ACPI tables give of it.
type pciHost struct {
	bus    *pci.Bus
	router *msiRouter
	acpi   *acpi.PCIHost
}

// pciMem64Base is the 64-bit window: above all RAM, 1 GiB aligned.
func pciMem64Base(mem *memory.Memory) uint64 {
	end := uint64(1 << 32)
	for _, r := range mem.Regions() {
		end = max(end, uint64(r.End()))
	}
	return (end + pciMem64Align - 1) &^ (pciMem64Align - 1)
}

func intxGSI(slot, pin int) uint32 { return uint32(pciFirstINTx + (slot+pin)%pciINTxLines) }

// addPCIHost builds bus 0 with its host bridge and registers the
// configuration mechanisms and the BAR windows.
func (m *Machine) addPCIHost() error {
	h := &pciHost{bus: pci.NewBus(), router: &msiRouter{vm: m.vm, next: pciFirstMSIGSI}}
	mech := pci.NewMechanism1(h.bus)
	mem64 := pciMem64Base(m.mem)
	if err := m.pio.Register("PCI CONFIG_ADDRESS", pci.ConfigAddressPort, 1, mech.Address()); err != nil {
		return err
	}
	if err := m.pio.Register("PCI CONFIG_DATA", pci.ConfigDataPort, pci.ConfigDataLen, mech.Data()); err != nil {
		return err
	}
	if err := m.mmio.Register("PCI ECAM", pciECAMBase, pci.ECAMSize, h.bus.ECAM()); err != nil {
		return err
	}
	if err := m.mmio.Register("PCI 32-bit window", pciMem32Base, pciMem32Size, h.bus.MemoryWindow(pciMem32Base)); err != nil {
		return err
	}
	if err := m.mmio.Register("PCI 64-bit window", mem64, pciMem64Size, h.bus.MemoryWindow(mem64)); err != nil {
		return err
	}
	h.acpi = &acpi.PCIHost{
		ECAMBase: pciECAMBase, IOMin: pciIOMin, IOMax: pciIOMax,
		Mem32Base: pciMem32Base, Mem32Size: pciMem32Size,
		Mem64Base: mem64, Mem64Size: pciMem64Size,
	}
	for slot := 1; slot < pci.Slots; slot++ {
		for pin := 0; pin < 4; pin++ {
			h.acpi.Routes = append(h.acpi.Routes, acpi.PCIRoute{Slot: uint8(slot), Pin: uint8(pin), GSI: intxGSI(slot, pin)})
		}
	}
	m.pci = h
	return nil
}

// addVirtioPCIDevices attaches the configured devices as virtio-pci
// functions in slots 1, 2, ..., in buildVirtioDevices' order.
func (m *Machine) addVirtioPCIDevices() error {
	if err := m.addPCIHost(); err != nil {
		return err
	}
	devs, err := m.buildVirtioDevices()
	if err != nil {
		return err
	}
	for i, d := range devs {
		if err := m.attachVirtioPCI(d.name, i+1, d.dev); err != nil {
			return err
		}
	}
	return nil
}

// attachVirtioPCI puts dev in slot with its BAR in the 32-bit window, a
// level-triggered INTx line and an MSI route per vector.
func (m *Machine) attachVirtioPCI(name string, slot int, dev virtio.Device) error {
	h := m.pci
	var routes []pci.MSIRoute
	for i := 0; i < virtiopci.Vectors(dev); i++ {
		r, err := h.router.newRoute()
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		m.onClose(r.close)
		routes = append(routes, r)
	}
	gsi := intxGSI(slot, 0)
	intx, err := m.newLevelIRQ(gsi)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	bar := pciMem32Base + uint64(slot-1)*virtiopci.BARSize
	t, err := virtiopci.New(dev, m.mem, virtiopci.Config{
		BARAddr: bar, MSIRoutes: routes, INTx: intx, INTxLine: uint8(gsi),
		Notify: ioeventRegistrar{m.vm},
	})
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	m.onClose(t.Close)
	m.cores = append(m.cores, t.Core())
	m.pciTransports = append(m.pciTransports, t)
	intx.pending = t.INTxPending
	intx.start()
	if err := h.bus.Add(slot, t); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

type ioeventRegistrar struct{ vm *kvm.VM }

func (r ioeventRegistrar) RegisterNotify(addr uint64, width uint32, fd int) error {
	return r.vm.RegisterIOEventFD(kvm.IOEventFD{FD: fd, Addr: addr, Len: width})
}

func (r ioeventRegistrar) UnregisterNotify(addr uint64, width uint32, fd int) error {
	return r.vm.UnregisterIOEventFD(kvm.IOEventFD{FD: fd, Addr: addr, Len: width})
}

// msiRouter owns the VM's GSI routing table: KVM's irqchip defaults plus
// one MSI entry per vector, rewritten whole on every change because
// KVM_SET_GSI_ROUTING replaces the table.
type msiRouter struct {
	vm      *kvm.VM
	mu      sync.Mutex
	next    uint32
	entries map[uint32]kvm.RoutingEntry
}

func (r *msiRouter) newRoute() (*msiRoute, error) {
	r.mu.Lock()
	gsi := r.next
	r.next++
	r.mu.Unlock()
	e, err := virtio.NewEventFD()
	if err != nil {
		return nil, err
	}
	if err := r.vm.RegisterIRQFD(e.FD(), gsi); err != nil {
		return nil, errors.Join(fmt.Errorf("MSI GSI %d: %w", gsi, err), e.Close())
	}
	return &msiRoute{router: r, gsi: gsi, efd: e}, nil
}

func (r *msiRouter) set(gsi uint32, msg pci.MSIMessage) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.entries == nil {
		r.entries = map[uint32]kvm.RoutingEntry{}
	}
	r.entries[gsi] = kvm.RoutingEntry{GSI: gsi, MSI: true, MSIAddr: msg.Addr, MSIData: msg.Data}
	table := kvm.DefaultRouting()
	for g := uint32(pciFirstMSIGSI); g < r.next; g++ {
		if e, ok := r.entries[g]; ok {
			table = append(table, e)
		}
	}
	return r.vm.SetGSIRouting(table)
}

// msiRoute is one vector: a GSI routed to its message and an irqfd on it.
type msiRoute struct {
	router *msiRouter
	gsi    uint32
	efd    *virtio.EventFD
}

func (r *msiRoute) SetMessage(msg pci.MSIMessage) error { return r.router.set(r.gsi, msg) }

func (r *msiRoute) Fire() error { return r.efd.Signal() }

func (r *msiRoute) close() error {
	return errors.Join(r.router.vm.UnregisterIRQFD(r.efd.FD(), r.gsi), r.efd.Close())
}

// levelIRQ is a level-triggered INTx line: KVM_IRQFD with a resample fd.
// A Trigger raises the line until the guest's EOI; KVM then lowers it and
// signals the resample fd, and the line is raised again while the device
// still asserts it (pending).
type levelIRQ struct {
	gsi      uint32
	trigger  *virtio.EventFD
	resample *virtio.EventFD
	pending  func() bool
	started  bool
	done     chan struct{}
}

func (m *Machine) newLevelIRQ(gsi uint32) (*levelIRQ, error) {
	t, err := virtio.NewEventFD()
	if err != nil {
		return nil, err
	}
	r, err := virtio.NewEventFD()
	if err != nil {
		return nil, errors.Join(err, t.Close())
	}
	l := &levelIRQ{gsi: gsi, trigger: t, resample: r, done: make(chan struct{})}
	if err := m.vm.RegisterIRQFDResample(t.FD(), r.FD(), gsi); err != nil {
		return nil, errors.Join(fmt.Errorf("INTx GSI %d: %w", gsi, err), t.Close(), r.Close())
	}
	m.onClose(l.close(m.vm))
	return l, nil
}

func (l *levelIRQ) Trigger() error { return l.trigger.Signal() }

// start serves the resample fd until close.
func (l *levelIRQ) start() {
	l.started = true
	go func() {
		defer close(l.done)
		for {
			if _, err := l.resample.Wait(); err != nil {
				return
			}
			if l.pending != nil && l.pending() {
				if err := l.trigger.Signal(); err != nil {
					return
				}
			}
		}
	}()
}

func (l *levelIRQ) close(vm *kvm.VM) func() error {
	return func() error {
		err := vm.UnregisterIRQFD(l.trigger.FD(), l.gsi)
		err = errors.Join(err, l.resample.Close(), l.trigger.Close())
		if l.started {
			<-l.done // closing the resample fd ends its Wait
		}
		return err
	}
}
