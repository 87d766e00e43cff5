package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/vmm-dev/vmm/tests/bench/internal/results"
)

// Guest console markers (tests/bench/guest.go writes the guest's init).
const (
	markInit = "@@BENCH init"
	markIdle = "@@BENCH idle"
	markBlk  = "@@BENCH blk "
	markNet  = "@@BENCH net "
	markRx   = "@@BENCH netrx "
	markDone = "@@BENCH done"
	markErr  = "@@BENCH error"
)

// boot runs one VMM through one guest boot and collects the sample.
func (r *runner) boot(k results.KernelSpec, vmm string, round int) *results.Sample {
	s := r.bootOnce(k, vmm, round)
	if vmm != results.QEMU && s.Error != "" && r.withNet(k) && s.Metrics[results.BootConsole] == 0 && mentionsNet(s) {
		r.netOff = true
		r.netOffWhy = s.Error
		fmt.Printf("bench: vmm rejected its network device (%s): network benchmark n/a, both VMMs boot without one from now on\n", s.Error)
		s = r.bootOnce(k, vmm, round)
	}
	if r.netOff && k.IO {
		s.Notef("network n/a: vmm rejected --net: %s", r.netOffWhy)
	}
	return s
}

func mentionsNet(s *results.Sample) bool {
	text := strings.ToLower(s.Error + " " + strings.Join(s.ConsoleTail, " "))
	return strings.Contains(text, "net") || strings.Contains(text, "tap")
}

