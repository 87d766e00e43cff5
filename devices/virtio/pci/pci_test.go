package pci

import (
	"encoding/binary"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	pcibus "github.com/vmm-dev/vmm/devices/pci"
	"github.com/vmm-dev/vmm/devices/virtio"
	"github.com/vmm-dev/vmm/devices/virtio/virtiotest"
)

// fakeDevice is a two-queue virtio-net-typed device that keeps its
// activation, so the test can raise interrupts as a worker would.
type fakeDevice struct {
	mu  sync.Mutex
	act *virtio.Activation
}

func (d *fakeDevice) Type() virtio.DeviceType { return virtio.DeviceNet }
func (d *fakeDevice) Features() uint64        { return 1 << 5 }
func (d *fakeDevice) QueueMaxSizes() []uint16 { return []uint16{256, 256} }
func (d *fakeDevice) ReadConfig(off uint64, data []byte) {
	for i := range data {
		data[i] = byte(0x50 + int(off) + i)
	}
}
func (d *fakeDevice) WriteConfig(uint64, []byte) {}
func (d *fakeDevice) Activate(a virtio.Activation) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.act = &a
	return nil
}
func (d *fakeDevice) Reset() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.act = nil
}

type route struct {
	mu    sync.Mutex
	msg   pcibus.MSIMessage
	fired int
}

func (r *route) SetMessage(m pcibus.MSIMessage) error {
	r.mu.Lock()
	r.msg = m
	r.mu.Unlock()
	return nil
}
func (r *route) Fire() error { r.mu.Lock(); r.fired++; r.mu.Unlock(); return nil }
func (r *route) count() int  { r.mu.Lock(); defer r.mu.Unlock(); return r.fired }

type line struct {
	mu sync.Mutex
	n  int
}

func (l *line) Trigger() error { l.mu.Lock(); l.n++; l.mu.Unlock(); return nil }
func (l *line) count() int     { l.mu.Lock(); defer l.mu.Unlock(); return l.n }

type notes struct{ regs map[uint64]int }

func (n *notes) RegisterNotify(addr uint64, w uint32, fd int) error { n.regs[addr] = fd; return nil }
func (n *notes) UnregisterNotify(addr uint64, w uint32, fd int) error {
	delete(n.regs, addr)
	return nil
}

type rig struct {
	t      *testing.T
	tr     *Transport
	dev    *fakeDevice
	routes []*route
	intx   *line
	notes  *notes
	bus    *pcibus.Bus
	win    *pcibus.MemoryWindow
}

const barAddr = 0xc000_0000

func newRig(t *testing.T) *rig {
	r := &rig{t: t, dev: &fakeDevice{}, intx: &line{}, notes: &notes{regs: map[uint64]int{}}}
	var rs []pcibus.MSIRoute
	for i := 0; i < Vectors(r.dev); i++ {
		r.routes = append(r.routes, &route{})
		rs = append(rs, r.routes[i])
	}
	tr, err := New(r.dev, virtiotest.NewMemory(1<<20), Config{BARAddr: barAddr, MSIRoutes: rs, INTx: r.intx, INTxLine: 16, Notify: r.notes})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, tr.Close()) })
	r.tr = tr
	r.bus = pcibus.NewBus()
	require.NoError(t, r.bus.Add(1, tr))
	r.win = r.bus.MemoryWindow(barAddr)
	return r
}

func (r *rig) cfg32(off uint16) uint32 {
	var b [4]byte
	r.bus.ConfigRead(0, 1, 0, off, b[:])
	return binary.LittleEndian.Uint32(b[:])
}

func (r *rig) setCfg16(off uint16, v uint16) {
	var b [2]byte
	binary.LittleEndian.PutUint16(b[:], v)
	r.bus.ConfigWrite(0, 1, 0, off, b[:])
}

func (r *rig) rd(off uint64, n int) uint64 {
	b := make([]byte, n)
	r.win.Read(off, b)
	return getLE(b)
}

func (r *rig) wr(off uint64, n int, v uint64) {
	b := make([]byte, n)
	putLE(b, v)
	r.win.Write(off, b)
}

// caps walks the capability list: cfg_type -> offset of the capability.
func (r *rig) caps() map[uint8]uint16 {
	raw := r.tr.Config().Bytes()
	got := map[uint8]uint16{}
	for p := uint16(raw[pcibus.RegCapPointer]); p != 0; p = uint16(raw[p+1]) {
		if raw[p] == pcibus.CapVendor {
			got[raw[p+3]] = p
		} else {
			got[0x80|raw[p]] = p
		}
	}
	return got
}

