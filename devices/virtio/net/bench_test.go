package net_test

import (
	"os"
	"sync"
	"testing"
	"time"

	vnet "github.com/vmm-dev/vmm/devices/virtio/net"
	"github.com/vmm-dev/vmm/devices/virtio/virtiotest"
	"github.com/vmm-dev/vmm/memory"
)

// The benchmarks compare the device path (test driver -> virtio-mmio ->
// queue -> writev/readv between guest memory and the backend -> used ring
// -> interrupt) with plain write/read of the same frames on the same kind
// of socketpair. A goroutine plays the other end (the host stack) in both.
// bytes/s count frame bytes, headers excluded.

// benchDepth frames are kept in flight on transmit, as a guest's qdisc
// does.
const benchDepth = 64

func BenchmarkTX1500(b *testing.B) { benchTX(b, 1500, vnet.Header{}) }

// BenchmarkTX64K sends TSO frames, as Linux does with HOST_TSO4.
func BenchmarkTX64K(b *testing.B) {
	benchTX(b, 65536, vnet.Header{Flags: vnet.FlagNeedsCSUM, GSOType: vnet.GSOTCPv4, HdrLen: 66, GSOSize: 1448, CSumStart: 34, CSumOffset: 16})
}

func BenchmarkRX1500(b *testing.B)          { benchRX(b, 1500) }
func BenchmarkSocketWrite1500(b *testing.B) { benchSocketWrite(b, 1500) }
func BenchmarkSocketWrite64K(b *testing.B)  { benchSocketWrite(b, 65536) }
func BenchmarkSocketRead1500(b *testing.B)  { benchSocketRead(b, 1500) }

func reportPackets(b *testing.B, start time.Time) {
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "pkts/s")
}

// drain reads n frames from f on its own goroutine.
func drain(f *os.File, n int, size int) *sync.WaitGroup {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		buf := make([]byte, size+vnet.HeaderSize+1)
		for range n {
			if _, err := f.Read(buf); err != nil {
				panic(err)
			}
		}
	}()
	return &wg
}

// flood writes n copies of frame into f on its own goroutine.
func flood(f *os.File, n int, frame []byte) *sync.WaitGroup {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for range n {
			if _, err := f.Write(frame); err != nil {
				panic(err)
			}
		}
	}()
	return &wg
}

func benchTX(b *testing.B, size int, h vnet.Header) {
	r := newRig(b, 16<<20)
	_, tx := r.start(b, allFeatures, 0, 0)
	frame := withHeader(h, ethFrame(size, 1))
	slots := make([]memory.GuestAddr, benchDepth)
	for i := range slots {
		slots[i] = r.alloc(b, len(frame), frame)
	}
	free := make([]int, 0, benchDepth)
	for i := range slots {
		free = append(free, i)
	}
	var slotOf [vnet.QueueSize]int

	b.SetBytes(int64(size))
	b.ResetTimer()
	start := time.Now()
	reader := drain(r.peer, b.N, size)
	submitted := 0
	reap := func(u virtiotest.Used) { free = append(free, slotOf[u.ID]) }
	for done := 0; done < b.N; {
		for len(free) > 0 && submitted < b.N {
			i := free[len(free)-1]
			free = free[:len(free)-1]
			head, err := tx.Add([]virtiotest.Buf{{Addr: slots[i], Len: uint32(len(frame))}})
			if err != nil {
				b.Fatal(err)
			}
			slotOf[head] = i
			submitted++
		}
		tx.Kick()
		u, err := tx.WaitUsed(virtiotest.DefaultTimeout)
		if err != nil {
			b.Fatal(err)
		}
		reap(u)
		done++
		for {
			u, ok, err := tx.PopUsed()
			if err != nil {
				b.Fatal(err)
			}
			if !ok {
				break
			}
			reap(u)
			done++
		}
	}
	reader.Wait()
	reportPackets(b, start)
	b.StopTimer()
	if st := r.net.Stats(); st.TXFrames != uint64(b.N) {
		b.Fatalf("%d frames sent, want %d: %+v", st.TXFrames, b.N, st)
	}
}

// benchRX keeps the receive ring full of 2 KiB buffers, as Linux does
// with mergeable buffers, and re-posts each buffer once it is used.
func benchRX(b *testing.B, size int) {
	r := newRig(b, 16<<20)
	rx, _ := r.start(b, allFeatures, 0, 0)
	const bufSize = 2048
	bufs := rxPost(b, r, rx, int(rx.Size()), bufSize)
	frame := withHeader(vnet.Header{}, ethFrame(size, 2))

	b.SetBytes(int64(size))
	b.ResetTimer()
	start := time.Now()
	writer := flood(r.peer, b.N, frame)
	repost := func(u virtiotest.Used) {
		addr := bufs[u.ID]
		delete(bufs, u.ID)
		head, err := rx.Add([]virtiotest.Buf{{Addr: addr, Len: bufSize, Writable: true}})
		if err != nil {
			b.Fatal(err)
		}
		bufs[head] = addr
	}
	for done := 0; done < b.N; {
		u, err := rx.WaitUsed(virtiotest.DefaultTimeout)
		if err != nil {
			b.Fatal(err)
		}
		repost(u)
		done++
		for {
			u, ok, err := rx.PopUsed()
			if err != nil {
				b.Fatal(err)
			}
			if !ok {
				break
			}
			repost(u)
			done++
		}
		rx.Kick()
	}
	writer.Wait()
	reportPackets(b, start)
	b.StopTimer()
	if st := r.net.Stats(); st.RXFrames != uint64(b.N) {
		b.Fatalf("%d frames received, want %d: %+v", st.RXFrames, b.N, st)
	}
}

func benchSocketWrite(b *testing.B, size int) {
	dev, peer := socketpair(b)
	defer dev.Close()
	defer peer.Close()
	frame := withHeader(vnet.Header{}, ethFrame(size, 1))
	b.SetBytes(int64(size))
	b.ResetTimer()
	start := time.Now()
	reader := drain(peer, b.N, size)
	for range b.N {
		if _, err := dev.Write(frame); err != nil {
			b.Fatal(err)
		}
	}
	reader.Wait()
	reportPackets(b, start)
}

func benchSocketRead(b *testing.B, size int) {
	dev, peer := socketpair(b)
	defer dev.Close()
	defer peer.Close()
	frame := withHeader(vnet.Header{}, ethFrame(size, 1))
	buf := make([]byte, len(frame)+1)
	b.SetBytes(int64(size))
	b.ResetTimer()
	start := time.Now()
	writer := flood(peer, b.N, frame)
	for range b.N {
		if _, err := dev.Read(buf); err != nil {
			b.Fatal(err)
		}
	}
	writer.Wait()
	reportPackets(b, start)
}
