#!/bin/sh
# /init of the sandbox's guest initramfs: mount the pseudo file systems, load
# Debian's virtio drivers, run the scenario's guest script, power off.
#
# Which script runs: "vmmtest=NAME" on the kernel command line selects
# /scenarios/NAME.sh (in a child shell; a script named init-* runs in this
# shell, PID 1, so it can exec another init); without it /scenario.sh runs
# if present, else the default below. Markers start with "@@GUEST" so the harness can parse them.
export PATH=/bin
mount -t proc proc /proc
read -r up _ < /proc/uptime
echo "@@GUEST init uptime=$up"
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /tmp

# Dependency order matters: Debian ships no modules.dep for an initramfs.
# A kernel without module support (no /proc/modules: the suite's own
# kvm_guest kernel, all built in) has nothing to load.
if [ -e /proc/modules ]; then
	while read -r mod; do
		insmod "/lib/modules/$mod" || echo "@@GUEST insmod-failed module=$mod"
	done < /etc/modules
fi

cpus=$(grep -c ^processor /proc/cpuinfo)
read -r up _ < /proc/uptime
echo "@@GUEST ready kernel=$(uname -r) cpus=$cpus uptime=$up"

power_off() {
	echo "vmm guest: poweroff -f"
	poweroff -f
	sleep 5
	echo "vmm guest: poweroff -f did not stop the VM; trying reboot -f"
	reboot -f
	sleep 5
	echo "vmm guest: reboot -f did not stop the VM either"
	while :; do sleep 3600; done
}

default_script() {
	echo "vmm guest: init reached"
	echo "vmm guest: kernel $(uname -r)"
	echo "vmm guest: cpus $cpus"
}

name=
for arg in $(cat /proc/cmdline); do
	case "$arg" in
	vmmtest=*) name=${arg#vmmtest=} ;;
	esac
done

if [ -n "$name" ]; then
	if [ -f "/scenarios/$name.sh" ] && [ "${name#init-}" != "$name" ]; then
		# init-NAME runs in PID 1 itself, so it can exec another init.
		. "/scenarios/$name.sh"
		echo "@@GUEST script-done name=$name rc=$?"
	elif [ -f "/scenarios/$name.sh" ]; then
		sh "/scenarios/$name.sh"
		echo "@@GUEST script-done name=$name rc=$?"
	else
		echo "@@GUEST error unknown guest script vmmtest=$name"
	fi
elif [ -f /scenario.sh ]; then
	sh /scenario.sh
	echo "@@GUEST script-done name=scenario rc=$?"
else
	default_script
fi
power_off
