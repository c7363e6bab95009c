#!/bin/bash
# SPDX-License-Identifier: MIT
#
# The chaos smoke campaign (docs/chaos.md, "In CI"): a fixed seed, every
# fault of the catalogue in turn, on two local agents; then a short
# campaign aimed at post-copy alone (--phases postcopy), one run of each of
# its faults in PC_FAULTS.  It passes when neither campaign finds a
# violation, every fault class was injected (post-copy's: network, process,
# operator), and each report is one JSON object that says so.  A violation
# prints its replay command; the campaign's directory is kept for its logs
# and journals.
#
# usage: run-smoke.sh MIGRATECTL RUNS PC_RUNS [SEED]
set -uo pipefail

migratectl=$1
runs=$2
pc_runs=$3
seed=${4:-20261206}
# post-copy's outcomes: a link made again, split or not (a partition that may
# outlast the window), the VM lost with either agent, a cancel ignored, the
# start killed (each run costs about what two pre-copy runs do)
pc_faults=reset,partition,kill-src,kill-dst,cancel,kill-start

[ -e /dev/kvm ] || { echo "no /dev/kvm: the campaign needs KVM" >&2; exit 77; }

dir=$(mktemp -d /tmp/migratectl-chaos-smoke-XXXXXX)
"$migratectl" chaos --local 2 --runs "$runs" --seed "$seed" --json --dir "$dir/campaign" \
	>"$dir/report.json" 2>"$dir/stderr"
status=$?
cat "$dir/stderr" >&2
"$migratectl" chaos --local 2 --runs "$pc_runs" --seed "$seed" --phases postcopy \
	--faults "$pc_faults" --json --dir "$dir/postcopy" >"$dir/report-pc.json" 2>"$dir/stderr-pc"
pc_status=$?
cat "$dir/stderr-pc" >&2

python3 - "$dir/report.json" "$status" "$runs" "$dir/report-pc.json" "$pc_status" "$pc_runs" <<'PY'
import json, sys

def check(path, status, runs, classes, name, bad):
    with open(path) as f:
        text = f.read()
    try:
        rep = json.loads(text)
    except ValueError as e:
        bad.append(f"{name}: the report is not one JSON object ({e}): {text[:300]!r}")
        return None
    if rep["runs"] != runs:
        bad.append(f"{name}: {rep['runs']} runs, not {runs}")
    if rep["violation_count"] != len(rep["violations"]) and len(rep["violations"]) < 100:
        bad.append(f"{name}: the report counts {rep['violation_count']} violations and "
                   f"lists {len(rep['violations'])}")
    if rep["violation_count"]:
        for v in rep["violations"]:
            print(f"violation: {name} run {v['run']}: {v['fault']} in {v['phase']} "
                  f"({v['trigger']}): {v['invariant']}: {v['detail']}\n"
                  f"  replay: {v['replay']}", file=sys.stderr)
        bad.append(f"{name}: {rep['violation_count']} violations")
    if status != (1 if rep["violation_count"] else 0):
        bad.append(f"{name}: exit {status} with {rep['violation_count']} violations")
    fired = {}
    for row in rep["table"]:
        fired[row["class"]] = fired.get(row["class"], 0) + row["fired"]
    for cls in classes:
        if not fired.get(cls):
            bad.append(f"{name}: no {cls} fault was injected")
    print(f"chaos smoke, {name}: {rep['runs']} runs, {rep['fired']} injected, "
          f"{rep['violation_count']} violations; injected by class: {fired}; run time p50 "
          f"{rep['run_ms']['p50']} ms, max {rep['run_ms']['max']} ms")
    return rep

bad = []
check(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]),
      ("network", "process", "device", "operator", "hostile"), "all phases", bad)
pc = check(sys.argv[4], int(sys.argv[5]), int(sys.argv[6]),
           ("network", "process", "operator"), "post-copy", bad)
if pc:
    outcomes = {}
    for row in pc["table"]:
        if row["phase"] != "postcopy":
            bad.append(f"post-copy: {row['fault']} aimed at {row['phase']}")
        for k, v in row["outcomes"].items():
            if v:
                outcomes[k] = outcomes.get(k, 0) + v
    # a fault that never fired is reported as such; most must land
    if pc["fired"] * 2 < pc["runs"]:
        bad.append(f"post-copy: only {pc['fired']} of {pc['runs']} faults fired")
    print(f"chaos smoke, post-copy outcomes: {outcomes}")
if bad:
    sys.exit("chaos smoke failed: " + "; ".join(bad))
PY
result=$?
if [ $result -eq 0 ]; then
	rm -rf "$dir"
else
	echo "the campaigns' logs, journals and violations are in $dir" >&2
fi
exit $result
