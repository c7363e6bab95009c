#!/bin/bash
# SPDX-License-Identifier: MIT
#
# End to end: migratectl carries libvirt's own live migrations between two
# libvirt hosts on this machine (hosts.sh, docs/libvirt.md), with the
# migratectl hook on both.  The guest (guest.S) keeps a pattern in its RAM
# and prints "pass N" on its console; a migration passes when the console,
# read in the order the guest wrote it across the hosts, counts on without
# a gap and without a BAD line.
#
#  a. A -> B and back, with 1 and with 4 streams, and with 4 and the
#     tunnel's channels sealed (--encrypt always);
#  b. the hook refusing: a CPU feature B's KVM lacks (--host-profile
#     cpuid-off), through migratectl and through plain virsh migrate; a
#     disk missing on B; and the hook's rewrite of the console path;
#  c. the destination agent killed mid-stream: the guest stays on A; the
#     source agent killed and started again: start waits for it, exit 1;
#  d. four streams, three migrations in a row; B's agent killed and
#     started again: its journal keeps its predecessor's records and adds
#     the stop of the domain destroyed in between;
#  e. cancelled, by migratectl cancel and by Ctrl-C on start: libvirt's
#     job is aborted and the guest stays on A;
#  f. a writable disk: refused by libvirt without --copy-storage, copied
#     with it (its NBD connection through the tunnel), the bytes equal;
#  g. a busy guest that does not converge by itself: --converge none fails
#     at its timeout (the guest stays on A), auto completes with libvirt's
#     throttle on, postcopy completes after the switch; a post-copy broken
#     by the destination's agent's death exits 3, the source not resumed.
#
# env: MIGRATECTL (the binary), SRCDIR (the source tree; default: from here)
# Skips (77) only without root, /dev/kvm, mount namespaces or libvirt/QEMU.
# The directory stays for post-mortem when a case fails.
set -uo pipefail

ME=test-libvirt
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

say() {
	echo "== $*"
}

# running, paused, shut off... or "absent"
state() {
	vsh "$1" domstate "$2" 2>/dev/null || echo absent
}

is_state() {
	[ "$(state "$1" "$2")" = "$3" ]
}

# The migration of domain $1 has moved a MiB or more (A is the source).
moving() {
	local p
	p=$(vsh A domjobinfo "$1" 2>/dev/null | awk '/^Memory processed:/ {print $3 $4}')
	case $p in *MiB|*GiB) return 0 ;; esac
	return 1
}

# Waits (120 s at most) for the start in the background, pid $1, to end
# after $2; its exit code in $rc.
start_ends() {
	local i
	for ((i = 0; i < 600; i++)); do
		kill -0 "$1" 2>/dev/null || break
		sleep 0.2
	done
	kill -0 "$1" 2>/dev/null && { kill -9 "$1"; fail "start did not end within 120 s of $2"; }
	wait "$1"
	rc=$?
}

# The console path domain $2 writes to on host $1 (its live XML).
console_path() {
	vsh "$1" dumpxml "$2" | python3 -c '
import sys, xml.etree.ElementTree as ET
s = ET.parse(sys.stdin).find("./devices/serial/source")
print(s.get("path") if s is not None else "")'
}

# The guest's console as it wrote it: each host writes its own file (or
# the same one when the path did not change); a stream file takes, in
# order, what each file gained since it was last read.
declare -A offset
follow() {
	local name=$1 path=$2 size off
	[ -f "$path" ] || return 0
	size=$(stat -c %s "$path")
	off=${offset[$path]:-0}
	if [ "$size" -gt "$off" ]; then
		tail -c +$((off + 1)) "$path" | head -c $((size - off)) >>"$DIR/$name.stream"
		offset[$path]=$size
	fi
}

