#!/bin/bash
# SPDX-License-Identifier: MIT
#
# The agent under socket activation, without systemd: listen-fds.py binds
# the socket and execs `migratectl agent` with it at fd 3, LISTEN_FDS=1 and
# LISTEN_PID its pid, as systemd does.  Then real clients migrate through
# it: a lab VM from such a unix agent to `local`, and from `local` to such
# a tcp agent (with its key).  And what systemd's contract refuses or
# ignores: another process's LISTEN_PID is ignored (the agent binds
# --listen itself); a socket that is not listening, not a socket, of the
# other kind or at another path or port, or more than one, is refused
# (exit 2) with what is wrong.
#
# env: MIGRATECTL (the binary), SRCDIR (the source tree).
set -u

mig=${MIGRATECTL:?MIGRATECTL is the migratectl binary}
helper=${SRCDIR:?SRCDIR is the source tree}/tests/service/listen-fds.py
dir=$(mktemp -d /tmp/migratectl-sockact.XXXXXX)
pids=()
fail=0
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
	rm -rf "$dir"
}
trap cleanup EXIT

bad() { echo "FAIL: $*"; fail=1; }
ok() { echo "ok: $*"; }

# An agent started through the helper in the background; its pid in $agent.
start_agent() { # LOG HELPER-ARGS... -- AGENT-ARGS...
	local log=$1; shift
	python3 "$helper" "$@" >"$log" 2>&1 &
	agent=$!
	pids+=("$agent")
}

# Until ENDPOINT answers `vm list` (up to 30 s) or the agent is gone.
wait_agent() { # ENDPOINT PID [KEY-ARGS...]
	local ep=$1 pid=$2; shift 2
	for _ in $(seq 300); do
		"$mig" vm list "$ep" "$@" >/dev/null 2>&1 && return 0
		kill -0 "$pid" 2>/dev/null || return 1
		sleep 0.1
	done
	return 1
}

# A refusal: the agent exits 2 within 30 s, its stderr matching PATTERN.
refused() { # WHAT PATTERN HELPER-ARGS... -- AGENT-ARGS...
	local what=$1 pat=$2 rc; shift 2
	timeout 30 python3 "$helper" "$@" >"$dir/refused.log" 2>&1
	rc=$?
	if [ "$rc" -eq 2 ] && grep -q -- "$pat" "$dir/refused.log"; then
		ok "$what: exit 2, $(grep -m1 -- "$pat" "$dir/refused.log")"
	else
		bad "$what: exit $rc (want 2 and /$pat/):"; sed 's/^/    /' "$dir/refused.log"
	fi
}

head -c 32 /dev/urandom >"$dir/key"; chmod 600 "$dir/key"
A=(agent --quiet)

# --- refusals and the ignored variables (no /dev/kvm needed) ---
refused "a connected socket at fd 3" "not a listening socket" \
	--unix "$dir/r1.sock" --fd connected -- "$mig" "${A[@]}" --listen "unix://$dir/r1.sock"
refused "a regular file at fd 3" "is not a socket" \
	--unix "$dir/r2.sock" --fd file -- "$mig" "${A[@]}" --listen "unix://$dir/r2.sock"
refused "a tcp socket for a unix --listen" "is a tcp socket but --listen is unix" \
	--tcp 0 -- "$mig" "${A[@]}" --listen "unix://$dir/r3.sock"
refused "a unix socket for a tcp --listen" "is a unix socket but --listen is tcp" \
	--unix "$dir/r4.sock" -- "$mig" "${A[@]}" --listen tcp://127.0.0.1:1 --key-file "$dir/key"
refused "a unix socket at another path" "make ListenStream= and --listen name the same path" \
	--unix "$dir/r5.sock" -- "$mig" "${A[@]}" --listen "unix://$dir/other.sock"
refused "a tcp socket on another port" "name the same port" \
	--tcp 0 -- "$mig" "${A[@]}" --listen tcp://127.0.0.1:1 --key-file "$dir/key"
refused "a tcp socket without a key" "a tcp agent needs --key-file" \
	--tcp 0 -- "$mig" "${A[@]}" --listen tcp://127.0.0.1:@PORT@
refused "two sockets (LISTEN_FDS=2)" "serves exactly one socket" \
	--unix "$dir/r6.sock" --fds 2 -- "$mig" "${A[@]}" --listen "unix://$dir/r6.sock"
[ -e "$dir/other.sock" ] && bad "a refused inherited socket: the agent bound --listen itself"

