#!/bin/bash
# SPDX-License-Identifier: MIT
#
# The chaos smoke campaign (docs/chaos.md, "In CI"): a fixed seed, every
# fault of the catalogue in turn, on two local agents.  It passes when the
# campaign finds no violation, every fault class was injected, and the
# report is one JSON object that says so.  A violation prints its replay
# command; the campaign's directory is kept for its logs and journals.
#
# usage: run-smoke.sh MIGRATECTL RUNS [SEED]
set -uo pipefail

migratectl=$1
runs=$2
seed=${3:-20261206}

[ -e /dev/kvm ] || { echo "no /dev/kvm: the campaign needs KVM" >&2; exit 77; }

dir=$(mktemp -d /tmp/migratectl-chaos-smoke-XXXXXX)
report=$dir/report.json
"$migratectl" chaos --local 2 --runs "$runs" --seed "$seed" --json --dir "$dir/campaign" \
	>"$report" 2>"$dir/stderr"
status=$?
cat "$dir/stderr" >&2

python3 - "$report" "$status" "$runs" <<'PY'
import json, sys

path, status, runs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
with open(path) as f:
    text = f.read()
try:
    rep = json.loads(text)
except ValueError as e:
    sys.exit(f"the report is not one JSON object ({e}): {text[:300]!r}")
bad = []
if rep["runs"] != runs:
    bad.append(f"{rep['runs']} runs, not {runs}")
if rep["violation_count"] != len(rep["violations"]) and len(rep["violations"]) < 100:
    bad.append(f"the report counts {rep['violation_count']} violations and lists "
               f"{len(rep['violations'])}")
if rep["violation_count"]:
    for v in rep["violations"]:
        print(f"violation: run {v['run']}: {v['fault']} in {v['phase']} ({v['trigger']}): "
              f"{v['invariant']}: {v['detail']}\n  replay: {v['replay']}", file=sys.stderr)
    bad.append(f"{rep['violation_count']} violations")
if status != (1 if rep["violation_count"] else 0):
    bad.append(f"exit {status} with {rep['violation_count']} violations")
fired = {}
for row in rep["table"]:
    fired[row["class"]] = fired.get(row["class"], 0) + row["fired"]
for cls in ("network", "process", "device", "operator", "hostile"):
    if not fired.get(cls):
        bad.append(f"no {cls} fault was injected")
print(f"chaos smoke: {rep['runs']} runs, {rep['fired']} injected, {rep['violation_count']} "
      f"violations; injected by class: {fired}; run time p50 {rep['run_ms']['p50']} ms, "
      f"max {rep['run_ms']['max']} ms")
if bad:
    sys.exit("chaos smoke failed: " + "; ".join(bad))
PY
result=$?
if [ $result -eq 0 ]; then
	rm -rf "$dir"
else
	echo "the campaign's logs, journals and violations are in $dir" >&2
fi
exit $result