# Checks the stream: every complete line "pass N" counts on by one from the
# one before, no BAD line; prints the last N (0: none yet).
check_stream() {
	python3 - "$DIR/$1.stream" <<-'EOF'
	import re, sys
	try:
	    text = open(sys.argv[1], errors="replace").read()
	except FileNotFoundError:
	    text = ""
	lines = text.split("\n")[:-1]          # the last one may be half written
	passes = []
	for i, line in enumerate(lines):
	    if "BAD" in line:
	        sys.exit(f"the guest found its memory changed: line {i + 1}: {line!r}")
	    m = re.fullmatch(r"pass ([0-9a-f]{8})", line)
	    if m:
	        n = int(m.group(1), 16)
	        if passes and n != passes[-1] + 1:
	            sys.exit(f"line {i + 1}: pass {n:#x} after pass {passes[-1]:#x}: the count broke")
	        passes.append(n)
	    elif line not in ("boot", ""):
	        sys.exit(f"line {i + 1}: unexpected console output {line!r}")
	print(passes[-1] if passes else 0)
	EOF
}

# Waits until the guest, now on host $2 with console $3, counts at least
# $4 passes past where it is now, and the whole stream holds.
guest_runs_on() {
	local name=$1 x=$2 path=$3 more=$4 last target i
	follow "$name" "$path"
	last=$(check_stream "$name") || fail "$name: $(check_stream "$name" 2>&1)"
	target=$((last + more))
	for ((i = 0; i < 300; i++)); do
		follow "$name" "$path"
		last=$(check_stream "$name") || fail "$name on $x: $(check_stream "$name" 2>&1)"
		[ "$last" -ge "$target" ] && break
		sleep 0.2
	done
	[ "$last" -ge "$target" ] ||
		fail "$name on $x: the console stopped at pass $last (wanted $target; $path)"
	echo "   $name counts on, on $x: pass $last, no BAD line"
}

# A guest started on A, booted and counting.
start_guest() {
	local name=$1 mem=$2
	local out
	out=$(h guest A "$name" "$mem") || fail "cannot start $name on A: $out"
	guest_runs_on "$name" A "$DIR/A/$name.console" 3
}

# migratectl start SRC -> DST for domain $3, more options after; leaves
# the exit code in $rc, stdout in $DIR/out, stderr in $DIR/err.
migrate() {
	local src=$1 dst=$2 name=$3
	shift 3
	"$MIGRATECTL" start "unix://$DIR/$src/agent.sock" "unix://$DIR/$dst/agent.sock" \
		--vm "libvirt:$name" "$@" >"$DIR/out" 2>"$DIR/err" </dev/null
	rc=$?
}

# A migration that must complete: JSON result, the domain's states on
# both hosts, the console across the move.
# ENCRYPT (optional): --encrypt for the start, and the encryption its
# JSON must then report.
migrate_ok() {
	local src=$1 dst=$2 name=$3 streams=$4 srcpath dstpath
	local enc=${ENCRYPT:-auto} want_enc=none
	[ "$enc" = always ] && want_enc=aes-256-gcm
	say "$name: $src -> $dst, --streams $streams, --encrypt $enc"
	srcpath=$(console_path "$src" "$name")
	migrate "$src" "$dst" "$name" --streams "$streams" --encrypt "$enc" --json
	[ "$rc" = 0 ] || fail "start $src -> $dst exited $rc: $(tail -3 "$DIR/err") $(cat "$DIR/out")"
	python3 - "$DIR/out" "$streams" "$want_enc" <<-'EOF' || fail "start's JSON: see above"
	import json, sys
	try:
	    r = json.load(open(sys.argv[1]))
	except ValueError as e:
	    sys.exit(f"not one JSON object: {e}")
	want = {"result": "completed", "owner": "destination", "streams": int(sys.argv[2]),
	        "encryption": sys.argv[3]}
	bad = [f"{k} is {r.get(k)!r}, not {v!r}" for k, v in want.items() if r.get(k) != v]
	if bad:
	    sys.exit("start --json: " + "; ".join(bad))
	EOF
	is_state "$dst" "$name" running || fail "$name is $(state "$dst" "$name") on $dst after the migration"
	# transient: the source's copy ends with the migration
	wait_for 30 is_state "$src" "$name" absent ||
		fail "$name is still $(state "$src" "$name") on $src after the migration"
	dstpath=$(console_path "$dst" "$name")
	follow "$name" "$srcpath"
	guest_runs_on "$name" "$dst" "$dstpath" 5
}

