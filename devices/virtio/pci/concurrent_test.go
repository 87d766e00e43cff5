package pci

import (
	"encoding/binary"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	pcibus "github.com/vmm-dev/vmm/devices/pci"
)

// TestConcurrentVCPUs drives one function the way several vCPUs of a
// Linux guest do at once, while a device worker raises interrupts:
// mechanism #1 under the guest's pci_config_lock (arch/x86/pci/direct.c),
// ECAM without it (arch/x86/pci/mmconfig_64.c takes no lock), BAR 0
// register accesses, MSI-X entries rewritten masked as
// __pci_write_msi_msg does on an affinity change, and command register
// writes that make the bus recompute its windows. Every read must see a
// consistent value, nothing may deadlock, and -race must stay quiet.
func TestConcurrentVCPUs(t *testing.T) {
	r := newRig(t)
	r.enable(true)
	mech := pcibus.NewMechanism1(r.bus)
	addr, data := mech.Address(), mech.Data()
	ecam := r.bus.ECAM()
	wantID := r.cfg32(pcibus.RegVendorID)
	hostID := uint32(pcibus.HostBridgeID.Device)<<16 | uint32(pcibus.HostBridgeID.Vendor)

	const vcpus, rounds = 4, 2000
	var guestLock sync.Mutex // the guest's pci_config_lock
	conf1 := func(slot int, reg uint16) uint32 {
		guestLock.Lock()
		defer guestLock.Unlock()
		var a, d [4]byte
		binary.LittleEndian.PutUint32(a[:], 1<<31|uint32(slot)<<11|uint32(reg&0xfc))
		addr.Write(0, a[:])
		data.Read(0, d[:])
		return binary.LittleEndian.Uint32(d[:])
	}
	ecam32 := func(slot int, reg uint16) uint32 {
		var d [4]byte
		ecam.Read(uint64(slot)<<15|uint64(reg), d[:])
		return binary.LittleEndian.Uint32(d[:])
	}

	var wg sync.WaitGroup
	errs := make(chan string, vcpus*rounds)
	for c := 0; c < vcpus; c++ {
		wg.Add(1)
		go func(c int) {
			defer wg.Done()
			for i := 0; i < rounds; i++ {
				if got := conf1(1, pcibus.RegVendorID); got != wantID {
					errs <- "mechanism #1 read of 00:01.0"
				}
				if got := conf1(0, pcibus.RegVendorID); got != hostID {
					errs <- "mechanism #1 read of the host bridge"
				}
				if got := ecam32(1, pcibus.RegVendorID); got != wantID {
					errs <- "ECAM read of 00:01.0"
				}
				if got := r.rd(cfgNumQueues, 2); got != 2 {
					errs <- "num_queues through BAR 0"
				}
				// Vector c+... of the function: mask, rewrite, unmask.
				v := uint64(c % Vectors(r.dev))
				base := uint64(msixTableOff) + 16*v
				r.wr(base+12, 4, 1)
				r.wr(base, 4, 0xfee0_0000|uint64(c%2)<<12)
				r.wr(base+8, 4, 0x40+v)
				r.wr(base+12, 4, 0)
			}
		}(c)
	}
	wg.Add(2)
	go func() {
		// Interrupt Disable on and off: a command register change, so
		// the bus recomputes the BAR windows while the others decode.
		defer wg.Done()
		for i := 0; i < rounds; i++ {
			cmd := pcibus.CommandMemory | pcibus.CommandBusMaster
			if i%2 == 0 {
				cmd |= pcibus.CommandINTxDisable
			}
			var b [2]byte
			binary.LittleEndian.PutUint16(b[:], cmd)
			ecam.Write(1<<15|pcibus.RegCommand, b[:])
		}
	}()
	go func() {
		// The device worker.
		defer wg.Done()
		for i := 0; i < rounds; i++ {
			if err := r.dev.act.QueueInterrupt(i % 2); err != nil {
				errs <- err.Error()
				return
			}
		}
	}()
	wg.Wait()
	close(errs)
	for e := range errs {
		require.Fail(t, e)
	}
	fired := 0
	for _, rt := range r.routes {
		fired += rt.count()
	}
	assert.NotZero(t, fired)
	assert.Len(t, r.notes.regs, 2, "the ioeventfds stay where BAR 0 is")
	require.NoError(t, r.tr.Failure())
}
