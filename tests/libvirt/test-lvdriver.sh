#!/bin/bash
# SPDX-License-Identifier: MIT
#
# The libvirt driver's test (tests/test-lvdriver.c) on two libvirt "hosts"
# of this machine (hosts.sh: A and B, each libvirtd in a mount namespace
# of its own), with a socat relay per migration socket standing in for the
# agents' tunnel: A's libvirtd and QEMU connect to RUN/libvirt.sock and
# RUN/qemu.sock, which A sees as DIR/A/mig; each relay carries a
# connection to B's libvirtd socket and to the socket B's QEMU listens on
# (DIR/B/mig/qemu.sock, the same RUN path in B's namespace).
#
# usage: test-lvdriver.sh TEST-BINARY [CRITERION-ARGS...]
# Exit 77 (skip) only when the machine lacks what it needs: root,
# /dev/kvm, mount namespaces, libvirtd.
set -eu

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
hosts=$here/hosts.sh

skip() {
	echo "SKIP: $*" >&2
	exit 77
}

[ $# -ge 1 ] || { echo "usage: $0 TEST-BINARY [ARGS...]" >&2; exit 2; }
[ "$(id -u)" = 0 ] || skip "needs root (two root libvirtd)"
[ -c /dev/kvm ] && [ -w /dev/kvm ] || skip "no usable /dev/kvm"
command -v unshare >/dev/null && unshare --mount --propagation private true 2>/dev/null ||
	skip "no mount namespaces (unshare --mount)"
[ -x /usr/sbin/libvirtd ] || skip "no libvirtd (install libvirt-daemon-system)"
# Not a skip: a build dependency (contrib/build.sh) that should be there.
command -v socat >/dev/null || { echo "test-lvdriver.sh: socat is missing (contrib/build.sh)" >&2; exit 1; }

dir=$(mktemp -d /tmp/migratectl-lvdriver-XXXXXX)
relays=()

cleanup() {
	local rc=$? pid
	for pid in "${relays[@]}"; do
		kill "$pid" 2>/dev/null || true
	done
	"$hosts" stop "$dir" >&2 || true
	if [ "$rc" = 0 ]; then
		rm -rf "$dir"
	else
		echo "test-lvdriver.sh: logs kept in $dir" >&2
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

"$hosts" setup "$dir" >&2
"$hosts" start-libvirtd "$dir" A >&2
"$hosts" start-libvirtd "$dir" B >&2

relay() {
	socat "UNIX-LISTEN:$1,fork" "UNIX-CONNECT:$2" 2>>"$dir/relay.log" &
	relays+=($!)
}
relay "$dir/A/mig/libvirt.sock" "$dir/B/sock/libvirt-sock"
relay "$dir/A/mig/qemu.sock" "$dir/B/mig/qemu.sock"
for ((i = 0; i < 100; i++)); do
	[ -S "$dir/A/mig/libvirt.sock" ] && [ -S "$dir/A/mig/qemu.sock" ] && break
	sleep 0.1
done
[ -S "$dir/A/mig/libvirt.sock" ] && [ -S "$dir/A/mig/qemu.sock" ] ||
	{ echo "test-lvdriver.sh: the relays did not listen (log: $dir/relay.log)" >&2; exit 1; }

export LVD_HOSTS=$hosts LVD_DIR=$dir LVD_RUN=$dir/run
LVD_URI_A=$("$hosts" uri "$dir" A)
LVD_URI_B=$("$hosts" uri "$dir" B)
export LVD_URI_A LVD_URI_B
"$@"
