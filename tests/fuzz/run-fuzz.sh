#!/bin/bash
# SPDX-License-Identifier: MIT
#
# The fuzz targets (tests/fuzz, docs/chaos.md "Fuzzing") for a bounded
# time: a clang build with -Dfuzz=enabled in WORKDIR/build (configured
# once, recompiled each run), seed corpora from fuzz-seeds, then each
# target for SECONDS (default 25) on its corpus in WORKDIR/corpus/TARGET,
# which grows from run to run.
#
# usage: run-fuzz.sh WORKDIR SOURCEDIR [SECONDS]
# A crash, a leak, a sanitizer report or a failed assertion fails the run;
# the input that did it stays in WORKDIR/artifacts/TARGET/ and its path is
# printed, with the command that replays it.  Exits 77 (skip) only when
# clang or its libFuzzer runtime is missing.
set -uo pipefail
usage="usage: run-fuzz.sh WORKDIR SOURCEDIR [SECONDS]"
[ $# -ge 2 ] && [ $# -le 3 ] || { echo "$usage"; exit 1; }
skip() { echo "SKIP: $*"; exit 77; }
fail() { echo "FAIL: $*"; exit 1; }
SECS=${3:-25}
case $SECS in ''|*[!0-9]*) fail "SECONDS must be a whole number, not \"$SECS\"" ;; esac

command -v clang >/dev/null || skip "clang is not installed (contrib/build.sh installs clang and libclang-rt-14-dev)"
for t in meson ninja; do
	command -v $t >/dev/null || skip "$t is not installed (contrib/build.sh installs it)"
done
mkdir -p "$1" || fail "cannot make $1"
W=$(cd "$1" && pwd -P)
SRC=$(cd "$2" && pwd -P) || fail "no source directory $2"
B=$W/build

# libFuzzer's runtime is a package of its own (libclang-rt-14-dev).
probe=$W/probe
printf '#include <stddef.h>\n#include <stdint.h>\nint LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) { (void)d; (void)n; return 0; }\n' \
	> "$probe.c"
clang -fsanitize=fuzzer,address,undefined "$probe.c" -o "$probe" > "$probe.log" 2>&1 ||
	{ cat "$probe.log"; skip "clang cannot link a libFuzzer target (contrib/build.sh installs libclang-rt-14-dev)"; }

if [ ! -f "$B/meson-private/coredata.dat" ]; then
	# Only what the targets use: no test suite, no lab VM (its guest is
	# assembly for gcc); the spec and wire parts of the lab are still in.
	CC=clang meson setup -Dfuzz=enabled -Dtests=disabled -Dlab=disabled "$B" "$SRC" \
		> "$W/setup.log" 2>&1 || { cat "$W/setup.log"; fail "meson setup of the fuzz build"; }
fi
targets=(frame request spec)
meson compile -C "$B" "${targets[@]/#/fuzz-}" fuzz-seeds > "$W/compile.log" 2>&1 ||
	{ cat "$W/compile.log"; fail "the fuzz build"; }

rm -rf "$W/seeds"
"$B/tests/fuzz/fuzz-seeds" "$W/seeds" || fail "fuzz-seeds $W/seeds"

# The longest input each target takes: a frame stream of a full PAGES frame
# with its tags and a few more; a request of a VM_CHECK with many entries.
declare -A max_len=([frame]=32768 [request]=16384 [spec]=1024)
status=0 total=0
for t in "${targets[@]}"; do
	corpus=$W/corpus/$t art=$W/artifacts/$t log=$W/$t.log
	mkdir -p "$corpus" "$art"
	rm -f "$art"/*
	"$B/tests/fuzz/fuzz-$t" -max_total_time="$SECS" -max_len="${max_len[$t]}" -timeout=10 \
		-rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$art/" \
		"$corpus" "$W/seeds/$t" > "$log" 2>&1
	r=$?
	runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
	cov=$(sed -n 's/^#[0-9]*[[:space:]]*DONE[[:space:]]*cov: \([0-9]*\).*/\1/p' "$log")
	total=$((total + ${runs:-0}))
	echo "fuzz-$t: ${runs:-?} inputs (limit ${SECS} s), ${cov:-?} edges covered, corpus" \
		"$(find "$corpus" -type f | wc -l) inputs, exit $r"
	found=$(find "$art" -type f | head -5)
	if [ $r -ne 0 ] || [ -n "$found" ]; then
		status=1
		tail -n 40 "$log"
		for f in $found; do
			echo "FAIL: fuzz-$t found $f; replay: $B/tests/fuzz/fuzz-$t $f"
		done
		[ -n "$found" ] || echo "FAIL: fuzz-$t exited $r (log: $log)"
	fi
done
echo "fuzz: $total inputs in all"
exit $status
