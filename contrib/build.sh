#!/bin/bash
# SPDX-License-Identifier: MIT
#
# Builds migratectl on a fresh Debian bookworm machine: installs the build
# dependencies (only when one is missing, so re-runs skip apt entirely),
# configures build/ once and compiles.  Safe to run again and from any cwd.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.."

packages=(
	build-essential
	meson
	ninja-build
	pkg-config
	liburing-dev
	libzstd-dev
	uuid-dev
	libxxhash-dev
	libcriterion-dev
	libssl-dev
	# ssh:// endpoints (client/ssh.c), and the sshd their test logs in to
	# (tests/ssh/test-ssh.sh)
	libssh2-1-dev
	openssh-server
	# the chaos runner reads start's JSON (migratectl chaos, docs/chaos.md)
	libjson-c-dev
	# libvirt's qemu hook reads domain XML (migratectl hook, docs/libvirt.md)
	libxml2-dev
	git
	# the real-kernel tests: Debian's kernel under QEMU (tests/realkernel/)
	qemu-system-x86
	qemu-system-arm
	cpio
	busybox-static
	xz-utils
	# the cross builds (contrib/cross-sysroot.sh, tests/cross/): Debian's
	# cross compilers, and qemu-user to run the pure tests of two of them
	gcc-aarch64-linux-gnu
	gcc-s390x-linux-gnu
	gcc-powerpc64le-linux-gnu
	gcc-mips64el-linux-gnuabi64
	qemu-user
	file
	# the fuzz targets (tests/fuzz): clang and its libFuzzer runtime
	clang
	libclang-rt-14-dev
	# the chaos runner's local cluster (chaos/netns.c): namespaces, links
	# and tbf with ip and tc; its link faults DROP and RESET are rules in
	# an agent's namespace, which Debian's iptables (nft backend) makes
	iproute2
	iptables
	# libvirt domains: the agent's driver builds against libvirt's C API
	# and libxml2; the libvirt test (tests/libvirt/) runs two root
	# libvirtd with virsh, each in a mount namespace (unshare and nsenter
	# come with util-linux), and assembles its boot-sector guest with
	# gcc -m32 -c and ld from build-essential (no multilib: no C, no libc);
	# its JSON and XML checks use python3, which meson already pulls in
	libvirt-daemon-system
	libvirt-clients
	libvirt-dev
	# the driver's own test (tests/libvirt/test-lvdriver.sh) relays the
	# migration's unix sockets between the two libvirtds with socat
	socat
	# the Debian package (debian/, tests/package/test-deb.sh): built with
	# dpkg-buildpackage and debhelper, checked with lintian; the units'
	# check (tests/service/test-units.sh) runs systemd-analyze verify
	dpkg-dev
	debhelper
	lintian
	systemd
	# bench/peer-qemu.py: the certificates of QEMU's TLS runs and the
	# AES-256-GCM limit (openssl speed)
	openssl
)

missing=()
for pkg in "${packages[@]}"; do
	status=$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)
	[ "$status" = installed ] || missing+=("$pkg")
done

if [ "${#missing[@]}" -gt 0 ]; then
	sudo=()
	if [ "$(id -u)" -ne 0 ]; then
		if ! command -v sudo >/dev/null 2>&1; then
			echo "build.sh: missing packages: ${missing[*]}" >&2
			echo "build.sh: run this script as root (or install sudo) so it can install them" >&2
			exit 1
		fi
		sudo=(sudo env DEBIAN_FRONTEND=noninteractive)
	fi
	echo "build.sh: installing ${missing[*]}" >&2
	"${sudo[@]}" apt-get update
	"${sudo[@]}" apt-get install -y --no-install-recommends "${packages[@]}"
fi

# Configure once; an existing build/ keeps its options (meson reconfigures
# itself when meson.build changes).
if [ ! -f build/meson-private/coredata.dat ]; then
	meson setup build
fi
meson compile -C build