func (r *runner) bootOnce(k results.KernelSpec, vmm string, round int) *results.Sample {
	s := &results.Sample{Kernel: k.Name, VMM: vmm, Kind: results.KindBoot, Round: round}
	timeout := time.Duration(r.cfg.BootTimeoutSeconds * float64(time.Second))

	argv, port80, err := r.command(k, vmm)
	if err != nil {
		s.Error = err.Error()
		return s
	}
	if port80 != nil {
		defer port80.close()
	}

	var received chan receiveResult
	var served chan error
	if k.IO && r.withNet(k) {
		received = make(chan receiveResult, 1)
		go func() { received <- receive(r.receivers[netLinkOf(vmm)], timeout) }()
		if r.down != nil {
			served = make(chan error, 1)
			go func() { served <- serve(r.senders[netLinkOf(vmm)], r.down, timeout) }()
		}
	}

	p, err := start(argv, false)
	if err != nil {
		s.Error = fmt.Sprintf("start %s: %v", argv[0], err)
		return s
	}
	if port80 != nil {
		port80.serve(p.fork)
	}
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	var memTimer <-chan time.Time
	idle := time.Duration(r.cfg.IdleSeconds * float64(time.Second))
	sawDone := false

loop:
	for {
		select {
		case l, ok := <-p.lines:
			if !ok {
				break loop
			}
			if l.partial {
				continue
			}
			if r.cfg.ShowGuestConsole {
				fmt.Printf("guest %s| %s\n", vmm, l.text)
			}
			switch {
			case strings.HasPrefix(l.text, markInit) && s.Metrics[results.BootConsole] == 0:
				s.SetMetric(results.BootConsole, ms(l.at))
				if l.text != markInit {
					s.Notef("guest init: %q", l.text)
				}
			case strings.HasPrefix(l.text, markIdle):
				// Half-way through the guest's idle time: the boot's
				// work is done and the I/O tests have not started.
				memTimer = time.After(idle / 2)
			case strings.HasPrefix(l.text, markBlk):
				kv := parseKV(strings.TrimPrefix(l.text, markBlk))
				setFloat(s, results.BlkSeq, kv["seq_mibs"])
				setFloat(s, results.BlkRandIOPS, kv["rand_iops"])
			case strings.HasPrefix(l.text, markNet):
				s.Notef("guest sender: %s", strings.TrimPrefix(l.text, markNet))
			case strings.HasPrefix(l.text, markRx):
				kv := parseKV(strings.TrimPrefix(l.text, markRx))
				setFloat(s, results.NetH2G, kv["rx_mbits"])
				if want := strconv.Itoa(len(r.down)); kv["rx_bytes"] != want || kv["rx_sha256"] != r.downSHA {
					s.Error = fmt.Sprintf("the download arrived damaged: %s bytes with SHA-256 %s, want %s bytes with %s",
						kv["rx_bytes"], kv["rx_sha256"], want, r.downSHA)
				}
			case strings.HasPrefix(l.text, markErr):
				s.Notef("guest: %s", l.text)
			case strings.HasPrefix(l.text, markDone):
				sawDone = true
				// Power-off takes well under a second; a guest that
				// only halts (no ACPI power-off) must not use up the
				// whole timeout.
				deadline.Reset(30 * time.Second)
				if st, err := readKVMStats(p.cmd.Process.Pid); err == nil {
					s.KVMStats = st
					s.SetMetric(results.Exits, float64(st["exits"]))
				} else {
					s.Notef("KVM stats: %v", err)
				}
			}
		case <-memTimer:
			memTimer = nil
			r.sampleMemory(s, p.cmd.Process.Pid)
		case <-deadline.C:
			// vmm answers SIGTERM with where each vCPU was (its stop
			// report, on stderr, in the console tail): evidence for a
			// guest that hung. QEMU just exits.
			p.terminate(3 * time.Second)
			s.Error = fmt.Sprintf("timed out after %v", timeout)
			break loop
		}
	}
	exited := p.wait(10 * time.Second)
	total := time.Since(p.fork)
	if s.Error == "" {
		switch {
		case !exited:
			s.Error = "the VMM did not exit after its console closed"
		case p.exitCode() != 0:
			s.Error = fmt.Sprintf("exit status %d: %s", p.exitCode(), lastLine(p.otherOutput()))
		case !sawDone:
			s.Error = "the guest did not finish its script"
		}
	}
	s.SetMetric(results.Total, total.Seconds())

	if vmm != results.QEMU {
		r.addVMMStats(s, p)
	} else if port80 != nil {
		if at, ok := port80.marker(); ok {
			s.SetMetric(results.BootPort, ms(at))
		} else {
			s.Notef("no port 0x80 write of %#x seen through isa-debugcon", results.PortMarker)
		}
	}
	if received != nil {
		// The guest is gone: a receiver still waiting for its
		// connection stops now.
		if err := r.receivers[netLinkOf(vmm)].SetDeadline(time.Now()); err != nil {
			s.Notef("network receiver: %v", err)
		}
		res := <-received
		switch {
		case res.err != nil:
			s.Notef("network receiver: %v", res.err)
		case res.nonZero >= 0:
			if s.Error == "" {
				s.Error = fmt.Sprintf("the upload arrived damaged: byte %d of %d is not zero", res.nonZero, res.bytes)
			}
		case res.bytes > 0 && res.elapsed > 0:
			s.SetMetric(results.NetG2H, float64(res.bytes)*8/res.elapsed.Seconds()/1e6)
			s.Notef("network receiver: %d bytes in %v", res.bytes, res.elapsed.Round(time.Millisecond))
		}
	}
	if served != nil {
		if err := r.senders[netLinkOf(vmm)].SetDeadline(time.Now()); err != nil {
			s.Notef("network sender: %v", err)
		}
		if err := <-served; err != nil {
			s.Notef("network sender: %v", err)
		}
	}
	if s.Error != "" {
		s.ConsoleTail = append(p.tailLines(), strings.Split(tailText(p.otherOutput(), 20), "\n")...)
	}
	return s
}

// serve accepts one connection, writes data to it and closes it.
func serve(l *net.TCPListener, data []byte, timeout time.Duration) error {
	if err := l.SetDeadline(time.Now().Add(timeout)); err != nil {
		return err
	}
	conn, err := l.AcceptTCP()
	if err != nil {
		return fmt.Errorf("accept: %w", err)
	}
	defer conn.Close()
	if err := conn.SetWriteDeadline(time.Now().Add(timeout)); err != nil {
		return err
	}
	if _, err := conn.Write(data); err != nil {
		return fmt.Errorf("send: %w", err)
	}
	return nil
}

