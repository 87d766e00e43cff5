// Package pci is the virtio-pci modern transport (virtio 1.2 §4.1): a PCI
// function whose vendor capabilities point into one memory BAR holding
// the common configuration, notification, ISR and device configuration
// structures and the MSI-X table. The transport-neutral device state
// lives in virtio.Core; PCI itself (configuration space, BARs, MSI-X) in
// devices/pci. A virtio device never knows it sits behind this transport.
package pci

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/vmm-dev/vmm/devices"
	pcibus "github.com/vmm-dev/vmm/devices/pci"
	"github.com/vmm-dev/vmm/devices/virtio"
	"github.com/vmm-dev/vmm/memory"
)

// PCI identity (virtio 1.2 §4.1.2).
const (
	VendorID = 0x1af4
	// DeviceIDBase plus the virtio device ID is a modern device's PCI
	// device ID (§4.1.2.1).
	DeviceIDBase = 0x1040
	// Revision 1 marks a non-transitional device (§4.1.2.2).
	Revision = 1
)

// NoVector is VIRTIO_MSI_NO_VECTOR (§4.1.5.1.2).
const NoVector = 0xffff

// Layout of BAR 0. Each structure starts on its own 4 KiB page, so a
// guest may map them with different attributes.
const (
	BAR          = 0
	BARSize      = 0x8000
	commonOff    = 0x0000
	commonLen    = 0x40
	isrOff       = 0x1000
	isrLen       = 4
	deviceOff    = 0x2000
	deviceLen    = 0x1000
	notifyOff    = 0x3000
	notifyMax    = 0x1000
	msixTableOff = 0x4000
	msixPBAOff   = 0x6000
	// NotifyOffMultiplier: queue n's notification address is
	// notifyOff + n*4 (§4.1.4.4); 4 bytes apart, each gets its own
	// ioeventfd.
	NotifyOffMultiplier = 4
	// NotifyWidth is the width of the driver's notification write:
	// Linux writes the 16-bit queue index.
	NotifyWidth = 2
	// MaxVectors bounds the MSI-X table so it fits its 8 KiB.
	MaxVectors = 64
)

// Vectors returns how many MSI-X vectors a transport for dev offers: one
// per queue and one for configuration changes.
func Vectors(dev virtio.Device) int { return min(len(dev.QueueMaxSizes())+1, MaxVectors) }

// classCode is the PCI class of each device type (PCI Code and ID
// Assignment §1): mass storage "other" for block, Ethernet for net.
func classCode(t virtio.DeviceType) uint32 {
	switch t {
	case virtio.DeviceBlock:
		return 0x018000
	case virtio.DeviceNet:
		return 0x020000
	}
	return 0xff0000
}

// NotifyRegistrar is how the transport asks the machine for KVM
// ioeventfds on its notification addresses, which move with the BAR.
type NotifyRegistrar interface {
	RegisterNotify(addr uint64, width uint32, fd int) error
	UnregisterNotify(addr uint64, width uint32, fd int) error
}

// Config is what the machine gives a transport.
type Config struct {
	// BARAddr is where firmware placed BAR 0 (BARSize aligned).
	BARAddr uint64
	// MSIRoutes deliver the MSI-X vectors, Vectors(dev) of them.
	MSIRoutes []pcibus.MSIRoute
	// INTx is the level-triggered INTA# line used while MSI-X is off:
	// each Trigger asserts it until the guest's EOI, after which the
	// machine asks INTxPending whether to assert it again.
	INTx devices.Interrupt
	// INTxLine is the GSI INTA# is routed to, for the Interrupt Line
	// register.
	INTxLine uint8
	// Notify registers ioeventfds; nil leaves notifications to the
	// exit path.
	Notify NotifyRegistrar
}

// Transport is one virtio device as a PCI function. It implements
// devices/pci.Device and BARObserver.
type Transport struct {
	core   *virtio.Core
	cfg    *pcibus.Config
	msix   *pcibus.MSIX
	intx   devices.Interrupt
	notify NotifyRegistrar

	isr          atomic.Uint32
	configVector atomic.Uint32
	queueVectors []atomic.Uint32

	pciCfgMu  sync.Mutex
	pciCfg    [pciCfgCapLen]byte // the VIRTIO_PCI_CAP_PCI_CFG capability as stored
	pciCfgOff uint16

	mapMu      sync.Mutex
	notifyAt   uint64 // where ioeventfds are registered; 0: none
	notifyErrs bool
}

// ErrConfig reports a transport the machine set up wrongly.
var ErrConfig = errors.New("virtio-pci: invalid configuration")

