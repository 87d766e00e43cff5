package kvm

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

func TestDefaultRouting(t *testing.T) {
	r := DefaultRouting()
	assert.Len(t, r, 16*2+8)
	assert.Equal(t, RoutingEntry{GSI: 9, Chip: IRQChipPICSlave, Pin: 1}, r[18])
	assert.Equal(t, RoutingEntry{GSI: 23, Chip: IRQChipIOAPIC, Pin: 23}, r[len(r)-1])
}

func TestEncodeRouting(t *testing.T) {
	b := encodeRouting([]RoutingEntry{
		{GSI: 5, Chip: IRQChipIOAPIC, Pin: 5},
		{GSI: 24, MSI: true, MSIAddr: 0x1_fee0_1000, MSIData: 0x4031},
	})
	require.Len(t, b, 8+2*48)
	assert.Equal(t, []byte{2, 0, 0, 0, 0, 0, 0, 0}, b[:8], "nr, flags")
	assert.Equal(t, []byte{5, 0, 0, 0, 1, 0, 0, 0}, b[8:16], "gsi, type irqchip")
	assert.Equal(t, []byte{2, 0, 0, 0, 5, 0, 0, 0}, b[24:32], "irqchip, pin")
	e := b[8+48:]
	assert.Equal(t, []byte{24, 0, 0, 0, 2, 0, 0, 0}, e[:8], "gsi, type msi")
	assert.Equal(t, []byte{0x00, 0x10, 0xe0, 0xfe, 1, 0, 0, 0, 0x31, 0x40, 0, 0}, e[16:28], "address_lo, address_hi, data")
}

func TestGSIRoutingMSIAndResample(t *testing.T) {
	vm := testVM(t)
	require.NoError(t, vm.CreateIRQChip())

	routes := append(DefaultRouting(),
		RoutingEntry{GSI: 24, MSI: true, MSIAddr: 0xfee0_0000, MSIData: 0x41},
		RoutingEntry{GSI: 25, MSI: true, MSIAddr: 0xfee0_0000, MSIData: 0x42})
	require.NoError(t, vm.SetGSIRouting(routes))

	// An irqfd on an MSI GSI delivers the message without us.
	efd := newEventFD(t)
	require.NoError(t, vm.RegisterIRQFD(efd, 24))
	_, err := unix.Write(efd, []byte{1, 0, 0, 0, 0, 0, 0, 0})
	require.NoError(t, err)
	// Reprogramming the table keeps the irqfd bound to its GSI.
	routes[len(routes)-2].MSIData = 0x51
	require.NoError(t, vm.SetGSIRouting(routes))
	require.NoError(t, vm.UnregisterIRQFD(efd, 24))

	// A level-triggered irqfd with a resample fd, on an IOAPIC pin.
	lvl, res := newEventFD(t), newEventFD(t)
	require.NoError(t, vm.RegisterIRQFDResample(lvl, res, 10))
	_, err = unix.Write(lvl, []byte{1, 0, 0, 0, 0, 0, 0, 0})
	require.NoError(t, err)
	require.NoError(t, vm.UnregisterIRQFD(lvl, 10))
	require.ErrorIs(t, vm.RegisterIRQFDResample(-1, res, 10), ErrInvalidArg)

	// KVM_SIGNAL_MSI needs a vCPU to deliver to.
	c, err := vm.CreateVCPU(0)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, c.Close()) })
	_, err = vm.SignalMSI(0xfee0_0000, 0x41)
	require.NoError(t, err)

	require.ErrorIs(t, vm.SetGSIRouting(make([]RoutingEntry, MaxRoutingEntries+1)), ErrInvalidArg)
}