# ---------------------------------------------------------------------------
say "two libvirt hosts in $DIR"
h setup >/dev/null || fail "hosts.sh setup: $(h setup)"
for x in A B; do
	out=$(h start-libvirtd "$x") || fail "$out"
	out=$(h start-agent "$x") || fail "$out"
done
# The hook on both, each making the other's console path its own.
out=$(h install-hook A "rewrite-path $DIR/B $DIR/A") || fail "$out"
out=$(h install-hook B "rewrite-path $DIR/A $DIR/B") || fail "$out"

# ---------------------------------------------------------------------------
say "a. A -> B -> A, with 1 stream and with 4"
start_guest lva 32
h disk B lva 32 >/dev/null
for streams in 1 4; do
	migrate_ok A B lva "$streams"
	migrate_ok B A lva "$streams"
done
# the tunnel's channels sealed, four QEMU connections among them
ENCRYPT=always migrate_ok A B lva 4
ENCRYPT=always migrate_ok B A lva 4
vsh A destroy lva >/dev/null

# ---------------------------------------------------------------------------
say "b. the hook refuses what B cannot run, and rewrites host-local paths"
# A feature this CPU has and this KVM offers (libvirt's host-model), so
# that the guest runs with it required; B's agent then says its KVM lacks it.
feature=
domcaps=$(vsh A domcapabilities)
for f in x2apic lahf_lm popcnt sse4_2 aes avx2 movbe; do
	lvname=${f/sse4_/sse4.}
	grep -qw "$f" /proc/cpuinfo || continue
	echo "$domcaps" | grep -q "policy='require' name='$lvname'" || continue
	feature=$f
	break
done
[ -n "$feature" ] || fail "no CPU feature both in /proc/cpuinfo and in KVM's host model among the candidates"
echo "   feature: $feature (libvirt: $lvname)"
export GUEST_CPU="<cpu mode='custom' match='exact' check='none'><model fallback='allow'>qemu64</model><feature policy='require' name='$lvname'/></cpu>"
start_guest lvb 32
unset GUEST_CPU
vsh A dumpxml lvb | grep -q "policy='require' name='$lvname'" ||
	fail "lvb does not run with $lvname required: $(vsh A dumpxml lvb | grep -A4 '<cpu')"
h disk B lvb 32 >/dev/null
kill -9 "$(cat "$DIR/B/agent.pid")"
wait_for 10 eval "! kill -0 $(cat "$DIR/B/agent.pid")" || fail "B's agent does not die"
out=$(h start-agent B --host-profile "cpuid-off=$feature") || fail "$out"

say "lvb: start A -> B with $feature missing on B: refused"
migrate A B lvb
[ "$rc" = 1 ] || fail "start exited $rc, not 1: $(cat "$DIR/err" "$DIR/out")"
is_state A lvb running || fail "lvb is $(state A lvb) on A after the refusal"
is_state B lvb absent || fail "lvb is $(state B lvb) on B after the refusal"
grep -h "$feature\|$lvname" "$DIR/err" "$DIR/out" ||
	fail "the refusal does not name $feature: $(cat "$DIR/err" "$DIR/out")"

say "lvb: plain virsh migrate A -> B: refused with one line"
# The refusal comes at B's Prepare, before any data: no relay is needed,
# A's libvirtd reaches B's socket directly.
vsh A migrate --live --p2p lvb "qemu+unix:///system?socket=$DIR/B/sock/libvirt-sock" \
	--migrateuri "unix://$DIR/run/virsh/qemu.sock" >"$DIR/virsh.out" 2>&1 &&
	fail "virsh migrate succeeded: $(cat "$DIR/virsh.out")"
