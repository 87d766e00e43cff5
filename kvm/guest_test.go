package kvm

import (
	"runtime"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Tiny real-mode guests, hand-assembled. Each runs at physical 0x1000 in a
// 64 KiB RAM slot at 0 unless it says otherwise.

const (
	codeAddr = 0x1000
	ramSize  = 0x10000
)

// realModeGuest sets up a VM with RAM at 0, code at codeAddr and one vCPU.
func realModeGuest(t *testing.T, code []byte) (*VM, []byte, *VCPU) {
	t.Helper()
	lockThread(t)
	vm := testVM(t)
	ram := addRAM(t, vm, 0, 0, ramSize)
	copy(ram[codeAddr:], code)
	return vm, ram, realModeVCPU(t, vm, 0, codeAddr)
}

func TestGuestOut(t *testing.T) {
	_, _, c := realModeGuest(t, []byte{
		0xba, 0xf8, 0x03, // mov dx, 0x3f8
		0xb8, 0x34, 0x12, // mov ax, 0x1234
		0xef,       // out dx, ax
		0xb0, 0x41, // mov al, 0x41
		0xe6, 0x80, // out 0x80, al
		0xf4, // hlt
	})
	assert.Equal(t, IOOut{Port: 0x3f8, Size: 2, Count: 1, Data: []byte{0x34, 0x12}}, nextExit(t, c))
	assert.Equal(t, IOOut{Port: 0x80, Size: 1, Count: 1, Data: []byte{0x41}}, nextExit(t, c))
	assert.Equal(t, HLT{}, nextExit(t, c))
}

func TestGuestIn(t *testing.T) {
	_, _, c := realModeGuest(t, []byte{
		0xba, 0x60, 0x00, // mov dx, 0x60
		0xed,       // in ax, dx
		0xe7, 0x62, // out 0x62, ax
		0xf4, // hlt
	})
	e := nextExit(t, c)
	in, ok := e.(IOIn)
	require.True(t, ok, "got %v", e)
	assert.Equal(t, uint16(0x60), in.Port)
	assert.Equal(t, 2, in.Size)
	assert.Equal(t, 1, in.Count)
	require.Len(t, in.Data, 2)
	copy(in.Data, []byte{0xcd, 0xab})

	assert.Equal(t, IOOut{Port: 0x62, Size: 2, Count: 1, Data: []byte{0xcd, 0xab}}, nextExit(t, c))
	assert.Equal(t, HLT{}, nextExit(t, c))
	r, err := c.Regs()
	require.NoError(t, err)
	assert.Equal(t, uint64(0xabcd), r.RAX&0xffff)
}

func TestGuestStringIn(t *testing.T) {
	_, ram, c := realModeGuest(t, []byte{
		0xfc,             // cld
		0xbf, 0x00, 0x30, // mov di, 0x3000 (ES base is 0)
		0xb9, 0x04, 0x00, // mov cx, 4
		0xba, 0x70, 0x00, // mov dx, 0x70
		0xf3, 0x6c, // rep insb
		0xf4, // hlt
	})
	// KVM may deliver the four bytes in one exit (Count 4) or several.
	next := byte(0xa0)
	for {
		e := nextExit(t, c)
		if _, ok := e.(HLT); ok {
			break
		}
		in, ok := e.(IOIn)
		require.True(t, ok, "got %v", e)
		require.Equal(t, uint16(0x70), in.Port)
		require.Equal(t, 1, in.Size)
		require.Len(t, in.Data, in.Count)
		for i := range in.Data {
			in.Data[i] = next
			next++
		}
	}
	assert.Equal(t, []byte{0xa0, 0xa1, 0xa2, 0xa3}, ram[0x3000:0x3004])
}

func TestGuestMMIO(t *testing.T) {
	_, _, c := realModeGuest(t, []byte{
		0xb8, 0x00, 0x20, // mov ax, 0x2000
		0x8e, 0xd8, // mov ds, ax (DS base 0x20000: no RAM there)
		0xc7, 0x06, 0x10, 0x00, 0xef, 0xbe, // mov word [0x10], 0xbeef
		0xa1, 0x20, 0x00, // mov ax, [0x20]
		0xe7, 0x30, // out 0x30, ax
		0xf4, // hlt
	})
	assert.Equal(t, MMIOWrite{Addr: 0x20010, Data: []byte{0xef, 0xbe}}, nextExit(t, c))

	e := nextExit(t, c)
	rd, ok := e.(MMIORead)
	require.True(t, ok, "got %v", e)
	assert.Equal(t, uint64(0x20020), rd.Addr)
	require.Len(t, rd.Data, 2)
	copy(rd.Data, []byte{0x34, 0x12})

	assert.Equal(t, IOOut{Port: 0x30, Size: 2, Count: 1, Data: []byte{0x34, 0x12}}, nextExit(t, c))
	assert.Equal(t, HLT{}, nextExit(t, c))
}

func TestGuestTwoMemorySlots(t *testing.T) {
	vm, _, c := realModeGuest(t, []byte{
		0xb8, 0x00, 0x40, // mov ax, 0x4000
		0x8e, 0xd8, // mov ds, ax (DS base 0x40000: slot 1)
		0xa1, 0x00, 0x00, // mov ax, [0]
		0xe7, 0x31, // out 0x31, ax
		0xc7, 0x06, 0x02, 0x00, 0xcd, 0xab, // mov word [2], 0xabcd
		0xf4, // hlt
	})
	slot1 := addRAM(t, vm, 1, 0x40000, 0x1000)
	copy(slot1, []byte{0x11, 0x22})

	assert.Equal(t, IOOut{Port: 0x31, Size: 2, Count: 1, Data: []byte{0x11, 0x22}}, nextExit(t, c))
	assert.Equal(t, HLT{}, nextExit(t, c))
	assert.Equal(t, []byte{0xcd, 0xab}, slot1[2:4], "the guest's store landed in slot 1's host memory")
}

func TestGuestTwoVCPUs(t *testing.T) {
	lockThread(t)
	vm := testVM(t)
	ram := addRAM(t, vm, 0, 0, ramSize)
	programs := []struct {
		addr uint64
		code []byte
		port uint16
		data byte
	}{
		{0x1000, []byte{0xb0, 0xa0, 0xe6, 0x40, 0xf4}, 0x40, 0xa0}, // mov al, 0xa0; out 0x40, al; hlt
		{0x2000, []byte{0xb0, 0xa1, 0xe6, 0x41, 0xf4}, 0x41, 0xa1}, // mov al, 0xa1; out 0x41, al; hlt
	}
	vcpus := make([]*VCPU, len(programs))
	for i, p := range programs {
		copy(ram[p.addr:], p.code)
		vcpus[i] = realModeVCPU(t, vm, i, p.addr)
	}

	// Each vCPU runs on its own locked goroutine; results come back to
	// the test goroutine, which alone may fail the test.
	type result struct {
		exits []Exit
		err   error
	}
	results := make([]result, len(vcpus))
	var wg sync.WaitGroup
	for i, c := range vcpus {
		wg.Go(func() {
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			for {
				e, err := c.Run()
				if err != nil {
					results[i].err = err
					return
				}
				if _, ok := e.(Interrupted); ok {
					continue
				}
				if out, ok := e.(IOOut); ok {
					out.Data = append([]byte(nil), out.Data...) // outlives the next Run
					e = out
				}
				results[i].exits = append(results[i].exits, e)
				if _, ok := e.(HLT); ok {
					return
				}
			}
		})
	}
	wg.Wait()
	for i, p := range programs {
		require.NoError(t, results[i].err, "vCPU %d", i)
		assert.Equal(t, []Exit{IOOut{Port: p.port, Size: 1, Count: 1, Data: []byte{p.data}}, HLT{}},
			results[i].exits, "vCPU %d", i)
		r, err := vcpus[i].Regs()
		require.NoError(t, err)
		assert.Equal(t, p.addr+uint64(len(p.code)), r.RIP, "vCPU %d stopped after its own hlt", i)
	}
}
