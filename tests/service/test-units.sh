#!/bin/bash
# SPDX-License-Identifier: MIT
#
# contrib/systemd's units: systemd-analyze verify finds no error and no
# warning (an unknown or misspelt key is one), with ExecStart= pointed at
# this build and the man page from the tree; and the service's default
# --listen is the .socket unit's ListenStream=, as the agent requires of
# the socket it is passed; and the service's ExecStart= with its default
# options serves a socket passed to it.  Skips (77) without systemd-analyze
# (after the other checks).
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

# The service's ExecStart= with its default options, run as its socket
# would start it (tests/service/listen-fds.py), the paths under a scratch
# directory: ${MIGRATECTL_AGENT_LISTEN} is one word, $MIGRATECTL_AGENT_OPTS
# is split at spaces, as systemd expands them.  The agent must serve its
# socket and create its journal in the state directory.
exec_start=$(sed -n 's/^ExecStart=//p' "$units/migratectl-agent.service")
state=$dir/state; mkdir -p "$state"
ep="unix://$dir/agent.sock"
argv=()
for w in $exec_start; do
	case $w in
	'${MIGRATECTL_AGENT_LISTEN}') argv+=("$ep") ;;
	'$MIGRATECTL_AGENT_OPTS') for o in ${opts//\/var\/lib\/migratectl/$state}; do argv+=("$o"); done ;;
	/usr/bin/migratectl) argv+=("$mig") ;;
	*) argv+=("$w") ;;
	esac
done
python3 "$src/tests/service/listen-fds.py" --unix "$dir/agent.sock" -- "${argv[@]}" \
	>"$dir/agent.log" 2>&1 &
agent=$!
served=no
for _ in $(seq 300); do
	"$mig" vm list "$ep" >/dev/null 2>&1 && { served=yes; break; }
	kill -0 "$agent" 2>/dev/null || break
	sleep 0.1
done
if [ "$served" = yes ] && grep -q "serving the socket its service manager passed" "$dir/agent.log"
then
	echo "ok: the service's ExecStart= with its defaults serves the socket it is passed"
else
	echo "FAIL: the service's ExecStart= (${argv[*]}) does not serve its socket:"
	sed 's/^/    /' "$dir/agent.log"; fail=1
fi
journal=$(grep -o -- '--journal [^ ]*' <<<"$opts" | cut -d' ' -f2)
if [ -n "$journal" ] && [ ! -f "${journal/\/var\/lib\/migratectl/$state}" ]; then
	echo "FAIL: the agent did not create its journal $journal in the state directory"; fail=1
fi
kill "$agent" 2>/dev/null; wait "$agent" 2>/dev/null

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