cat "$DIR/virsh.out"
n=$(grep -c "$feature\|$lvname" "$DIR/virsh.out")
[ "$n" = 1 ] || fail "virsh's error names $feature on $n lines, not one: $(cat "$DIR/virsh.out")"
grep -q "Hook script" "$DIR/virsh.out" || fail "virsh's error is not the hook's: $(cat "$DIR/virsh.out")"
is_state A lvb running || fail "lvb is $(state A lvb) on A after virsh's refused migration"
guest_runs_on lvb A "$DIR/A/lvb.console" 2
vsh A destroy lvb >/dev/null
kill -9 "$(cat "$DIR/B/agent.pid")"
wait_for 10 eval "! kill -0 $(cat "$DIR/B/agent.pid")" || fail "B's agent does not die"
out=$(h start-agent B) || fail "$out"

say "lvm: its disk missing on B: refused"
start_guest lvm 32
migrate A B lvm
[ "$rc" = 1 ] || fail "start exited $rc, not 1: $(cat "$DIR/err" "$DIR/out")"
is_state A lvm running || fail "lvm is $(state A lvm) on A after the refusal"
is_state B lvm absent || fail "lvm is $(state B lvm) on B after the refusal"
grep -h "$DIR/disk/lvm.img" "$DIR/err" "$DIR/out" ||
	fail "the refusal does not name the missing disk: $(cat "$DIR/err" "$DIR/out")"
# The hook refused it at "migrate begin": B never started a QEMU for it.
[ ! -e "$DIR/B/log/qemu/lvm.log" ] || fail "B started a QEMU for lvm: the hook did not refuse it first"

say "lvm: with its disk on B, the hook rewrites its console path"
h disk B lvm 32 >/dev/null
migrate_ok A B lvm 1
path=$(console_path B lvm)
[ "$path" = "$DIR/B/lvm.console" ] || fail "lvm's console on B is $path, not $DIR/B/lvm.console"
echo "   B's live XML: console $path"
vsh B destroy lvm >/dev/null

# ---------------------------------------------------------------------------
say "c. B's agent killed mid-stream: the guest stays on A"
# 56 MiB of ballast at 4 MiB/s: some 14 s of copying to kill it in.
start_guest lvc 64
h disk B lvc 64 >/dev/null
(
	migrate A B lvc --max-bandwidth $((4 << 20))
	exit "$rc"
) &
mpid=$!
wait_for 60 moving lvc || fail "lvc's migration moved no MiB in 60 s: $(vsh A domjobinfo lvc)"
vsh A domjobinfo lvc | grep -E "Memory (processed|remaining)" | sed 's/^/   /'
kill -0 "$mpid" 2>/dev/null ||
	fail "lvc's migration ended before the kill (is --max-bandwidth libvirt's bandwidth?): $(cat "$DIR/err")"
kill -9 "$(cat "$DIR/B/agent.pid")"
echo "   killed B's agent"
start_ends "$mpid" "the kill"
[ "$rc" = 1 ] || fail "start exited $rc, not 1: $(cat "$DIR/err" "$DIR/out")"
wait_for 30 is_state A lvc running || fail "lvc is $(state A lvc) on A after the failed migration"
wait_for 60 is_state B lvc absent || fail "lvc is $(state B lvc) on B after the failed migration"
echo "   start exited 1; lvc runs on A, gone from B"
guest_runs_on lvc A "$DIR/A/lvc.console" 5
vsh A destroy lvc >/dev/null
out=$(h start-agent B) || fail "$out"

