#!/bin/bash
# Builds level 1's QEMU from Debian's source with the patches in this
# directory, into the artifact cache, and prints the binary's path:
#
#	VMM_QEMU=$(tests/sandbox/qemu/build.sh) make test
#
# On Debian 12 the sandbox runs it by default (tests/sandbox/qemu.go, and
# tests/README.md, "A lost interrupt in QEMU's VMRUN"); set VMM_QEMU to use
# another binary. Needs root (apt-get) and about 5 minutes on 2 cores, once
# per version and patch set.
# The source is Debian 13's qemu (apt-get source, checked against its
# .dsc); the firmware comes from Debian 13's qemu-system-data and seabios
# (architecture all). Only qemu-system-x86_64 is built, with TCG and KVM.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
suite=trixie
cache=${VMM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/vmm}/qemu-src
# VMM_QEMU_EXTRA_PATCHES=DIR applies DIR/*.patch after this directory's,
# for a debugging build (tests/sandbox/qemu/debug/): a build of its own,
# keyed by those patches too.
patches=("$here"/*.patch)
if [ -n "${VMM_QEMU_EXTRA_PATCHES:-}" ]; then
	patches+=("$VMM_QEMU_EXTRA_PATCHES"/*.patch)
	[ -e "${patches[-1]}" ] || { echo "build.sh: no patches in $VMM_QEMU_EXTRA_PATCHES" >&2; exit 1; }
fi
key=$(cat "${patches[@]}" "$0" | sha256sum | cut -c1-12)
mkdir -p "$cache"

# private_apt NAME DIR LINE...: apt options, into the array NAME, for a
# sources list of LINEs and package lists under DIR, so that the system's
# apt configuration and its lists stay as they are.
private_apt() {
	local -n opts=$1
	local dir=$2
	shift 2
	mkdir -p "$dir/lists/partial" "$dir/cache/archives/partial"
	printf '%s\n' "$@" > "$dir/sources.list"
	opts=(-o Dir::Etc::sourcelist="$dir/sources.list" -o Dir::Etc::sourceparts=- -o Dir::State::Lists="$dir/lists" -o Dir::Cache="$dir/cache" -o APT::Get::List-Cleanup=0)
}
signed="[signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian"
private_apt apt "$cache/.apt" "deb-src $signed $suite main" "deb $signed $suite main"
apt-get "${apt[@]}" update -q >&2
version=$(apt-cache "${apt[@]}" showsrc qemu | sed -n 's/^Version: //p' | head -1)
[ -n "$version" ] || { echo "build.sh: no qemu source in $suite" >&2; exit 1; }
into=$cache/$(echo "$version" | tr ':~+' '___')-$key
if [ -e "$into/complete" ]; then
	echo "$into/usr/bin/qemu-system-x86_64"
	exit 0
fi

# Build dependencies: Debian 12's, and meson 1.7 from bookworm-backports
# (QEMU 10 needs 1.5 or later; Debian 12 has 1.0), unpacked, not installed.
deps="build-essential ninja-build pkg-config python3-venv flex bison libglib2.0-dev libpixman-1-dev libfdt-dev zlib1g-dev bzip2"
missing=$(for p in $deps; do dpkg -s "$p" >/dev/null 2>&1 || echo "$p"; done)
if [ -n "$missing" ]; then
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing >&2
fi
tmp=$(mktemp -d "$cache/.build-XXXXXX")
trap 'rm -rf "$tmp"' EXIT
private_apt bpo "$tmp/bpo" "deb $signed bookworm-backports main"
apt-get "${bpo[@]}" update -q >&2
(cd "$tmp" && apt-get "${bpo[@]}" download meson/bookworm-backports >&2)
dpkg-deb -x "$tmp"/meson_*.deb "$tmp/meson"

(cd "$tmp" && apt-get "${apt[@]}" source --download-only "qemu=$version" >&2)
(cd "$tmp" && tar xf qemu_*.orig.tar.xz)
src=$(echo "$tmp"/qemu-*/)
for p in "${patches[@]}"; do
	patch -d "$src" -p1 < "$p" >&2
done
# Debian's source drops the prebuilt firmware and the Python wheels:
# leave out the EDK2 images (firmware comes from qemu-system-data) and
# pycotap (QEMU's own test runner, not built here).
sed -i 's/^if unpack_edk2_blobs$/if false/' "$src/pc-bios/meson.build"
sed -i '/^pycotap = /d' "$src/pythondeps.toml"

mkdir -p "$tmp/build"
# ninja runs meson again for some outputs: both need the unpacked meson.
export PYTHONPATH="$tmp/meson/usr/lib/python3/dist-packages" PATH="$tmp/meson/usr/bin:$PATH"
(cd "$tmp/build" &&
	"$src/configure" --python=/usr/bin/python3 --target-list=x86_64-softmmu \
		--without-default-features --enable-tcg --enable-kvm --enable-fdt=system \
		--disable-docs --disable-tools --disable-werror --disable-install-blobs >&2 &&
	ninja -j"$(nproc)" qemu-system-x86_64 >&2)

# The tree QEMU expects: the binary in usr/bin, its data in usr/share/qemu
# (found relative to the binary), SeaBIOS's images linked into it.
root=$tmp/root
mkdir -p "$root/usr/bin"
(cd "$tmp" && apt-get "${apt[@]}" download "qemu-system-data=$version" seabios >&2)
for d in "$tmp"/qemu-system-data_*.deb "$tmp"/seabios_*.deb; do
	dpkg-deb -x "$d" "$root"
done
for b in "$root"/usr/share/seabios/*.bin; do
	ln -sf "../seabios/$(basename "$b")" "$root/usr/share/qemu/$(basename "$b")"
done
cp "$tmp/build/qemu-system-x86_64" "$root/usr/bin/"
"$root/usr/bin/qemu-system-x86_64" --version >&2
echo "$version" > "$root/complete"
rm -rf "$into"
mv "$root" "$into"
echo "$into/usr/bin/qemu-system-x86_64"
