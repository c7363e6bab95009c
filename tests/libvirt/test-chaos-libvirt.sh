#!/bin/bash
# SPDX-License-Identifier: MIT
#
# migratectl chaos on a libvirt domain (docs/chaos.md, "libvirt domains"): two libvirt
# hosts on this machine (hosts.sh), an agent with --libvirt and the
# migratectl hook on each, and a guest (guest.S) that counts "pass N" on its
# console.  The agents run with --chaos under a supervisor that restarts
# them (as systemd would).  The campaign moves the running domain back and
# forth, one fault per run: the tunnel's network faults (a relay in front
# of the destination's tunnel), the agents killed or frozen at a frame of a
# channel, the start process killed, frozen or cancelled; it checks never
# two, never none and the contract after each run.  Passes when the
# campaign reports 0 violations in every run asked for, every kind of fault
# fired, migrations completed, rolled back and left by a killed start, an
# agent killed and back, and afterwards, by libvirt's own word (virsh), the
# domain runs on exactly one host and its console counted on without a gap
# across every move.
#
# One QEMU connection (--streams 1): QEMU 7.2's multifd can hang for good
# when one of its channels breaks while being set up (its migration thread
# waits in multifd_send_sync_main), and then the domain cannot migrate
# again until its QEMU restarts (migratectl says so; the campaign stops).
# The libvirt suite migrates over 4 connections.
#
# env: MIGRATECTL (the binary), SRCDIR (the source tree; default: from here),
#      CHAOS_RUNS (default 51: each of the 17 kinds in setup, precopy and
#      stop_copy)
# Skips (77) only without root, /dev/kvm, mount namespaces or libvirt/QEMU.
# The directory stays for post-mortem when the test fails.
set -uo pipefail

ME=test-chaos-libvirt
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
runs=${CHAOS_RUNS:-51}

state() {
	vsh "$1" domstate g 2>/dev/null || echo absent
}

# The console's "pass N" lines count on by one, no BAD line; prints the
# last N (0: none yet).  Without the hook's rewrite rules both hosts write
# the domain's console to the same file, in order.
passes() {
	python3 - "$DIR/A/g.console" <<-'EOF'
	import re, sys
	try:
	    text = open(sys.argv[1], errors="replace").read()
	except FileNotFoundError:
	    text = ""
	last = None
	for i, line in enumerate(text.split("\n")[:-1]):
	    if "BAD" in line:
	        sys.exit(f"the guest found its memory changed: line {i + 1}: {line!r}")
	    m = re.fullmatch(r"pass ([0-9a-f]{8})", line)
	    if m:
	        n = int(m.group(1), 16)
	        if last is not None and n != last + 1:
	            sys.exit(f"line {i + 1}: pass {n:#x} after pass {last:#x}: the count broke")
	        last = n
	    elif line not in ("boot", ""):
	        sys.exit(f"line {i + 1}: unexpected console output {line!r}")
	print(last or 0)
	EOF
}

# Waits (60 s at most) for the console to count $1 passes beyond now.
counts_on() {
	local last target i
	last=$(passes) || fail "console: $(passes 2>&1)"
	target=$((last + $1))
	for ((i = 0; i < 300; i++)); do
		last=$(passes) || fail "console: $(passes 2>&1)"
		[ "$last" -ge "$target" ] && return 0
		sleep 0.2
	done
	fail "the console stopped at pass $last (wanted $target)"
}

echo "== two libvirt hosts in $DIR"
h setup >/dev/null || fail "hosts.sh setup: $(h setup)"
for x in A B; do
	out=$(h start-libvirtd "$x") || fail "$out"
	# chaos mode's agents, restarted when a fault kills one
	out=$(SUPERVISE=1 h start-agent "$x" --chaos) || fail "$out"
	# the hook journals each call; the never-two check must ignore those
	out=$(h install-hook "$x") || fail "$out"
