// Command hostile is a hostile virtio driver: it runs in a guest of vmm
// and drives one virtio-blk device (and optionally one virtio-net device)
// directly through /dev/mem, their virtio-mmio registers and a RAM region
// the kernel leaves alone (memmap=SIZE$ADDR), breaking the rules of
// virtio 1.2 one case at a time.
// After each case it checks that a second disk, served by the kernel's
// virtio_blk driver, still reads the same bytes, and that a reset brings
// the attacked device back. It prints one line per case:
//
//	@@GUEST case=NAME result=done needs_reset=0|1 completed=0|1 ... witness=ok|bad recovered=0|1
//
// and leaves the verdict to the Go test (tests/hostile_test.go), which
// holds what the spec wants for each case. Built static (CGO_ENABLED=0).
//
//	hostile -window 0xd0000000 -net-window 0xd0002000 -region 0x10000000 -region-size 0x1000000 -ram-end 0x20000000 -witness /dev/vdb
package main

import (
	"bytes"
	"crypto/sha256"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

func main() {
	window := flag.Uint64("window", 0xd0000000, "guest-physical address of the attacked device's virtio-mmio window")
	region := flag.Uint64("region", 0x10000000, "guest-physical address of the memmap= region for rings and buffers")
	regionSize := flag.Uint64("region-size", 16<<20, "size of the region")
	ramEnd := flag.Uint64("ram-end", 512<<20, "end of guest RAM below the MMIO hole")
	witness := flag.String("witness", "", "block device of a second disk, read after every case")
	netWindow := flag.Uint64("net-window", 0, "virtio-mmio window of a network device to attack too (0: none)")
	only := flag.String("only", "", "run only the cases whose names contain this")
	flag.Parse()
	if err := run(*window, *netWindow, *region, *regionSize, *ramEnd, *witness, *only); err != nil {
		fmt.Printf("@@GUEST hostile=error %v\n", err)
		os.Exit(1)
	}
	fmt.Println("@@GUEST hostile=done")
}

// hostile holds what every case needs.
type hostile struct {
	d         *driver
	ramEnd    uint64
	witness   string
	witnessOK []byte // sha256 of the witness disk's first MiB at the start
	target    []byte // the attacked disk's first 4 KiB, read at the start
	capacity  uint64 // the attacked disk's capacity in sectors
	nic       *nic   // the attacked network device, if any
}

func run(window, netWindow, region, regionSize, ramEnd uint64, witness, only string) error {
	wm, err := mapPhys(window, windowSize)
	if err != nil {
		return err
	}
	rm, err := mapPhys(region, regionSize)
	if err != nil {
		return err
	}
	h := &hostile{d: &driver{r: regs{wm}, mem: rm}, ramEnd: ramEnd, witness: witness}
	if id := h.d.r.read32(regDeviceID); id != 2 {
		return fmt.Errorf("device at %#x has ID %d, not a block device", window, id)
	}
	if v := h.d.r.read32(regVersion); v != 2 {
		return fmt.Errorf("virtio-mmio version %d, not 2", v)
	}
	if h.witnessOK, err = h.readWitness(); err != nil {
		return err
	}
	if err := h.d.start(0, queueSize, featVersion1|featIndirect); err != nil {
		return fmt.Errorf("first handshake: %w", err)
	}
	h.capacity = h.d.r.read(regConfig, 8)
	out := h.read(0, offData, 4096)
	if !out.completed || h.status(0) != 0 {
		return fmt.Errorf("first read of the attacked disk: %+v, status %d", out, h.status(0))
	}
	h.target = bytes.Clone(h.d.mem.at(h.d.ring(offData))[:4096])
	sum := sha256.Sum256(h.target)
	fmt.Printf("@@GUEST hostile=start capacity=%d target_sha256=%x witness_sha256=%x\n", h.capacity, sum, h.witnessOK)
	all := cases
	if netWindow != 0 {
		nm, err := mapPhys(netWindow, windowSize)
		if err != nil {
			return err
		}
		h.nic = newNIC(regs{nm}, rm)
		if id := h.nic.rx.r.read32(regDeviceID); id != 1 {
			return fmt.Errorf("device at %#x has ID %d, not a network device", netWindow, id)
		}
		all = append(all[:len(all):len(all)], netCases...)
	}
	for _, c := range all {
		if only != "" && !strings.Contains(c.name, only) {
			continue
		}
		h.runCase(c)
	}
	return nil
}

// queueSize is the queue size of every case but those about sizes.
const queueSize = 256

// facts are a case's observations, printed in order.
type facts []string

func (f *facts) add(k string, v any) { *f = append(*f, fmt.Sprintf("%s=%v", k, v)) }

func bit(b bool) int {
	if b {
		return 1
	}
	return 0
}

// outcome adds a submission's result.
func (f *facts) outcome(o outcome) {
	f.add("needs_reset", bit(o.needsReset))
	f.add("completed", bit(o.completed))
	if o.completed {
		f.add("used_len", o.length)
	}
}

type hostileCase struct {
	name string
	// fresh: start the device with the usual queue before the case.
	fresh bool
	run   func(h *hostile, f *facts) error
}

func (h *hostile) runCase(c hostileCase) {
	var f facts
	err := func() error {
		if c.fresh {
			if err := h.d.start(0, queueSize, featVersion1|featIndirect); err != nil {
				return fmt.Errorf("handshake: %w", err)
			}
		}
		return c.run(h, &f)
	}()
	result := "done"
	if err != nil {
		result = "error"
		f.add("error", strings.ReplaceAll(err.Error(), " ", "_"))
	}
	sum, werr := h.readWitness()
	switch {
	case werr != nil:
		f.add("witness", "error")
	case bytes.Equal(sum, h.witnessOK):
		f.add("witness", "ok")
	default:
		f.add("witness", "bad")
	}
	if h.nic != nil && strings.HasPrefix(c.name, "net_") {
		f.add("recovered", bit(h.nic.recover()))
	} else {
		f.add("recovered", bit(h.recover()))
	}
	fmt.Printf("@@GUEST case=%s result=%s %s\n", c.name, result, strings.Join(f, " "))
}

// recover resets the device, sets it up again and reads the first 4 KiB.
func (h *hostile) recover() bool {
	if err := h.d.start(0, queueSize, featVersion1|featIndirect); err != nil {
		fmt.Printf("hostile: recovery handshake: %v\n", err)
		return false
	}
	return h.goodRead()
}

// goodRead reads the attacked disk's first 4 KiB on the running queue and
// checks every byte.
func (h *hostile) goodRead() bool {
	data := h.d.mem.at(h.d.ring(offData))[:4096]
	clear(data)
	out := h.read(0, offData, 4096)
	return out.completed && !out.needsReset && out.length == 4097 && h.status(0) == 0 && bytes.Equal(data, h.target)
}

// readWitness hashes the witness disk's first MiB, read with O_DIRECT so
// that every read reaches its device.
func (h *hostile) readWitness() ([]byte, error) {
	if h.witness == "" {
		return nil, nil
	}
	fd, err := unix.Open(h.witness, unix.O_RDONLY|unix.O_DIRECT|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", h.witness, err)
	}
	defer unix.Close(fd)
	buf, err := unix.Mmap(-1, 0, 1<<20, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return nil, fmt.Errorf("witness buffer: %w", err)
	}
	defer unix.Munmap(buf)
	for got := 0; got < len(buf); {
		n, err := unix.Pread(fd, buf[got:], int64(got))
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", h.witness, err)
		}
		if n == 0 {
			break
		}
		got += n
	}
	sum := sha256.Sum256(buf)
	return sum[:], nil
}

// Short waits: a broken ring shows within milliseconds; the sandbox's
// nested virtualization is slow, so give it seconds.
const (
	waitDone    = 5 * time.Second
	waitNothing = 1500 * time.Millisecond
)