# ---------------------------------------------------------------------------
say "c2. A's agent killed mid-stream and started again: start waits for it, exit 1"
start_guest lvk 64
h disk B lvk 64 >/dev/null
(
	migrate A B lvk --max-bandwidth $((4 << 20)) --json
	exit "$rc"
) &
mpid=$!
wait_for 60 moving lvk || fail "lvk's migration moved no MiB in 60 s: $(vsh A domjobinfo lvk)"
kill -9 "$(cat "$DIR/A/agent.pid")"
wait_for 10 eval "! kill -0 $(cat "$DIR/A/agent.pid")" || fail "A's agent does not die"
echo "   killed A's agent"
# the domain is libvirt's, not the agent's: it outlives it, and a new
# agent answers where it is
out=$(h start-agent A) || fail "$out"
start_ends "$mpid" "A's agent's restart"
[ "$rc" = 1 ] || fail "start exited $rc, not 1: $(cat "$DIR/err" "$DIR/out")"
python3 - "$DIR/out" <<-'EOF' || fail "start's JSON after A's agent's restart: see above"
import json, sys
r = json.load(open(sys.argv[1]))
bad = [f"{k} is {r.get(k)!r}" for k, v in (("result", "failed"), ("owner", "source"))
       if r.get(k) != v]
if "lost the source agent" not in (r.get("error") or ""):
    bad.append(f"error {r.get('error')!r} does not say the source agent was lost")
if r.get("libvirt", {}).get("source_state") != "running":
    bad.append(f"libvirt is {r.get('libvirt')!r}")
if bad:
    sys.exit("start --json: " + "; ".join(bad))
EOF
wait_for 30 is_state A lvk running || fail "lvk is $(state A lvk) on A after the failed migration"
echo "   start exited 1 with owner source; lvk runs on A"
guest_runs_on lvk A "$DIR/A/lvk.console" 3
vsh A destroy lvk >/dev/null

# ---------------------------------------------------------------------------
say "d. four streams, three migrations in a row"
start_guest lvd 32
h disk B lvd 32 >/dev/null
migrate_ok A B lvd 4
migrate_ok B A lvd 4
migrate_ok A B lvd 4

# The journal outlives B's agent: a new one takes back its predecessor's
# records of domains, and journals what it did not hear while none ran
# (lvd destroyed in between).
uuid=$(vsh B domuuid lvd)
old_pid=$(cat "$DIR/B/agent.pid")
kill -9 "$old_pid"
wait_for 10 eval "! kill -0 $old_pid" || fail "B's agent does not die"
vsh B destroy lvd >/dev/null
out=$(h start-agent B) || fail "$out"
"$MIGRATECTL" journal "unix://$DIR/B/agent.sock" --json >"$DIR/journal" ||
	fail "migratectl journal on B failed"
python3 - "$DIR/journal" "$uuid" "$old_pid" "$(cat "$DIR/B/agent.pid")" <<-'EOF' ||
import json, sys
path, uuid, old, new = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
recs = [r for r in map(json.loads, open(path)) if r["vm"] == uuid and r["event"] != "hook"]
bad = []
if not any(r["event"] == "start" and r["pid"] == old for r in recs):
    bad.append("no start of lvd by the killed agent: its records were not taken back")
if not recs or recs[-1]["event"] != "stop" or recs[-1]["pid"] != new:
    bad.append(f"the last record of lvd is {recs[-1] if recs else None}, not the new "
               "agent's stop for the destroy it did not hear")
if bad:
    sys.exit("B's journal after its agent's restart: " + "; ".join(bad) + f" ({recs[-4:]})")
print(f"   B's new agent serves {len(recs)} records of lvd, its predecessor's and its own stop")
EOF
	fail "the journal across B's agent's restart: see above"