func TestIdentityAndCapabilities(t *testing.T) {
	r := newRig(t)
	assert.Equal(t, uint32(0x1041_1af4), r.cfg32(0))
	assert.Equal(t, uint32(0x0200_0001), r.cfg32(8), "Ethernet class, revision 1")
	assert.Equal(t, uint32(0x1041_1af4), r.cfg32(pcibus.RegSubsysVendor))
	assert.Equal(t, uint32(0x0000_0110), r.cfg32(pcibus.RegInterruptLine), "INTA#, line 16")

	raw := r.tr.Config().Bytes()
	caps := r.caps()
	for typ, want := range map[uint8]struct{ off, length uint32 }{
		capCommon: {commonOff, commonLen}, capNotify: {notifyOff, 8}, capISR: {isrOff, isrLen}, capDevice: {deviceOff, deviceLen},
	} {
		p, ok := caps[typ]
		require.True(t, ok, "cfg_type %d", typ)
		assert.Equal(t, byte(BAR), raw[p+4])
		assert.Equal(t, want.off, binary.LittleEndian.Uint32(raw[p+8:]), "cfg_type %d offset", typ)
		assert.Equal(t, want.length, binary.LittleEndian.Uint32(raw[p+12:]), "cfg_type %d length", typ)
	}
	assert.Equal(t, uint32(NotifyOffMultiplier), binary.LittleEndian.Uint32(raw[caps[capNotify]+16:]))
	assert.Contains(t, caps, uint8(capPCICfg))
	assert.Contains(t, caps, uint8(0x80|pcibus.CapMSIX))
}

// enable turns memory decoding on and brings the device to DRIVER_OK
// with both queues, as Linux's virtio_pci_modern does.
func (r *rig) enable(vectors bool) {
	r.setCfg16(pcibus.RegCommand, pcibus.CommandMemory|pcibus.CommandBusMaster)
	if vectors {
		msix := r.caps()[0x80|pcibus.CapMSIX]
		r.setCfg16(msix+2, 1<<15)
		for v := 0; v < Vectors(r.dev); v++ {
			base := uint64(msixTableOff + 16*v)
			r.wr(base, 4, 0xfee0_0000)
			r.wr(base+8, 4, uint64(0x40+v))
			r.wr(base+12, 4, 0)
		}
	}
	r.wr(cfgDeviceStatus, 1, uint64(virtio.StatusAcknowledge|virtio.StatusDriver))
	r.wr(cfgDeviceFeatureSel, 4, 1)
	require.Equal(r.t, uint64(1), r.rd(cfgDeviceFeature, 4), "VERSION_1")
	r.wr(cfgDriverFeatureSel, 4, 1)
	r.wr(cfgDriverFeature, 4, 1)
	r.wr(cfgDriverFeatureSel, 4, 0)
	r.wr(cfgDriverFeature, 4, 1<<5)
	r.wr(cfgDeviceStatus, 1, uint64(virtio.StatusAcknowledge|virtio.StatusDriver|virtio.StatusFeaturesOK))
	require.NotZero(r.t, r.rd(cfgDeviceStatus, 1)&uint64(virtio.StatusFeaturesOK))
	if vectors {
		r.wr(cfgMSIXConfig, 2, 0)
		require.Equal(r.t, uint64(0), r.rd(cfgMSIXConfig, 2))
	}
	for q := 0; q < 2; q++ {
		r.wr(cfgQueueSelect, 2, uint64(q))
		require.Equal(r.t, uint64(256), r.rd(cfgQueueSize, 2))
		r.wr(cfgQueueSize, 2, 64)
		base := uint64(0x10000 * (q + 1))
		r.wr(cfgQueueDesc, 4, base)
		r.wr(cfgQueueDesc+4, 4, 0)
		r.wr(cfgQueueDriver, 8, base+0x1000)
		r.wr(cfgQueueDevice, 8, base+0x2000)
		if vectors {
			r.wr(cfgQueueMSIXVector, 2, uint64(q+1))
			require.Equal(r.t, uint64(q+1), r.rd(cfgQueueMSIXVector, 2))
		}
		require.Equal(r.t, uint64(q), r.rd(cfgQueueNotifyOff, 2))
		r.wr(cfgQueueEnable, 2, 1)
		require.Equal(r.t, uint64(1), r.rd(cfgQueueEnable, 2))
		require.Equal(r.t, base+0x1000, r.rd(cfgQueueDriver, 8))
	}
	r.wr(cfgDeviceStatus, 1, uint64(virtio.StatusAcknowledge|virtio.StatusDriver|virtio.StatusFeaturesOK|virtio.StatusDriverOK))
	require.NotNil(r.t, r.dev.act, "activated")
	require.NoError(r.t, r.tr.Failure())
}