done
# The domain moves both ways: both hosts need its (read-only) disk.
out=$(h guest A g 32) || fail "cannot start g on A: $out"
h disk B g 32 >/dev/null || fail "no disk for g on B"
counts_on 3

echo "== migratectl chaos --vm libvirt:g --runs $runs --seed 1"
"$MIGRATECTL" chaos --agents "unix://$DIR/A/agent.sock,unix://$DIR/B/agent.sock" \
	--vm libvirt:g --runs "$runs" --seed 1 --json --dir "$DIR/chaos" -- --streams 1 \
	>"$DIR/report.json" 2>"$DIR/chaos.err" </dev/null
rc=$?
[ "$rc" = 0 ] || fail "chaos exited $rc: $(tail -5 "$DIR/chaos.err") $(head -c 3000 "$DIR/report.json")"
python3 - "$DIR/report.json" "$runs" <<-'EOF' || fail "the campaign's report: see above"
import json, sys
r = json.load(open(sys.argv[1]))
bad = []
if r["violation_count"] != 0:
    bad.append(f"{r['violation_count']} violations: " +
               "; ".join(f"run {v['run']} {v['fault']}: {v['invariant']}: {v['detail']}"
                         for v in r["violations"]))
if r["runs"] != int(sys.argv[2]):
    bad.append(f"{r['runs']} runs, not {sys.argv[2]}")
fired, outcomes = {}, {}
for row in r["table"]:
    fired[row["fault"]] = fired.get(row["fault"], 0) + row["fired"]
    for k, n in row["outcomes"].items():
        outcomes[k] = outcomes.get(k, 0) + n
kinds = ("reset", "stall", "delay", "bandwidth", "corrupt", "truncate", "duplicate",
         "reorder", "partition", "refuse", "kill-src", "kill-dst", "stop-src", "stop-dst",
         "kill-start", "stop-start", "cancel")
for f in kinds:
    if not fired.get(f):
        bad.append(f"fault {f} never fired (table: {r['table']})")
if "relay" not in r["network_faults"]:
    bad.append(f"the agents took no network faults: {r['network_faults']}")
for o in ("completed", "rolled-back", "no-exit"):
    if not outcomes.get(o):
        bad.append(f"no run ended {o} ({outcomes})")
if r["libvirt"]["domain"] != "g" or r["libvirt"]["overlap_tolerance_ms"] != 50:
    bad.append(f"libvirt: {r['libvirt']}")
if bad:
    sys.exit("chaos --json: " + "\n  ".join(bad))
print(f"   {r['runs']} runs, {r['fired']} fired, outcomes {outcomes}, "
      f"overlaps tolerated {r['libvirt']['overlaps_tolerated']} "
      f"(longest {r['libvirt']['overlap_max_ms']:.3f} ms)")
EOF

# libvirt's own word, not the runner's: one running copy, and the guest
# went on counting through every move.
sa=$(state A)
sb=$(state B)
if [ "$sa" = running ]; then
	[ "$sb" != running ] || fail "g runs on A and on B after the campaign"
elif [ "$sb" != running ]; then
	fail "g runs nowhere after the campaign (A: $sa, B: $sb)"
fi
counts_on 3
echo "   g runs on $([ "$sa" = running ] && echo A || echo B) only; console: pass $(passes), no gap, no BAD line"

# The usage: --vm wants libvirt:NAME and --agents.
"$MIGRATECTL" chaos --local 2 --vm libvirt:g --runs 1 >/dev/null 2>"$DIR/usage.err"
[ $? = 2 ] || fail "--vm with --local was not a usage error: $(cat "$DIR/usage.err")"
"$MIGRATECTL" chaos --agents "unix://$DIR/A/agent.sock,unix://$DIR/B/agent.sock" \
	--vm g --runs 1 >/dev/null 2>"$DIR/usage.err"
[ $? = 2 ] || fail "--vm g (no libvirt:) was not a usage error: $(cat "$DIR/usage.err")"

failed=0
echo "== ok"
