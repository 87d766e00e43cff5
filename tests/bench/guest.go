package main

import (
	"github.com/vmm-dev/vmm/tests/bench/internal/results"
	"github.com/vmm-dev/vmm/tests/guest/portinit"
	"github.com/vmm-dev/vmm/tests/sandbox"
)

// guestInitScript is /bench-init.sh, which the generated /init execs
// after its port 0x80 marker. Debian's kernel needs its virtio modules
// (listed in /etc/modules by the sandbox's initramfs builder); the minimal
// kernel has them built in and no module support (no /proc/modules).
//
// Command line: bench.idle=S (idle at init, for the memory sample),
// bench.io=1 with bench.ioseconds=S (block test on /dev/vda), bench.ip,
// bench.host, bench.port, bench.bytes (TCP send to the host), after
// bench.downport (a TCP receive from the host on that port first, its
// SHA-256 printed for the runner to compare); bench.tick=1
// prints "@@BENCH tick N" every 20 ms instead, for ever (the snapshot
// benchmark's guest: a restored one shows it runs within a tick).
const guestInitScript = `#!/bin/sh
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mount -t tmpfs tmpfs /tmp
if [ -e /proc/modules ]; then
	while read -r mod; do
		insmod "/lib/modules/$mod" 2>/dev/null || echo "@@BENCH error insmod $mod"
	done < /etc/modules
fi
idle=2 io=0 ioseconds=2 ip= host= port= bytes= downport= tick=0
for arg in $(cat /proc/cmdline); do
	case "$arg" in
	bench.idle=*) idle=${arg#*=} ;;
	bench.io=*) io=${arg#*=} ;;
	bench.ioseconds=*) ioseconds=${arg#*=} ;;
	bench.ip=*) ip=${arg#*=} ;;
	bench.host=*) host=${arg#*=} ;;
	bench.port=*) port=${arg#*=} ;;
	bench.bytes=*) bytes=${arg#*=} ;;
	bench.downport=*) downport=${arg#*=} ;;
	bench.tick=*) tick=${arg#*=} ;;
	esac
done
if [ "$tick" = 1 ]; then
	exec /bin/benchguest tick
fi
echo "@@BENCH idle"
sleep "$idle"
if [ "$io" = 1 ]; then
	if [ -b /dev/vda ]; then
		/bin/benchguest blk /dev/vda "$ioseconds"
	else
		echo "@@BENCH error no /dev/vda"
	fi
	if [ -n "$ip" ]; then
		if ip link set eth0 up && ip addr add "$ip/24" dev eth0; then
			if [ -n "$downport" ]; then
				/bin/benchguest recv "$host:$downport"
			fi
			/bin/benchguest net "$host:$port" "$bytes" "$ioseconds"
		else
			echo "@@BENCH error network setup failed"
		fi
	fi
fi
echo "@@BENCH done"
poweroff -f
sleep 5
reboot -f
sleep 5
echo "@@BENCH error the VM did not stop"
`

// guestOptions is the guest initramfs: the sandbox's (busybox, Debian's
// virtio modules) with the generated /init, the script and the helper.
func guestOptions(benchguest string) (sandbox.GuestOptions, error) {
	initELF, err := portinit.ELF(portinit.Program{
		Port:        0x80,
		Value:       results.PortMarker,
		Message:     "@@BENCH init\n",
		FailMessage: "@@BENCH init no-ioperm\n",
		Argv:        []string{"/bin/sh", "/bench-init.sh"},
	})
	if err != nil {
		return sandbox.GuestOptions{}, err
	}
	return sandbox.GuestOptions{Files: []sandbox.File{
		// Replaces the sandbox's /init (later entries win).
		{Name: "/init", Data: initELF, Mode: 0o755},
		{Name: "/bench-init.sh", Data: []byte(guestInitScript), Mode: 0o755},
		{Name: "/bin/benchguest", HostPath: benchguest, Mode: 0o755},
	}}, nil
}