func TestMSIXDelivery(t *testing.T) {
	r := newRig(t)
	r.enable(true)
	assert.Len(t, r.notes.regs, 2, "an ioeventfd per queue once memory decodes")
	assert.Contains(t, r.notes.regs, uint64(barAddr+notifyOff+4))

	act := r.dev.act
	require.NoError(t, act.QueueInterrupt(1))
	assert.Equal(t, 1, r.routes[2].count(), "queue 1 -> vector 2")
	assert.Equal(t, pcibus.MSIMessage{Addr: 0xfee0_0000, Data: 0x42}, r.routes[2].msg)
	require.NoError(t, r.tr.Core().ConfigChanged())
	assert.Equal(t, 1, r.routes[0].count(), "config -> vector 0")
	assert.Zero(t, r.intx.count(), "no INTx with MSI-X on")

	// Masked vector: pending, then delivered on unmask.
	r.wr(msixTableOff+16*1+12, 4, 1)
	require.NoError(t, act.QueueInterrupt(0))
	assert.Zero(t, r.routes[1].count())
	assert.Equal(t, uint64(0b10), r.rd(msixPBAOff, 8))
	r.wr(msixTableOff+16*1+12, 4, 0)
	assert.Equal(t, 1, r.routes[1].count())

	// A vector past the table reads back as NO_VECTOR.
	r.wr(cfgQueueSelect, 2, 0)
	r.wr(cfgMSIXConfig, 2, 7)
	assert.Equal(t, uint64(NoVector), r.rd(cfgMSIXConfig, 2))

	// Memory decoding off: the BAR and its ioeventfds go.
	r.setCfg16(pcibus.RegCommand, 0)
	assert.Empty(t, r.notes.regs)
	assert.Equal(t, uint64(0xffff_ffff), r.rd(cfgDeviceFeature, 4))
}

func TestINTxFallback(t *testing.T) {
	r := newRig(t)
	r.enable(false)
	require.NoError(t, r.dev.act.QueueInterrupt(0))
	assert.Equal(t, 1, r.intx.count())
	assert.True(t, r.tr.INTxPending())
	assert.Equal(t, uint64(isrQueue), r.rd(isrOff, 1), "ISR read returns the cause")
	assert.Zero(t, r.rd(isrOff, 1), "and clears it")
	assert.False(t, r.tr.INTxPending())

	r.setCfg16(pcibus.RegCommand, pcibus.CommandMemory|pcibus.CommandINTxDisable)
	require.NoError(t, r.tr.Core().ConfigChanged())
	assert.Equal(t, 1, r.intx.count(), "Interrupt Disable holds INTx")

	// Reset: vectors and ISR forgotten, device stopped.
	r.wr(cfgDeviceStatus, 1, 0)
	assert.Zero(t, r.rd(cfgDeviceStatus, 1))
	assert.Nil(t, r.dev.act)
	r.wr(cfgQueueSelect, 2, 0)
	assert.Equal(t, uint64(NoVector), r.rd(cfgQueueMSIXVector, 2))
}

func TestBadAccesses(t *testing.T) {
	r := newRig(t)
	r.enable(true)
	// Odd widths, holes, notifications of queues that do not exist.
	for _, a := range []struct {
		off uint64
		n   int
	}{{cfgDeviceFeature, 2}, {cfgDeviceStatus, 4}, {0x3f, 1}, {0x100, 4}, {notifyOff + 4*9, 2}, {notifyOff + 1, 2}, {0x7ff8, 8}, {BARSize, 4}} {
		r.wr(a.off, a.n, 0xffff_ffff_ffff_ffff)
		_ = r.rd(a.off, a.n)
	}
	r.wr(cfgQueueSelect, 2, 99)
	assert.Zero(t, r.rd(cfgQueueSize, 2), "a queue that does not exist has size 0")
	r.wr(cfgQueueEnable, 2, 1)
	require.NoError(t, r.tr.Failure())
	assert.Equal(t, uint64(0x5453_5251), r.rd(deviceOff+1, 4), "device config")

	// The PCI_CFG window reaches the same registers.
	p := r.caps()[capPCICfg]
	var b [4]byte
	r.bus.ConfigWrite(0, 1, 0, p+4, []byte{BAR})
	binary.LittleEndian.PutUint32(b[:], cfgNumQueues)
	r.bus.ConfigWrite(0, 1, 0, p+8, b[:])
	binary.LittleEndian.PutUint32(b[:], 2)
	r.bus.ConfigWrite(0, 1, 0, p+12, b[:])
	r.bus.ConfigRead(0, 1, 0, p+16, b[:])
	assert.Equal(t, uint32(2), binary.LittleEndian.Uint32(b[:]), "num_queues through VIRTIO_PCI_CAP_PCI_CFG")
}