// addVMMStats takes vmm's --stats output: the start-up time, the port 0x80
// marker and the exit counts.
func (r *runner) addVMMStats(s *results.Sample, p *proc) {
	st := results.ParseVMMStats(p.otherOutput())
	if st.FirstRunUnixNano != 0 {
		s.SetMetric(results.StartupSelf, ms(time.Unix(0, st.FirstRunUnixNano).Sub(p.fork)))
	}
	if w, ok := st.LastWrite(results.PortMarker); ok {
		if w.UnixNano != 0 {
			s.SetMetric(results.BootPort, ms(time.Unix(0, w.UnixNano).Sub(p.fork)))
		} else {
			s.SetMetric(results.BootPort, ms(w.Since))
			s.Notef("vmm's port 0x80 time counts from the VM's creation, not the fork (vmm prints no unix-ns for it)")
		}
	} else if s.Error == "" {
		s.Notef("vmm --stats shows no port 0x80 write of %#x; its stderr ends: %q", results.PortMarker, tailText(p.otherOutput(), 12))
	}
	s.VMMExits = st.Exits
	s.VMMPorts = st.Ports
}

// sampleMemory reads the VMM's smaps while the guest idles.
func (r *runner) sampleMemory(s *results.Sample, pid int) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/smaps", pid))
	if err != nil {
		s.Notef("memory sample: %v", err)
		return
	}
	defer f.Close()
	guest := uint64(r.cfg.MemoryMiB) << 20
	mem, err := results.ParseSmaps(f, guest, 8<<20)
	if err != nil {
		s.Notef("memory sample: %v", err)
		return
	}
	if mem.GuestMaps != 1 {
		s.Notef("memory sample: %d mappings of guest RAM size", mem.GuestMaps)
	}
	s.SetMetric(results.RSSTotal, float64(mem.TotalRSS)/1024)
	s.SetMetric(results.RSSGuest, float64(mem.GuestRSS)/1024)
	s.SetMetric(results.RSSOverhead, float64(mem.OverheadRSS)/1024)
}

// receiveResult is what the level-1 side of the TCP test saw.
type receiveResult struct {
	bytes   int64
	elapsed time.Duration // first byte to EOF
	// nonZero is the offset of the first byte that is not zero (the guest
	// sends zeros), -1 if none.
	nonZero int64
	err     error
}

// receive accepts one connection and reads it to EOF.
func receive(l *net.TCPListener, timeout time.Duration) receiveResult {
	if err := l.SetDeadline(time.Now().Add(timeout)); err != nil {
		return receiveResult{err: err}
	}
	conn, err := l.AcceptTCP()
	if err != nil {
		return receiveResult{err: fmt.Errorf("accept: %w", err)}
	}
	defer conn.Close()
	if err := conn.SetReadDeadline(time.Now().Add(timeout)); err != nil {
		return receiveResult{err: err}
	}
	buf := make([]byte, 256<<10)
	res := receiveResult{nonZero: -1}
	var first time.Time
	for {
		n, err := conn.Read(buf)
		if n > 0 && first.IsZero() {
			first = time.Now()
		}
		if res.nonZero < 0 {
			for i, b := range buf[:n] {
				if b != 0 {
					res.nonZero = res.bytes + int64(i)
					break
				}
			}
		}
		res.bytes += int64(n)
		if err != nil {
			if !first.IsZero() {
				res.elapsed = time.Since(first)
			}
			if !errors.Is(err, io.EOF) {
				res.err = fmt.Errorf("after %d bytes: %w", res.bytes, err)
			}
			return res
		}
	}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func parseKV(s string) map[string]string {
	kv := map[string]string{}
	for _, f := range strings.Fields(s) {
		if k, v, ok := strings.Cut(f, "="); ok {
			kv[k] = v
		}
	}
	return kv
}

func setFloat(s *results.Sample, name, v string) {
	if f, err := strconv.ParseFloat(v, 64); err == nil {
		s.SetMetric(name, f)
	}
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

func tailText(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
