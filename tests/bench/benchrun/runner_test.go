package main

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/vmm-dev/vmm/tests/bench/internal/results"
)

func testRunner(withNet bool) *runner {
	cfg := &results.Config{VMM: "/vmm", Initrd: "/initrd", CPUs: 2, MemoryMiB: 256, Disk: "/disk.img",
		IdleSeconds: 2, IOSeconds: 1.5, NetBytes: 1 << 20,
		QEMU: results.Dynamic{Loader: "/l/ld.so", LibDir: "/l", Binary: "/q"}, QEMUDataDir: "/share"}
	if withNet {
		cfg.Net = &results.NetSpec{Port: 5201, Links: map[string]results.NetLink{
			results.VMM:  {Tap: "tapv", HostIP: "10.0.1.1", GuestIP: "10.0.1.2", MAC: "02:00:00:00:01:02"},
			results.QEMU: {Tap: "tapq", HostIP: "10.0.2.1", GuestIP: "10.0.2.2", MAC: "02:00:00:00:02:02"},
		}}
	}
	return &runner{cfg: cfg}
}

func TestVMMArgs(t *testing.T) {
	r := testRunner(true)
	k := results.KernelSpec{Name: "debian", BzImage: "/bz", Cmdline: "console=ttyS0", IO: true}
	args := strings.Join(r.vmmArgs(k, results.VMM), " ")
	assert.Contains(t, args, "/vmm run --kernel /bz --initrd /initrd --cmdline console=ttyS0 bench.idle=2 bench.io=1 bench.ioseconds=1.5 bench.ip=10.0.1.2 bench.host=10.0.1.1 bench.port=5201 bench.bytes=1048576")
	assert.Contains(t, args, "--cpus 2 --memory 256M --console stdio --stats --transport mmio --disk /disk.img --net tap=tapv")

	// vmm over PCI: the same devices, vmm's TAP and addresses.
	args = strings.Join(r.vmmArgs(k, results.VMMPCI), " ")
	assert.Contains(t, args, "bench.ip=10.0.1.2 bench.host=10.0.1.1")
	assert.Contains(t, args, "--stats --transport pci --disk /disk.img --net tap=tapv")

	r.netOff = true
	args = strings.Join(r.vmmArgs(k, results.VMM), " ")
	assert.NotContains(t, args, "--net")
	assert.NotContains(t, args, "bench.ip=")
}

func TestQEMUArgs(t *testing.T) {
	r := testRunner(true)
	k := results.KernelSpec{Name: "minimal", BzImage: "/bz", Cmdline: "console=ttyS0"}
	args := r.qemuArgs(k, "/p80.sock")
	assert.Equal(t, []string{"/l/ld.so", "--library-path", "/l", "/q", "-L", "/share", "-M", QEMUMachine}, args[:8])
	joined := strings.Join(args, " ")
	assert.Contains(t, joined, "-append console=ttyS0 bench.idle=2 -drive")
	assert.NotContains(t, joined, "bench.io", "I/O tests only for kernels with IO set")
	assert.Contains(t, joined, "-device virtio-blk-device,drive=d0")
	assert.Contains(t, joined, "-netdev tap,id=n0,ifname=tapq,script=no,downscript=no,vhost=off -device virtio-net-device,netdev=n0,mac=02:00:00:00:02:02")
	assert.Contains(t, joined, "-chardev socket,id=p80,path=/p80.sock -device isa-debugcon,iobase=0x80,chardev=p80")
}

func TestParseKV(t *testing.T) {
	assert.Equal(t, map[string]string{"a": "1", "b": "x=y"}, parseKV("a=1 junk b=x=y"))
}

// The download is the same stream every run, and its digest is of it.
func TestDownloadData(t *testing.T) {
	a, sumA := downloadData(1<<20 + 3)
	b, sumB := downloadData(1<<20 + 3)
	assert.Equal(t, a, b)
	assert.Equal(t, sumA, sumB)
	assert.Len(t, a, 1<<20+3)
	c, sumC := downloadData(1 << 20)
	assert.NotEqual(t, sumA, sumC)
	assert.Equal(t, a[:len(c)], c, "a longer stream starts with the shorter one")
}

func TestCmdlineDownload(t *testing.T) {
	r := testRunner(true)
	r.down = []byte{1}
	k := results.KernelSpec{Name: "debian", Cmdline: "console=ttyS0", IO: true}
	assert.Contains(t, r.cmdline(k, results.VMM), "bench.bytes=1048576 bench.downport=5202")
}
