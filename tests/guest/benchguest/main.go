// Command benchguest runs the guest side of the vmm benchmarks (make bench)
// and prints its results as "@@BENCH <what> key=value..." console lines.
//
//	benchguest blk DEVICE [SECONDS]   sequential 1 MiB and random 4 KiB reads, O_DIRECT
//	benchguest net HOST:PORT BYTES [SECONDS]   send BYTES of zeros over TCP
//
// It is built static (CGO_ENABLED=0) and runs on Debian's cloud kernel and
// on the minimal benchmark kernel (tests/guest/kernel/minimal.config).
package main

import (
	"fmt"
	"os"
	"strconv"
	"time"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Printf("@@BENCH error %v\n", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) < 1 {
		return fmt.Errorf("usage: benchguest blk DEVICE [SECONDS] | net HOST:PORT BYTES [SECONDS] | recv HOST:PORT [SECONDS] | tick")
	}
	switch args[0] {
	case "blk":
		if len(args) < 2 {
			return fmt.Errorf("blk: missing DEVICE")
		}
		limit, err := optionalSeconds(args, 2, 3*time.Second)
		if err != nil {
			return err
		}
		res, err := readBenchmark(args[1], limit)
		if err != nil {
			return err
		}
		fmt.Printf("@@BENCH blk seq_mibs=%.1f seq_bytes=%d rand_iops=%.0f rand_mibs=%.2f\n",
			res.seqMiBps, res.seqBytes, res.randIOPS, res.randMiBps)
		return nil
	case "net":
		if len(args) < 3 {
			return fmt.Errorf("net: missing HOST:PORT or BYTES")
		}
		n, err := strconv.ParseInt(args[2], 10, 64)
		if err != nil || n <= 0 {
			return fmt.Errorf("net: bytes %q: want a positive number", args[2])
		}
		limit, err := optionalSeconds(args, 3, 10*time.Second)
		if err != nil {
			return err
		}
		sent, elapsed, err := send(args[1], n, limit)
		if err != nil {
			return err
		}
		fmt.Printf("@@BENCH net tx_bytes=%d tx_ms=%.1f tx_mbits=%.1f\n",
			sent, float64(elapsed.Microseconds())/1000, float64(sent)*8/elapsed.Seconds()/1e6)
		return nil
	case "tick":
		// A line every 20 ms for ever, from one process: a shell loop
		// forks sleep(1) each time, which in the nested sandbox takes
		// longer than the interval.
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for i := 1; ; i++ {
			<-t.C
			fmt.Printf("@@BENCH tick %d\n", i)
		}
	case "recv":
		if len(args) < 2 {
			return fmt.Errorf("recv: missing HOST:PORT")
		}
		limit, err := optionalSeconds(args, 2, 60*time.Second)
		if err != nil {
			return err
		}
		res, err := recv(args[1], limit)
		if err != nil {
			return err
		}
		fmt.Printf("@@BENCH netrx rx_bytes=%d rx_ms=%.1f rx_mbits=%.1f rx_sha256=%s\n",
			res.bytes, float64(res.elapsed.Microseconds())/1000, float64(res.bytes)*8/res.elapsed.Seconds()/1e6, res.sha256)
		return nil
	default:
		return fmt.Errorf("unknown command %q", args[0])
	}
}

func optionalSeconds(args []string, i int, def time.Duration) (time.Duration, error) {
	if len(args) <= i {
		return def, nil
	}
	s, err := strconv.ParseFloat(args[i], 64)
	if err != nil || s <= 0 {
		return 0, fmt.Errorf("seconds %q: want a positive number", args[i])
	}
	return time.Duration(s * float64(time.Second)), nil
}