# ---------------------------------------------------------------------------
say "e. cancelled by migratectl cancel, and by Ctrl-C on start: the guest stays on A"
start_guest lve 64
h disk B lve 64 >/dev/null
for how in cancel ctrl-c; do
	"$MIGRATECTL" start "unix://$DIR/A/agent.sock" "unix://$DIR/B/agent.sock" --vm libvirt:lve \
		--max-bandwidth $((4 << 20)) --json >"$DIR/out" 2>"$DIR/err" </dev/null &
	mpid=$!
	wait_for 60 moving lve || fail "lve's migration moved no MiB in 60 s: $(cat "$DIR/err")"
	if [ "$how" = cancel ]; then
		id=$(sed -n 's/^migration \([0-9a-f-]*\): started.*/\1/p' "$DIR/err" | head -1)
		[ -n "$id" ] || fail "no migration id in start's stderr: $(cat "$DIR/err")"
		"$MIGRATECTL" cancel "unix://$DIR/A/agent.sock" "$id" >/dev/null ||
			fail "migratectl cancel $id failed"
	else
		kill -INT "$mpid"
	fi
	start_ends "$mpid" "the $how"
	[ "$rc" = 1 ] || fail "$how: start exited $rc, not 1: $(cat "$DIR/err" "$DIR/out")"
	python3 - "$DIR/out" <<-'EOF' || fail "$how: start's JSON: see above"
	import json, sys
	r = json.load(open(sys.argv[1]))
	want = {"result": "cancelled", "owner": "source"}
	bad = [f"{k} is {r.get(k)!r}, not {v!r}" for k, v in want.items() if r.get(k) != v]
	if r.get("libvirt", {}).get("source_state") != "running":
	    bad.append(f"libvirt.source_state is {r.get('libvirt')!r}")
	if bad:
	    sys.exit("start --json: " + "; ".join(bad))
	EOF
	is_state A lve running || fail "$how: lve is $(state A lve) on A"
	wait_for 60 is_state B lve absent || fail "$how: lve is $(state B lve) on B"
	echo "   $how: start exited 1, result cancelled; lve runs on A, not on B"
	guest_runs_on lve A "$DIR/A/lve.console" 3
done
vsh A destroy lve >/dev/null

# ---------------------------------------------------------------------------
say "f. a writable disk: refused without --copy-storage, copied with it"
head -c $((4 << 20)) /dev/urandom >"$DIR/A/disk/lvf-data.img"
truncate -s 4M "$DIR/B/disk/lvf-data.img"
GUEST_DEVICES="<disk type='file' device='disk'><driver name='qemu' type='raw'/>
<source file='$DIR/disk/lvf-data.img'/><target dev='vdb' bus='virtio'/></disk>" \
	start_guest lvf 32
h disk B lvf 32 >/dev/null
migrate A B lvf --json
[ "$rc" = 1 ] || fail "without --copy-storage: start exited $rc, not 1: $(cat "$DIR/err" "$DIR/out")"
grep -q "shared storage" "$DIR/out" || fail "without --copy-storage: no word of the disk: $(cat "$DIR/out")"
is_state A lvf running || fail "lvf is $(state A lvf) on A after the refusal"
echo "   without --copy-storage: refused, lvf runs on A"
migrate A B lvf --streams 2 --copy-storage --json
[ "$rc" = 0 ] || fail "--copy-storage: start exited $rc: $(tail -3 "$DIR/err") $(cat "$DIR/out")"
python3 - "$DIR/out" <<-'EOF' || fail "--copy-storage: start's JSON: see above"
import json, sys
r = json.load(open(sys.argv[1]))
if r.get("result") != "completed" or not r.get("libvirt", {}).get("copy_storage"):
    sys.exit(f"result {r.get('result')!r}, libvirt {r.get('libvirt')!r}")
EOF
wait_for 30 is_state B lvf running || fail "lvf is $(state B lvf) on B after --copy-storage"
cmp "$DIR/A/disk/lvf-data.img" "$DIR/B/disk/lvf-data.img" ||
	fail "the copied disk differs from the source's"
echo "   --copy-storage: completed, B's copy of the 4 MiB disk equals A's"
follow lvf "$DIR/A/lvf.console"
guest_runs_on lvf B "$(console_path B lvf)" 3
vsh B destroy lvf >/dev/null

# ---------------------------------------------------------------------------
say "g. a guest that dirties faster than the link: --converge none fails, auto and postcopy complete"
# A busy guest (no pause between passes, a region of 128 pages) at 2 MiB/s
# with a 1 ms downtime limit: every iteration ends with pages written
# meanwhile, more than 1 ms at 2 MiB/s can carry, so QEMU never switches
# over by itself, unless the guest's vCPU stalls for an iteration (some
# 250 ms) on a loaded machine.
GUEST_BUSY=2 start_guest lvg 16
GUEST_BUSY=2 h disk B lvg 16 >/dev/null
hard=(--streams 1 --max-bandwidth $((2 << 20)) --downtime-limit 1 --json)