// New wraps dev in a virtio-pci transport.
func New(dev virtio.Device, mem *memory.Memory, c Config) (*Transport, error) {
	if len(c.MSIRoutes) != Vectors(dev) {
		return nil, fmt.Errorf("%w: %d MSI-X routes for %d vectors", ErrConfig, len(c.MSIRoutes), Vectors(dev))
	}
	if c.INTx == nil || c.BARAddr%BARSize != 0 {
		return nil, fmt.Errorf("%w: no INTx line, or BAR at %#x", ErrConfig, c.BARAddr)
	}
	nq := len(dev.QueueMaxSizes())
	if nq*NotifyOffMultiplier > notifyMax {
		return nil, fmt.Errorf("%w: %d queues do not fit the notification area", ErrConfig, nq)
	}
	t := &Transport{intx: c.INTx, notify: c.Notify, queueVectors: make([]atomic.Uint32, nq)}
	t.resetVectors()
	core, err := virtio.NewCore(dev, mem, t, t.resetVectors)
	if err != nil {
		return nil, fmt.Errorf("virtio-pci: %w", err)
	}
	t.core = core
	if err := t.buildConfig(dev.Type(), nq, c); err != nil {
		return nil, errors.Join(err, core.Close())
	}
	return t, nil
}

func (t *Transport) resetVectors() {
	t.configVector.Store(NoVector)
	for i := range t.queueVectors {
		t.queueVectors[i].Store(NoVector)
	}
	t.isr.Store(0)
}

// Config is the function's configuration space.
func (t *Transport) Config() *pcibus.Config { return t.cfg }

// Core is the transport-neutral device state.
func (t *Transport) Core() *virtio.Core { return t.core }

// Failure returns why the device went DEVICE_NEEDS_RESET, or nil.
func (t *Transport) Failure() error { return t.core.Failure() }

// INTxPending reports whether INTA# is still asserted: the ISR has a bit
// set and MSI-X is off (§4.1.4.5).
func (t *Transport) INTxPending() bool { return t.isr.Load() != 0 && !t.msix.Enabled() }

// Close stops the device and its ioeventfds.
func (t *Transport) Close() error {
	t.mapMu.Lock()
	err := t.unmapNotify()
	t.mapMu.Unlock()
	return errors.Join(err, t.core.Close())
}

// UsedBuffer implements virtio.Interrupter (§4.1.5.2, §4.1.4.5).
func (t *Transport) UsedBuffer(queue int) error {
	if t.msix.Enabled() {
		if queue < 0 || queue >= len(t.queueVectors) {
			return nil
		}
		return t.msi(t.queueVectors[queue].Load())
	}
	t.isr.Or(isrQueue)
	return t.raiseINTx()
}

// ConfigChange implements virtio.Interrupter (§4.1.5.3).
func (t *Transport) ConfigChange() error {
	t.isr.Or(isrConfig)
	if t.msix.Enabled() {
		return t.msi(t.configVector.Load())
	}
	return t.raiseINTx()
}

// ISR status bits (§4.1.4.5).
const (
	isrQueue  = 1 << 0
	isrConfig = 1 << 1
)

func (t *Transport) msi(vector uint32) error {
	if vector == NoVector {
		return nil
	}
	if err := t.msix.Trigger(uint16(vector)); err != nil {
		return fmt.Errorf("virtio-pci %v: %w", t.core.Type(), err)
	}
	return nil
}

func (t *Transport) raiseINTx() error {
	// PCI 3.0 §6.2.2: Interrupt Disable stops INTx#; the ISR keeps the
	// cause for when it is cleared or the driver polls.
	if t.cfg.Command()&pcibus.CommandINTxDisable != 0 {
		return nil
	}
	if err := t.intx.Trigger(); err != nil {
		return fmt.Errorf("virtio-pci %v: INTx: %w", t.core.Type(), err)
	}
	return nil
}

// BARMapped implements pcibus.BARObserver: the notification ioeventfds
// follow BAR 0.
func (t *Transport) BARMapped(bar int, addr uint64, decoding bool) {
	if bar != BAR || t.notify == nil {
		return
	}
	t.mapMu.Lock()
	defer t.mapMu.Unlock()
	want := uint64(0)
	if decoding {
		want = addr + notifyOff
	}
	if want == t.notifyAt {
		return
	}
	if err := t.unmapNotify(); err != nil {
		t.mapError(err)
	}
	if want == 0 {
		return
	}
	for q, fd := range t.core.QueueNotifyFDs() {
		if err := t.notify.RegisterNotify(want+uint64(q)*NotifyOffMultiplier, NotifyWidth, fd); err != nil {
			// The exit path still delivers the notification.
			t.mapError(err)
		}
	}
	t.notifyAt = want
}

func (t *Transport) unmapNotify() error {
	if t.notifyAt == 0 || t.notify == nil {
		return nil
	}
	var errs []error
	for q, fd := range t.core.QueueNotifyFDs() {
		if err := t.notify.UnregisterNotify(t.notifyAt+uint64(q)*NotifyOffMultiplier, NotifyWidth, fd); err != nil {
			errs = append(errs, err)
		}
	}
	t.notifyAt = 0
	return errors.Join(errs...)
}

func (t *Transport) mapError(err error) {
	if !t.notifyErrs {
		t.notifyErrs = true
		slog.Warn("virtio-pci: notification ioeventfds", "device", t.core.Type(), "err", err)
	}
}
