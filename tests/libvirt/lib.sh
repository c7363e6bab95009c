# SPDX-License-Identifier: MIT
#
# What the libvirt tests share (sourced after setting ME, the test's name):
# the skips, a scratch DIR kept on failure, and the two hosts' commands.
# Skips (77) only without root, /dev/kvm, mount namespaces or libvirt/QEMU.

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SRCDIR=${SRCDIR:-$(cd "$here/../.." && pwd)}
hosts=$SRCDIR/tests/libvirt/hosts.sh

skip() {
	echo "$ME: skipped: $*" >&2
	exit 77
}

[ "$(id -u)" = 0 ] || skip "needs root (two root libvirtd)"
[ -c /dev/kvm ] || skip "no /dev/kvm"
for tool in unshare nsenter virsh qemu-system-x86_64 python3; do
	command -v "$tool" >/dev/null || skip "no $tool"
done
[ -x /usr/sbin/libvirtd ] || skip "no /usr/sbin/libvirtd (libvirt-daemon-system)"
unshare --mount --propagation private true 2>/dev/null || skip "cannot make a mount namespace"
[ -n "${MIGRATECTL:-}" ] && [ -x "$MIGRATECTL" ] || { echo "$ME: set MIGRATECTL" >&2; exit 1; }
export MIGRATECTL

DIR=$(mktemp -d "/tmp/migratectl-$ME-XXXXXX")
failed=1
cleanup() {
	"$hosts" stop "$DIR" >/dev/null 2>&1 || "$hosts" stop "$DIR"
	if [ "$failed" = 0 ]; then
		rm -rf "$DIR"
	else
		echo "$ME: logs, journals and consoles kept in $DIR" >&2
	fi
}
trap cleanup EXIT
trap 'exit 1' INT TERM

fail() {
	echo "$ME: FAIL: $*" >&2
	exit 1
}

# hosts.sh CMD DIR ARGS...: its output, and its status
h() {
	local cmd=$1
	shift
	"$hosts" "$cmd" "$DIR" "$@" 2>&1
}

vsh() {
	local x=$1
	shift
	timeout 60 virsh -q -c "$("$hosts" uri "$DIR" "$x")" "$@"
}

. "$here/poll.sh"