# $1: the JSON, $2: what it must say (none-failed, auto, postcopy)
conv_check() {
	python3 - "$1" "$2" <<-'EOF'
	import json, sys
	r = json.load(open(sys.argv[1]))
	how = sys.argv[2]
	c = r.get("convergence") or {}
	lv = r.get("libvirt") or {}
	bad = []
	def want(what, got, ok):
	    if not ok:
	        bad.append(f"{what} is {got!r}")
	if how == "none-failed":
	    want("result", r.get("result"), r.get("result") == "failed")
	    want("owner", r.get("owner"), r.get("owner") == "source")
	    # it went on iterating: not a failure at the first pass
	    want("rounds", r.get("rounds"), (r.get("rounds") or 0) >= 3)
	    want("convergence", c, c.get("mode") == "none" and not c.get("auto_converge")
	         and c.get("postcopy") is None)
	    want("libvirt", lv, lv.get("source_state") == "running" and
	         lv.get("destination_state") == "absent")
	else:
	    want("result", r.get("result"), r.get("result") == "completed")
	    want("owner", r.get("owner"), r.get("owner") == "destination")
	    want("libvirt", lv, lv.get("source_state") == "absent" and
	         lv.get("destination_state") == "running")
	if how == "auto":
	    want("convergence", c, c.get("mode") == "auto" and c.get("auto_converge") and
	         (c.get("throttle_pct") or 0) > 0 and c.get("postcopy") is None)
	if how == "postcopy":
	    p = c.get("postcopy") or {}
	    want("convergence", c, c.get("mode") == "postcopy" and not c.get("auto_converge")
	         and (p.get("after_rounds") or 0) >= 1)
	if bad:
	    sys.exit("start --json: " + "; ".join(bad))
	print(f"   {how}: {r['result']} after {r['rounds']} iterations, "
	      f"throttle {c.get('throttle_pct')} %, post-copy {c.get('postcopy')}")
	EOF
}

say "lvg: --converge none, --timeout 4s: fails, lvg stays on A only"
# A stalled vCPU lets it complete: then back to A, and again (3 at most)
for attempt in 1 2 3; do
	migrate A B lvg "${hard[@]}" --converge none --timeout 4s
	[ "$rc" = 0 ] || break
	echo "   attempt $attempt: completed (the guest's vCPU stalled?); back to A, again"
	migrate B A lvg --streams 1 --json
	[ "$rc" = 0 ] || fail "back to A: start exited $rc: $(cat "$DIR/out")"
	rc=0
done
[ "$rc" = 1 ] || fail "none: start exited $rc, not 1: $(tail -3 "$DIR/err") $(cat "$DIR/out")"
conv_check "$DIR/out" none-failed || fail "none: start's JSON: see above"
is_state A lvg running || fail "none: lvg is $(state A lvg) on A"
wait_for 60 is_state B lvg absent || fail "none: lvg is $(state B lvg) on B"
guest_runs_on lvg A "$DIR/A/lvg.console" 3

say "lvg: --converge auto: libvirt's auto-converge throttles it until it completes"
srcpath=$(console_path A lvg)
migrate A B lvg "${hard[@]}" --converge auto --timeout 60s
[ "$rc" = 0 ] || fail "auto: start exited $rc: $(tail -3 "$DIR/err") $(cat "$DIR/out")"
conv_check "$DIR/out" auto || fail "auto: start's JSON: see above"
wait_for 30 is_state A lvg absent || fail "auto: lvg is $(state A lvg) on A"
follow lvg "$srcpath"
guest_runs_on lvg B "$(console_path B lvg)" 3

