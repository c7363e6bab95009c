#!/bin/bash
# SPDX-License-Identifier: MIT
#
# ssh:// endpoints (client/ssh.c) against a real sshd: the test starts its
# own sshd on a loopback port, with a throwaway host key, a throwaway user
# key in its authorized_keys and its own config, PID file and log in a
# temporary directory, and stops it at the end.  Cases:
#   - an unknown host key refused, its fingerprint in the message, and the
#     ssh-keyscan command the message gives letting it in;
#   - a changed host key refused, likewise;
#   - a user key the server does not take refused, by file and by ssh-agent;
#   - the known key type asked for, hashed known_hosts, login by ssh-agent;
#   - a lab VM migrated ssh:// -> ssh:// to agents on unix sockets, verified,
#     directly and with --tunnel (sshd's log shows the forwarded channels);
#   - the same where no agent listens: each is started over an exec channel
#     for the command, and nothing of them is left after it.
#
# Needs MIGRATECTL (the binary under test).  Exit 77 (skip) only when sshd
# or ssh-keygen is missing and cannot be installed; the migrations need
# /dev/kvm (without it the refusals still run, then the test skips).
set -eu

M=${MIGRATECTL:?set MIGRATECTL to the migratectl binary}
STEP_S=120      # any one command
ok=0

skip() {
	echo "SKIP: $*" >&2
	exit 77
}
fail() {
	echo "FAIL: $*" >&2
	exit 1
}

sshd=/usr/sbin/sshd
if [ ! -x "$sshd" ] || ! command -v ssh-keygen >/dev/null; then
	if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
			openssh-server openssh-client >/dev/null 2>&1 || true
	fi
	[ -x "$sshd" ] && command -v ssh-keygen >/dev/null ||
		skip "no sshd or ssh-keygen (install openssh-server, see contrib/build.sh)"
fi

unset SSH_AUTH_SOCK     # logins are the test's own: by --ssh-key, or its ssh-agent
dir=$(mktemp -d /tmp/migratectl-sshtest-XXXXXX)
user=$(id -un)
pids=()
sshd_pid=
agent_pid=

