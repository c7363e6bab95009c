#!/bin/bash
# SPDX-License-Identifier: MIT
#
# contrib/systemd's units: systemd-analyze verify finds no error and no
# warning (an unknown or misspelt key is one), with ExecStart= pointed at
# this build and the man page from the tree; and the service's default
# --listen is the .socket unit's ListenStream=, as the agent requires of
# the socket it is passed.  Skips (77) without systemd-analyze.
#
# env: MIGRATECTL (the binary), SRCDIR (the source tree).
set -u
mig=${MIGRATECTL:?MIGRATECTL is the migratectl binary}
src=${SRCDIR:?SRCDIR is the source tree}
units=$src/contrib/systemd
fail=0

dir=$(mktemp -d /tmp/migratectl-units.XXXXXX)
trap 'rm -rf "$dir"' EXIT

# The default listen address, the socket, and the default file agree.
listen=$(sed -n 's/^Environment=MIGRATECTL_AGENT_LISTEN=//p' "$units/migratectl-agent.service")
stream=$(sed -n 's/^ListenStream=//p' "$units/migratectl-agent.socket")
if [ -z "$listen" ] || [ "unix://$stream" != "$listen" ]; then
	echo "FAIL: the service listens on '$listen' but the socket unit on '$stream'"
	fail=1
fi
grep -qxF "#MIGRATECTL_AGENT_LISTEN=$listen" "$units/migratectl-agent.default" || {
	echo "FAIL: migratectl-agent.default does not show the default $listen"; fail=1; }
opts=$(sed -n 's/^Environment="MIGRATECTL_AGENT_OPTS=\(.*\)"$/\1/p' "$units/migratectl-agent.service")
grep -qxF "#MIGRATECTL_AGENT_OPTS=\"$opts\"" "$units/migratectl-agent.default" || {
	echo "FAIL: migratectl-agent.default does not show the default options '$opts'"; fail=1; }

if ! command -v systemd-analyze >/dev/null; then
	echo "systemd-analyze is missing (Debian's systemd package): the units are not verified"
	[ "$fail" -eq 0 ] && exit 77
	exit 1
fi
mkdir -p "$dir/man/man1"
ln -s "$src/docs/man/migratectl.1" "$dir/man/man1/migratectl.1"
for u in migratectl-agent.service migratectl-agent.socket; do
	sed "s|/usr/bin/migratectl|$mig|g" "$units/$u" >"$dir/$u"
done
out=$(MANPATH=$dir/man systemd-analyze verify "$dir/migratectl-agent.socket" \
	"$dir/migratectl-agent.service" 2>&1)
rc=$?
if [ "$rc" -ne 0 ] || [ -n "$out" ]; then
	echo "FAIL: systemd-analyze verify: exit $rc:"
	echo "$out" | sed 's/^/    /'
	fail=1
else
	echo "ok: systemd-analyze verify: no error, no warning"
fi
exit "$fail"
