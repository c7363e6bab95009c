#!/bin/bash
# The aarch64 cross build: an arm64 sysroot from Debian's archive
# (contrib/arm64-sysroot.sh, kept in WORKDIR for the next run), then this
# source tree configured and compiled for aarch64 with Debian's cross gcc,
# warnings as errors, afresh in WORKDIR/build-aarch64.  Its migratectl must
# be an aarch64 ELF whose interpreter and NEEDED libraries (and theirs) are
# all in the sysroot, which is checked without running it.
#
# usage: run-cross-arm64.sh WORKDIR SOURCEDIR
# Exits 77 (skip) only when a host tool is missing or the archive cannot be
# reached; every other problem fails.
set -uo pipefail
[ $# -eq 2 ] || { echo "usage: run-cross-arm64.sh WORKDIR SOURCEDIR"; exit 1; }
skip() { echo "SKIP: $*"; exit 77; }
fail() { echo "FAIL: $*"; exit 1; }
say() { echo "[$(date +%T)] $*"; }
TRIPLE=aarch64-linux-gnu

for t in $TRIPLE-gcc $TRIPLE-readelf apt-get dpkg-deb pkg-config file meson ninja; do
	command -v $t >/dev/null ||
		skip "$t is not installed (contrib/build.sh installs gcc-aarch64-linux-gnu and file)"
done
mkdir -p "$1" || fail "cannot make $1"
W=$(cd "$1" && pwd -P)
SRC=$(cd "$2" && pwd -P) || fail "no source directory $2"
SR=$W/sysroot
B=$W/build-aarch64

t0=$(date +%s)
"$SRC/contrib/arm64-sysroot.sh" "$W"
case $? in
0) ;;
77) skip "the archive cannot be reached (contrib/arm64-sysroot.sh)" ;;
*) fail "contrib/arm64-sysroot.sh $W failed" ;;
esac
t1=$(date +%s)
say "sysroot ready in $((t1 - t0)) s"

rm -rf "$B"
meson setup --cross-file "$W/cross-aarch64.ini" -Dtests=disabled --werror "$B" "$SRC" \
	> "$W/setup.log" 2>&1 || { cat "$W/setup.log"; fail "meson setup of the aarch64 build"; }
meson compile -C "$B" > "$W/compile.log" 2>&1 || { cat "$W/compile.log"; fail "the aarch64 build"; }
t2=$(date +%s)
say "aarch64 build compiled in $((t2 - t1)) s"

BIN=$B/migratectl
desc=$(file -b "$BIN") || fail "file $BIN"
echo "migratectl: $desc"
case $desc in
*"ELF 64-bit LSB"*"ARM aarch64"*) ;;
*) fail "$BIN is not an aarch64 ELF" ;;
esac
interp=$($TRIPLE-readelf -l "$BIN" | sed -n 's/.*Requesting program interpreter: \(.*\)\]/\1/p')
[ -n "$interp" ] && [ -e "$SR$interp" ] || fail "the interpreter '$interp' is not in $SR"

# Every NEEDED library, and the ones those need, in the sysroot's library
# directories (what the loader searches in a chroot into it).
find_lib() {
	local d
	for d in lib/$TRIPLE usr/lib/$TRIPLE lib usr/lib; do
		[ -e "$SR/$d/$1" ] && { echo "$SR/$d/$1"; return 0; }
	done
	return 1
}
declare -A seen=()
queue=("$BIN")
while [ ${#queue[@]} -gt 0 ]; do
	f=${queue[0]}
	queue=("${queue[@]:1}")
	for lib in $($TRIPLE-readelf -d "$f" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'); do
		[ -n "${seen[$lib]:-}" ] && continue
		p=$(find_lib "$lib") || fail "$lib (NEEDED by $(basename "$f")) is not in $SR"
		seen[$lib]=$p
		queue+=("$(readlink -f "$p")")
	done
done
[ -n "${seen[libc.so.6]:-}" ] || fail "migratectl needs no libc.so.6?"
echo "NEEDED, all in the sysroot: ${!seen[*]}"

# The arm64 lab VM is in it.
$TRIPLE-readelf -s "$BIN" | grep -c ' lab_a64_guest_start$' >/dev/null ||
	fail "migratectl has no arm64 lab guest (lab_a64_guest_start)"
echo "aarch64 cross build: sysroot $((t1 - t0)) s, compile $((t2 - t1)) s"
exit 0