cleanup() {
	local rc=$? pid
	for pid in "${pids[@]}" $sshd_pid $agent_pid; do
		kill "$pid" 2>/dev/null || true
	done
	for pid in "${pids[@]}" $sshd_pid $agent_pid; do
		wait "$pid" 2>/dev/null || true
	done
	if [ "$rc" = 0 ] || [ "$rc" = 77 ]; then
		rm -rf "$dir"
	else
		echo "test-ssh.sh: logs kept in $dir" >&2
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

# Waits up to $2 seconds (polling) for the command $1 to succeed.
wait_for() {
	local i
	for ((i = 0; i < $2 * 10; i++)); do
		eval "$1" && return 0
		sleep 0.1
	done
	return 1
}

ssh-keygen -q -t ed25519 -N '' -C test-host -f "$dir/host_key"
ssh-keygen -q -t ecdsa -N '' -C test-host -f "$dir/host_key_ecdsa"
ssh-keygen -q -t ed25519 -N '' -C test-other-host -f "$dir/other_host_key"
ssh-keygen -q -t ed25519 -N '' -C test-user -f "$dir/user_key"
ssh-keygen -q -t ed25519 -N '' -C test-stranger -f "$dir/stranger_key"
cp "$dir/user_key.pub" "$dir/authorized_keys"
fp=$(ssh-keygen -lf "$dir/host_key.pub" | awk '{ print $2 }')
fp_ecdsa=$(ssh-keygen -lf "$dir/host_key_ecdsa.pub" | awk '{ print $2 }')

# sshd's privilege separation directory, as Debian's ssh.service makes it.
[ "$(id -u)" != 0 ] || [ -d /run/sshd ] || mkdir -p -m 0755 /run/sshd

# A free loopback port: sshd says it listens, or it is tried again on another.
for attempt in 1 2 3 4 5; do
	port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
	cat > "$dir/sshd_config" <<-EOF
	Port $port
	ListenAddress 127.0.0.1
	HostKey $dir/host_key
	HostKey $dir/host_key_ecdsa
	PidFile $dir/sshd.pid
	AuthorizedKeysFile $dir/authorized_keys
	PermitRootLogin prohibit-password
	StrictModes no
	UsePAM no
	PasswordAuthentication no
	KbdInteractiveAuthentication no
	AllowStreamLocalForwarding yes
	AllowTcpForwarding yes
	LogLevel DEBUG1
	EOF
	: > "$dir/sshd.log"
	"$sshd" -D -e -f "$dir/sshd_config" -E "$dir/sshd.log" &
	sshd_pid=$!
	if wait_for "grep -q 'Server listening' '$dir/sshd.log'" 10; then
		break
	fi
	kill "$sshd_pid" 2>/dev/null || true
	wait "$sshd_pid" 2>/dev/null || true
	sshd_pid=
done
[ -n "$sshd_pid" ] || fail "sshd did not start (log: $dir/sshd.log)"

echo "[127.0.0.1]:$port $(cut -d' ' -f1,2 "$dir/host_key.pub")" > "$dir/known_hosts"
: > "$dir/empty_known_hosts"
echo "[127.0.0.1]:$port $(cut -d' ' -f1,2 "$dir/other_host_key.pub")" > "$dir/changed_known_hosts"
host=ssh://$user@127.0.0.1:$port

# migratectl with the test's key and known_hosts, bounded; its stdout and
# stderr in $dir/out and $dir/err, its status in $rc.
mctl() {
	rc=0
	timeout "$STEP_S" "$M" "$@" > "$dir/out" 2> "$dir/err" || rc=$?
}
expect_refused() {   # WHAT PATTERN...
	local what=$1 p
	shift
	[ "$rc" != 0 ] || fail "$what: accepted (exit 0)"
	[ "$rc" != 124 ] || fail "$what: no answer within $STEP_S s"
	for p in "$@"; do
		grep -qF -- "$p" "$dir/err" || fail "$what: no \"$p\" in: $(cat "$dir/err")"
	done
	echo "ok: $what (exit $rc): $(head -c 300 "$dir/err")"
	ok=$((ok + 1))
}

start_agent() {   # NAME
	"$M" agent --listen "unix://$dir/$1.sock" > "$dir/$1.log" 2>&1 &
	pids+=($!)
	wait_for "[ -S '$dir/$1.sock' ]" 20 || fail "agent $1 did not listen (log: $dir/$1.log)"
}
start_agent a

# ---- refusals: nothing is accepted silently ----

mctl migrations "$host$dir/a.sock" --ssh-key "$dir/user_key" \
	--known-hosts "$dir/empty_known_hosts"
expect_refused "unknown host key" "is not known" "ssh-keyscan -p $port" \
	"$dir/empty_known_hosts"
# the fingerprint of the key the host offered (either of its two)
grep -qF -e "$fp" -e "$fp_ecdsa" "$dir/err" || fail "no host key fingerprint in: $(cat "$dir/err")"
# what the message says to do, once the fingerprint is checked, lets it in
add=$(sed -n 's/.*add the key: `\(ssh-keyscan [^`]*\)`.*/\1/p' "$dir/err")
[ -n "$add" ] || fail "no ssh-keyscan command in: $(cat "$dir/err")"
eval "$add" 2>/dev/null
mctl migrations "$host$dir/a.sock" --ssh-key "$dir/user_key" \
	--known-hosts "$dir/empty_known_hosts"
[ "$rc" = 0 ] || fail "after \`$add\`: exit $rc: $(cat "$dir/err")"
echo "ok: the key added as the message says is accepted"
ok=$((ok + 1))

mctl migrations "$host$dir/a.sock" --ssh-key "$dir/user_key" \
	--known-hosts "$dir/changed_known_hosts"
expect_refused "changed host key" "CHANGED" "$fp" "ssh-keygen -R '[127.0.0.1]:$port'"

mctl migrations "$host$dir/a.sock" --ssh-key "$dir/stranger_key" \
	--known-hosts "$dir/known_hosts"
expect_refused "wrong user key" "refused the key $dir/stranger_key" \
	"publickey authentication failed"

mctl migrations "$host$dir/a.sock" --ssh-key "$dir/no-such-key" \
	--known-hosts "$dir/known_hosts"
[ "$rc" = 2 ] || fail "a missing --ssh-key: exit $rc, expected 2 (usage)"
expect_refused "missing --ssh-key file" "--ssh-key $dir/no-such-key"

# and the right key and host key pass.  known_hosts lists only the host's
# Ed25519 key, and libssh2 would rather have its ECDSA one: the type known
# is the one asked for.
mctl migrations "$host$dir/a.sock" --ssh-key "$dir/user_key" --known-hosts "$dir/known_hosts"
[ "$rc" = 0 ] || fail "migrations over ssh: exit $rc: $(cat "$dir/err")"
grep -q '^ID ' "$dir/out" || fail "migrations over ssh printed no table: $(cat "$dir/out")"
echo "ok: migrations over ssh with the right keys"
ok=$((ok + 1))

# known_hosts with hashed host names (ssh-keygen -H), as HashKnownHosts writes them
cp "$dir/known_hosts" "$dir/hashed_known_hosts"
ssh-keygen -q -H -f "$dir/hashed_known_hosts" 2>/dev/null
grep -q '^|1|' "$dir/hashed_known_hosts" || fail "ssh-keygen -H hashed nothing"
mctl migrations "$host$dir/a.sock" --ssh-key "$dir/user_key" \
	--known-hosts "$dir/hashed_known_hosts"
[ "$rc" = 0 ] || fail "hashed known_hosts: exit $rc: $(cat "$dir/err")"
echo "ok: a hashed known_hosts entry"
ok=$((ok + 1))

# ssh-agent: no --ssh-key, and a HOME without keys, so only the agent's
# keys can log in: the user's key lets it in, a stranger's alone does not.
ssh-agent -D -a "$dir/ssh-agent.sock" > /dev/null &
agent_pid=$!
wait_for "[ -S '$dir/ssh-agent.sock' ]" 10 || fail "ssh-agent did not start"
mkdir -p "$dir/home"
export SSH_AUTH_SOCK=$dir/ssh-agent.sock
ssh-add -q "$dir/stranger_key" 2>/dev/null
HOME=$dir/home mctl migrations "$host$dir/a.sock" --known-hosts "$dir/known_hosts"
expect_refused "ssh-agent without the user's key" "the keys of ssh-agent" \
	"publickey authentication failed"
ssh-add -q "$dir/user_key" 2>/dev/null
HOME=$dir/home mctl migrations "$host$dir/a.sock" --known-hosts "$dir/known_hosts"
[ "$rc" = 0 ] || fail "login by ssh-agent: exit $rc: $(cat "$dir/err")"
echo "ok: login by ssh-agent"
ok=$((ok + 1))
unset SSH_AUTH_SOCK
kill "$agent_pid"
wait "$agent_pid" 2>/dev/null || true
agent_pid=

if ! [ -c /dev/kvm ] || ! [ -w /dev/kvm ]; then
	echo "test-ssh.sh: $ok refusal cases passed" >&2
	skip "no usable /dev/kvm for the migrations over ssh"
fi

# ---- migrations ----

# Completed, and the destination's memory verified equal to the source's.
check_migrated() {   # WHAT
	[ "$rc" = 0 ] || fail "$1: exit $rc: $(tail -5 "$dir/err")"
	python3 - "$dir/out" "$1" <<-'EOF' || fail "$1: $(cat "$dir/out")"
	import json, sys
	d = json.load(open(sys.argv[1]))
	assert d["result"] == "completed", d["result"]
	assert d["owner"] == "destination", d["owner"]
	v = d.get("verify")
	assert v and v["match"] and v["digest_src"] == v["digest_dst"], v
	print("ok: %s: completed, digests %s" % (sys.argv[2], v["digest_dst"]))
	EOF
	ok=$((ok + 1))
}

lab=mem=64M,vcpus=1,wss=4M
start_agent b
mctl start "$host$dir/a.sock" "$host$dir/b.sock" --lab "$lab" --verify --json \
	--ssh-key "$dir/user_key" --known-hosts "$dir/known_hosts"
check_migrated "ssh -> ssh to agents on unix sockets"
# the VM now runs on b, reached over ssh, and no longer on a
name=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["vm"])' "$dir/out" \
	2>/dev/null || true)