say "lvg: --converge postcopy, B -> A: switched after a pass, completes"
srcpath=$(console_path B lvg)
migrate B A lvg "${hard[@]}" --converge postcopy --timeout 60s
[ "$rc" = 0 ] || fail "postcopy: start exited $rc: $(tail -3 "$DIR/err") $(cat "$DIR/out")"
conv_check "$DIR/out" postcopy || fail "postcopy: start's JSON: see above"
# libvirt's word that it ran: the source paused for post-copy
grep -q "post-copy of lvg: asked by this agent; libvirt paused the source for it: seen" \
	"$DIR/B/agent.log" || fail "postcopy: B's agent did not see lvg paused for post-copy: $(grep lvg "$DIR/B/agent.log" | tail -3)"
wait_for 30 is_state B lvg absent || fail "postcopy: lvg is $(state B lvg) on B"
follow lvg "$srcpath"
guest_runs_on lvg A "$(console_path A lvg)" 3

say "lvg: post-copy broken (B's QEMU stopped as A's agent asks for it, then killed): exit 3"
# The switch leaves the domain split between the hosts: start must not
# give it to either, though B's agent answers that B has none and A still
# has it, and libvirt must not run it on A again.  B's QEMU is stopped as
# soon as A's agent says it asked for the switch; an attempt that
# completed first (post-copy lasts a second or two here), or failed before
# QEMU switched (exit 1, lvg runs on A), is tried again.
asked() {
	grep -c "lvg: post-copy asked for" "$DIR/A/agent.log"
}
for attempt in 1 2 3; do
	n0=$(asked)
	(
		migrate A B lvg "${hard[@]}" --converge postcopy --timeout 60s
		exit "$rc"
	) &
	mpid=$!
	for ((i = 0; i < 3000; i++)); do
		[ "$(asked)" -gt "$n0" ] && break
		kill -0 "$mpid" 2>/dev/null || break
		sleep 0.01
	done
	qpid=$(cat "$DIR/B/run/qemu/lvg.pid" 2>/dev/null)
	[ -n "$qpid" ] && kill -STOP "$qpid"
	sleep 1
	[ -n "$qpid" ] && kill -9 "$qpid"
	start_ends "$mpid" "the kill of B's QEMU"
	case $rc in
	3) break ;;
	0)	echo "   attempt $attempt: completed before the stop; back to A, again"
		migrate B A lvg --streams 1 --json
		[ "$rc" = 0 ] || fail "back to A: start exited $rc: $(cat "$DIR/out")" ;;
	1)	is_state A lvg running || fail "exit 1, yet lvg is $(state A lvg) on A: $(cat "$DIR/out")"
		echo "   attempt $attempt: failed before the switch, lvg runs on A; again" ;;
	*)	fail "broken post-copy: start exited $rc: $(tail -3 "$DIR/err") $(cat "$DIR/out")" ;;
	esac
done
[ "$rc" = 3 ] || fail "broken post-copy: no attempt broke it in post-copy (last exit $rc: $(cat "$DIR/out"))"
python3 - "$DIR/out" <<-'EOF' || fail "broken post-copy: start's JSON: see above"
import json, sys
r = json.load(open(sys.argv[1]))
bad = [f"{k} is {r.get(k)!r}" for k, v in (("result", "failed"), ("owner", "none"))
       if r.get(k) != v]
if "post-copy had begun" not in (r.get("error") or ""):
    bad.append(f"error {r.get('error')!r} does not say post-copy had begun")
if not (r.get("convergence") or {}).get("postcopy"):
    bad.append(f"convergence {r.get('convergence')!r} does not say post-copy ran")
if bad:
    sys.exit("start --json: " + "; ".join(bad))
EOF
# libvirt never resumes the source after the switch
is_state A lvg running && fail "broken post-copy: lvg runs on A again (B: $(state B lvg))"
echo "   start exited 3, owner none; lvg is $(state A lvg) on A, $(state B lvg) on B"
vsh A destroy lvg >/dev/null 2>&1
vsh B destroy lvg >/dev/null 2>&1

failed=0
say "all cases passed"
