package main

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"net"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/vmm-dev/vmm/tests/bench/internal/results"
)

type runner struct {
	cfg *results.Config
	// receivers accept the guest's TCP stream, one per VMM's TAP subnet.
	receivers map[string]*net.TCPListener
	// senders serve the host-to-guest stream down (NetDownBytes), whose
	// SHA-256 the guest must report.
	senders map[string]*net.TCPListener
	down    []byte
	downSHA string
	// netOff: vmm rejected --net, so neither VMM gets a network device
	// (boots stay comparable) and the network metric is n/a.
	netOff    bool
	netOffWhy string
	runs      int
}

func newRunner(cfg *results.Config) (*runner, error) {
	r := &runner{cfg: cfg, receivers: map[string]*net.TCPListener{}, senders: map[string]*net.TCPListener{}}
	if cfg.Net != nil {
		for vmm, link := range cfg.Net.Links {
			if err := r.listen(r.receivers, vmm, link.HostIP, cfg.Net.Port); err != nil {
				return nil, err
			}
			if cfg.NetDownBytes > 0 {
				if err := r.listen(r.senders, vmm, link.HostIP, cfg.Net.Port+1); err != nil {
					return nil, err
				}
			}
		}
		if cfg.NetDownBytes > 0 {
			r.down, r.downSHA = downloadData(cfg.NetDownBytes)
		}
	}
	return r, nil
}

func (r *runner) listen(into map[string]*net.TCPListener, vmm, ip string, port int) error {
	addr := &net.TCPAddr{IP: net.ParseIP(ip), Port: port}
	l, err := net.ListenTCP("tcp", addr)
	if err != nil {
		r.close()
		return fmt.Errorf("listen for %s on %v: %w", vmm, addr, err)
	}
	into[vmm] = l
	return nil
}

// downloadData is the host-to-guest stream: n pseudo-random bytes (a
// fixed seed: the same stream every run) and their SHA-256.
func downloadData(n int64) ([]byte, string) {
	data := make([]byte, n)
	rng := rand.New(rand.NewChaCha8([32]byte{'v', 'm', 'm'}))
	for i := 0; i+8 <= len(data); i += 8 {
		binary.LittleEndian.PutUint64(data[i:], rng.Uint64())
	}
	sum := sha256.Sum256(data)
	return data, hex.EncodeToString(sum[:])
}

func (r *runner) close() {
	for _, m := range []map[string]*net.TCPListener{r.receivers, r.senders} {
		for _, l := range m {
			// Closing at exit; an error changes nothing then.
			_ = l.Close()
		}
	}
}

// link is the TAP side of vmm's network: vmm over PCI uses vmm's, since
// the boots run one at a time.
func netLinkOf(vmm string) string {
	if vmm == results.VMMPCI {
		return results.VMM
	}
	return vmm
}

// withNet reports whether this run gets a network device.
func (r *runner) withNet(k results.KernelSpec) bool {
	return r.cfg.Net != nil && !r.netOff
}

// cmdline is the guest command line for one VMM: the kernel's, plus what
// the guest's /bench-init.sh reads.
func (r *runner) cmdline(k results.KernelSpec, vmm string) string {
	parts := []string{k.Cmdline, "bench.idle=" + strconv.FormatFloat(r.cfg.IdleSeconds, 'f', -1, 64)}
	if k.IO {
		parts = append(parts, "bench.io=1", "bench.ioseconds="+strconv.FormatFloat(r.cfg.IOSeconds, 'f', -1, 64))
		if r.withNet(k) {
			link := r.cfg.Net.Links[netLinkOf(vmm)]
			parts = append(parts, "bench.ip="+link.GuestIP, "bench.host="+link.HostIP,
				"bench.port="+strconv.Itoa(r.cfg.Net.Port), "bench.bytes="+strconv.FormatInt(r.cfg.NetBytes, 10))
			if r.down != nil {
				parts = append(parts, "bench.downport="+strconv.Itoa(r.cfg.Net.Port+1))
			}
		}
	}
	return strings.Join(parts, " ")
}

// vmmArgs is the vmm command line of a boot by vmm (results.VMM: over
// MMIO, results.VMMPCI: over PCI).
func (r *runner) vmmArgs(k results.KernelSpec, vmm string) []string {
	transport := "mmio"
	if vmm == results.VMMPCI {
		transport = "pci"
	}
	args := []string{r.cfg.VMM, "run",
		"--kernel", k.BzImage, "--initrd", r.cfg.Initrd, "--cmdline", r.cmdline(k, vmm),
		"--cpus", strconv.Itoa(r.cfg.CPUs), "--memory", fmt.Sprintf("%dM", r.cfg.MemoryMiB),
		"--console", "stdio", "--stats", "--transport", transport}
	if r.cfg.Disk != "" {
		args = append(args, "--disk", r.cfg.Disk)
	}
	if r.withNet(k) {
		link := r.cfg.Net.Links[results.VMM]
		// No ",mac=": vmm's CLI splits flag values at commas (urfave/cli
		// slice flags), so "tap=X,mac=Y" reaches it as two values.
		args = append(args, "--net", "tap="+link.Tap)
	}
	return args
}

// QEMUMachine is the fastest sane microvm configuration with a serial
// console (QEMU's docs/system/i386/microvm.rst): no option ROMs, no legacy
// PIT, PIC or RTC (the guest uses the LAPIC timer and kvmclock), ACPI on
// (Debian's kernel finds the virtio-mmio devices only in the DSDT).
const QEMUMachine = "microvm,x-option-roms=off,pit=off,pic=off,isa-serial=on,rtc=off,acpi=on"

// qemuArgs is QEMU's command line of a boot; port80Socket receives the
// guest's port 0x80 writes through an isa-debugcon device.
func (r *runner) qemuArgs(k results.KernelSpec, port80Socket string) []string {
	args := append(r.cfg.QEMU.Command(),
		"-L", r.cfg.QEMUDataDir,
		"-M", QEMUMachine, "-enable-kvm", "-cpu", "host",
		"-smp", strconv.Itoa(r.cfg.CPUs), "-m", fmt.Sprintf("%dM", r.cfg.MemoryMiB),
		"-nodefaults", "-no-user-config", "-nographic", "-no-reboot", "-serial", "stdio",
		"-kernel", k.BzImage, "-initrd", r.cfg.Initrd, "-append", r.cmdline(k, results.QEMU))
	if r.cfg.Disk != "" {
		args = append(args, "-drive", "id=d0,file="+r.cfg.Disk+",format=raw,if=none",
			"-device", "virtio-blk-device,drive=d0")
	}
	if r.withNet(k) {
		link := r.cfg.Net.Links[results.QEMU]
		args = append(args, "-netdev", "tap,id=n0,ifname="+link.Tap+",script=no,downscript=no,vhost=off",
			"-device", "virtio-net-device,netdev=n0,mac="+link.MAC)
	}
	if port80Socket != "" {
		args = append(args, "-chardev", "socket,id=p80,path="+port80Socket,
			"-device", "isa-debugcon,iobase=0x80,chardev=p80")
	}
	return args
}

// scratch returns a fresh path in the work directory.
func (r *runner) scratch(name string) string {
	r.runs++
	return filepath.Join(r.cfg.Work, fmt.Sprintf("bench-%d-%s", r.runs, name))
}