mctl vm list "$host$dir/b.sock" --ssh-key "$dir/user_key" --known-hosts "$dir/known_hosts"
[ "$rc" = 0 ] || fail "vm list over ssh: exit $rc: $(cat "$dir/err")"
[ -z "$name" ] || grep -q "$name" "$dir/out" || fail "VM $name is not on b: $(cat "$dir/out")"

# --tunnel: the streams through the two ssh connections.  sshd's log
# shows the port it forwarded for the source agent, and a channel to the
# destination agent's port for each stream.
opens_before=$(grep -c 'ctype direct-tcpip' "$dir/sshd.log" || true)
mctl start "$host$dir/a.sock" "$host$dir/b.sock" --lab "$lab" --verify --json --tunnel \
	--streams 3 --ssh-key "$dir/user_key" --known-hosts "$dir/known_hosts"
check_migrated "ssh -> ssh --tunnel"
grep -q 'tcpip-forward' "$dir/sshd.log" || fail "--tunnel: sshd forwarded no port"
opens=$(( $(grep -c 'ctype direct-tcpip' "$dir/sshd.log") - opens_before ))
[ "$opens" -ge 3 ] || fail "--tunnel: $opens channels to the destination, expected a stream's each"
echo "ok: --tunnel: sshd forwarded a port and carried $opens connections to the destination"
ok=$((ok + 1))