# Another process's LISTEN_PID: ignored, so the agent binds --listen itself
# and serves there, and never the passed socket.
start_agent "$dir/other-pid.log" --unix "$dir/passed.sock" --pid other -- \
	"$mig" agent --listen "unix://$dir/own.sock"
if wait_agent "unix://$dir/own.sock" "$agent"; then
	ok "LISTEN_PID of another process: ignored, the agent serves its own --listen"
else
	bad "LISTEN_PID of another process: the agent does not serve --listen:"
	sed 's/^/    /' "$dir/other-pid.log"
fi
grep -q "serving the socket its service manager passed" "$dir/other-pid.log" &&
	bad "LISTEN_PID of another process: the agent took the passed socket"
timeout 5 "$mig" vm list "unix://$dir/passed.sock" >/dev/null 2>&1 &&
	bad "LISTEN_PID of another process: the passed socket is served"
kill "$agent"; wait "$agent" 2>/dev/null

# --- socket-activated agents that migrate ---
start_agent "$dir/unix-agent.log" --unix "$dir/u.sock" -- \
	"$mig" agent --listen "unix://$dir/u.sock"
uagent=$agent
start_agent "$dir/tcp-agent.log" --tcp 0 --port-file "$dir/port" -- \
	"$mig" agent --listen tcp://127.0.0.1:@PORT@ --key-file "$dir/key"
tagent=$agent
for _ in $(seq 300); do [ -s "$dir/port" ] && break; sleep 0.1; done
port=$(cat "$dir/port" 2>/dev/null)

if wait_agent "unix://$dir/u.sock" "$uagent"; then
	ok "a socket-activated unix agent answers"
else
	bad "the socket-activated unix agent does not answer:"; sed 's/^/    /' "$dir/unix-agent.log"
fi
if [ -n "$port" ] && wait_agent "tcp://127.0.0.1:$port" "$tagent" --key-file "$dir/key"; then
	ok "a socket-activated tcp agent answers on port $port"
else
	bad "the socket-activated tcp agent does not answer:"; sed 's/^/    /' "$dir/tcp-agent.log"
fi
grep -q 'serving the socket its service manager passed (fd 3, "migratectl-agent.socket")' \
	"$dir/unix-agent.log" || bad "the unix agent does not say it serves the passed socket"
# It served the passed socket: still fd 3, and it never bound the path anew.
[ "$(readlink "/proc/$uagent/fd/3" 2>/dev/null)" != "" ] || bad "the unix agent closed fd 3"

# The tcp agent without its key: refused, as for an agent that bound itself.
if [ -n "$port" ]; then
	out=$(timeout 30 "$mig" vm list "tcp://127.0.0.1:$port" 2>&1); rc=$?
	[ "$rc" -ne 0 ] && ok "the socket-activated tcp agent refuses a client without the key (exit $rc)" ||
		bad "the socket-activated tcp agent served a client without the key: $out"
fi

if [ ! -c /dev/kvm ]; then
	echo "the checks above passed or failed; the migrations need /dev/kvm, which this host lacks"
	[ "$fail" -eq 0 ] && exit 77
	exit 1
fi

lab=(--lab mem=64M,vcpus=1,wss=8M --downtime-limit 1s --json)
migrate() { # WHAT SRC DST [ARGS...]
	local what=$1 src=$2 dst=$3; shift 3
	timeout 300 "$mig" start "$src" "$dst" "${lab[@]}" "$@" >"$dir/start.json" 2>"$dir/start.err"
	local rc=$?
	if [ "$rc" -eq 0 ] && python3 -c '
import json, sys
j = json.load(open(sys.argv[1]))
assert j["result"] == "completed" and j["owner"] == "destination", j
assert j["verify"]["match"] is True, j["verify"]' "$dir/start.json"; then
		ok "$what: completed, owned by the destination, RAM digests match"
	else
		bad "$what: exit $rc:"; sed 's/^/    /' "$dir/start.err" "$dir/start.json"
	fi
}
migrate "unix agent (socket-activated) -> local" "unix://$dir/u.sock" local
[ -n "$port" ] && migrate "local -> tcp agent (socket-activated)" local "tcp://127.0.0.1:$port" \
	--key-file "$dir/key"

for p in "$uagent" "$tagent"; do
	kill -0 "$p" 2>/dev/null || bad "agent $p died during the test"
done
[ "$fail" -eq 0 ] && echo "all socket-activation checks passed"
exit "$fail"
