package main

import (
	"fmt"
	"math/rand/v2"
	"time"

	"golang.org/x/sys/unix"
)

// Block sizes: sequential reads of 1 MiB (the device's full bandwidth) and
// random reads of 4 KiB at queue depth 1 (per-request latency).
const (
	seqBlock  = 1 << 20
	randBlock = 4096
)

type readResult struct {
	seqBytes  int64
	seqMiBps  float64
	randIOPS  float64
	randMiBps float64
}

// readBenchmark reads the device with O_DIRECT, so every read reaches the
// virtio-blk device and not the guest's page cache: first sequentially
// from the start (until the end or limit), then 4 KiB blocks at random
// aligned offsets for limit.
func readBenchmark(device string, limit time.Duration) (readResult, error) {
	fd, err := unix.Open(device, unix.O_RDONLY|unix.O_DIRECT|unix.O_CLOEXEC, 0)
	if err != nil {
		return readResult{}, fmt.Errorf("open %s: %w", device, err)
	}
	defer unix.Close(fd)
	size, err := unix.Seek(fd, 0, unix.SEEK_END)
	if err != nil || size < randBlock {
		return readResult{}, fmt.Errorf("size of %s: %d bytes (%v)", device, size, err)
	}
	// O_DIRECT needs aligned buffers: an anonymous mapping is page aligned.
	buf, err := unix.Mmap(-1, 0, seqBlock, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return readResult{}, fmt.Errorf("buffer: %w", err)
	}
	defer unix.Munmap(buf)

	var res readResult
	start := time.Now()
	for off := int64(0); off < size && time.Since(start) < limit; {
		n, err := unix.Pread(fd, buf, off)
		if err != nil {
			return res, fmt.Errorf("read %s at %d: %w", device, off, err)
		}
		if n == 0 {
			break
		}
		off += int64(n)
		res.seqBytes += int64(n)
	}
	res.seqMiBps = float64(res.seqBytes) / (1 << 20) / time.Since(start).Seconds()

	blocks := size / randBlock
	rng := rand.New(rand.NewPCG(1, 2)) // the same offsets for every VMM
	var reads int
	start = time.Now()
	for time.Since(start) < limit {
		off := rng.Int64N(blocks) * randBlock
		if _, err := unix.Pread(fd, buf[:randBlock], off); err != nil {
			return res, fmt.Errorf("read %s at %d: %w", device, off, err)
		}
		reads++
	}
	elapsed := time.Since(start).Seconds()
	res.randIOPS = float64(reads) / elapsed
	res.randMiBps = float64(reads) * randBlock / (1 << 20) / elapsed
	return res, nil
}