# The ssh connections drop mid-migration (their sshd processes killed):
# start neither hangs nor guesses.  The agents go on between themselves;
# start watches the source again over a new ssh connection until it no
# longer runs the migration, then says the outcome is unknown (exit 3).
mctl_bg() {
	rc=0
	: > "$dir/err"     # now, not when the background job gets to it
	timeout "$STEP_S" "$M" "$@" > "$dir/out" 2> "$dir/err" &
	bg_pid=$!
}
mctl_bg start "$host$dir/a.sock" "$host$dir/b.sock" --lab mem=256M,vcpus=1,wss=8M \
	--max-bandwidth 40M --json --ssh-key "$dir/user_key" --known-hosts "$dir/known_hosts"
wait_for "grep -q 'setup => precopy' '$dir/err'" 60 || fail "the slow migration did not start: $(cat "$dir/err")"
sessions=$(pgrep -P "$sshd_pid" | tr '\n' ' ')
[ -n "$sessions" ] || fail "no sshd session processes to kill"
kill $sessions
wait "$bg_pid" || rc=$?
[ "$rc" = 3 ] || fail "ssh dropped: start exited $rc, expected 3: $(tail -3 "$dir/err")"
grep -q 'lost the source agent' "$dir/err" || fail "ssh dropped: $(tail -3 "$dir/err")"
echo "ok: the ssh connections dropped mid-migration: exit 3, \"$(grep -o 'lost the source agent[^"]*' "$dir/err" | head -1)\""
ok=$((ok + 1))

# No agent at either socket: each is started over an exec channel for the
# command (the remote migratectl is this build's) and stopped after it.
before=$(ls -d /tmp/migratectl-ssh-* 2>/dev/null | sort || true)
mctl start "$host$dir/none-a.sock" "$host$dir/none-b.sock" --lab "$lab" --verify --json \
	--ssh-key "$dir/user_key" --known-hosts "$dir/known_hosts" --remote-migratectl "$M"
check_migrated "ssh -> ssh, agents started over exec"
[ ! -e "$dir/none-a.sock" ] && [ ! -e "$dir/none-b.sock" ] ||
	fail "an agent listens at a socket that was only named"
after=$(ls -d /tmp/migratectl-ssh-* 2>/dev/null | sort || true)
[ "$before" = "$after" ] || fail "directories of started agents are left: $after"
if pgrep -f "$M agent --listen unix:///tmp/migratectl-ssh-" >/dev/null; then
	fail "a started agent still runs: $(pgrep -af "migratectl-ssh-")"
fi
echo "ok: the started agents and their directories are gone"
ok=$((ok + 1))

# A remote migratectl that is not there: a clear error, not a hang.
mctl migrations "$host$dir/none-a.sock" --ssh-key "$dir/user_key" \
	--known-hosts "$dir/known_hosts" --remote-migratectl /nonexistent/migratectl
expect_refused "no migratectl on the host" "no agent listens at $dir/none-a.sock" \
	"--remote-migratectl"

echo "test-ssh.sh: $ok cases passed"
