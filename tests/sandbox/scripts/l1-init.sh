#!/bin/sh
# /init of the sandbox's level-1 machine (Debian's kernel under QEMU TCG with
# AMD-V): mount, load KVM, then hand over to run.sh; power off at the end.
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /work

# A line is a module file and, optionally, its parameters.
while read -r mod params; do
	# shellcheck disable=SC2086 # the parameters are separate words
	insmod "/lib/modules/$mod" $params || echo "@@L1 error insmod $mod failed"
done < /etc/modules
[ -c /dev/kvm ] || echo "@@L1 error /dev/kvm is missing after loading the KVM modules"
ip link set lo up 2>/dev/null

# The heartbeat: level 1's uptime every 5 s on its second serial port, a
# file on the host (not the console, so it never splits a line of it). A
# heartbeat that stops means level 1's own timers stopped: it froze.
# Its first line is the kernel's text address (KASLR moves it), so a freeze
# report can name each CPU's RIP as an offset into the kernel image.
if [ -c /dev/ttyS1 ]; then
	( while read -r addr _ name; do
		[ "$name" = _text ] && { echo "ktext=$addr" > /dev/ttyS1; break; }
	done < /proc/kallsyms
	while :; do
		read -r up _ < /proc/uptime
		echo "$up" > /dev/ttyS1
		sleep 5
	done ) < /dev/null > /dev/null 2>&1 &
fi

# env sets the variables the scenario sees and its arguments (set -- ...).
. /sandbox/env
cd "$WORK" || echo "@@L1 error cannot enter WORK=$WORK"
/bin/sh /sandbox/run.sh "$@"

poweroff -f
sleep 10
reboot -f
