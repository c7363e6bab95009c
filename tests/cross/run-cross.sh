#!/bin/bash
# A cross build: a sysroot for ARCH from Debian's archive
# (contrib/cross-sysroot.sh, kept in WORKDIR for the next run), then this
# source tree configured and compiled for ARCH with Debian's cross gcc,
# warnings as errors, afresh in WORKDIR/build-ARCH.  Its migratectl must be
# an ELF of that architecture whose interpreter and NEEDED libraries (and
# theirs) are all in the sysroot, which is checked without running it.
#
#   --tests  also builds the pure tests (suite `pure`, tests/meson.build), on
#            the lite harness (tests/lite: Debian builds criterion for few
#            architectures);
#   --qemu   and runs them under qemu-user (qemu-ARCH -L the sysroot).
#
# usage: run-cross.sh [--tests|--qemu] arm64|s390x|ppc64el|mips64el WORKDIR SOURCEDIR
# Exits 77 (skip) only when a host tool is missing or the archive cannot be
# reached; every other problem fails.
set -uo pipefail
usage="usage: run-cross.sh [--tests|--qemu] arm64|s390x|ppc64el|mips64el WORKDIR SOURCEDIR"
TESTS=0 QEMU_RUN=0
case ${1:-} in
--tests) TESTS=1; shift ;;
--qemu) TESTS=1; QEMU_RUN=1; shift ;;
esac
[ $# -eq 3 ] || { echo "$usage"; exit 1; }
skip() { echo "SKIP: $*"; exit 77; }
fail() { echo "FAIL: $*"; exit 1; }
say() { echo "[$(date +%T)] $*"; }
DARCH=$1
# Each architecture: its GNU triple, meson's cpu_family, what file(1) says
# of its ELF, its qemu-user and a symbol of the code meson picks for it alone.
case $DARCH in
arm64)    TRIPLE=aarch64-linux-gnu; FAMILY=aarch64; ELF="ELF 64-bit LSB*ARM aarch64"; QEMU=qemu-aarch64
	  ARCH_SYM=lab_a64_guest_start ;;
s390x)    TRIPLE=s390x-linux-gnu; FAMILY=s390x; ELF="ELF 64-bit MSB*IBM S/390"; QEMU=qemu-s390x
	  ARCH_SYM=diag318_class ;;
ppc64el)  TRIPLE=powerpc64le-linux-gnu; FAMILY=ppc64; ELF="ELF 64-bit LSB*PowerPC"; QEMU=qemu-ppc64le
	  ARCH_SYM= ;;
mips64el) TRIPLE=mips64el-linux-gnuabi64; FAMILY=mips64; ELF="ELF 64-bit LSB*MIPS"; QEMU=qemu-mips64el
	  ARCH_SYM= ;;
*) echo "$usage"; exit 1 ;;
esac

tools=($TRIPLE-gcc $TRIPLE-readelf $TRIPLE-nm apt-get dpkg-deb pkg-config file meson ninja)
[ $QEMU_RUN = 1 ] && tools+=($QEMU)
for t in "${tools[@]}"; do
	command -v $t >/dev/null ||
		skip "$t is not installed (contrib/build.sh installs gcc-$TRIPLE, qemu-user and file)"
done
mkdir -p "$2" || fail "cannot make $2"
W=$(cd "$2" && pwd -P)
SRC=$(cd "$3" && pwd -P) || fail "no source directory $3"
SR=$W/sysroot
B=$W/build-$DARCH

t0=$(date +%s)
"$SRC/contrib/cross-sysroot.sh" "$DARCH" "$W"
case $? in
0) ;;
77) skip "the archive cannot be reached (contrib/cross-sysroot.sh)" ;;
*) fail "contrib/cross-sysroot.sh $DARCH $W failed" ;;
esac
t1=$(date +%s)
say "sysroot ready in $((t1 - t0)) s"

rm -rf "$B"
# No debug information: these builds are checked, not debugged, and compile
# a quarter faster without it.
opts=(-Ddebug=false -Dtests=disabled)
[ $TESTS = 1 ] && opts=(-Ddebug=false -Dtests=enabled -Dtest-harness=lite)
meson setup --cross-file "$W/cross-$DARCH.ini" "${opts[@]}" --werror "$B" "$SRC" \
	> "$W/setup.log" 2>&1 || { cat "$W/setup.log"; fail "meson setup of the $DARCH build"; }
sed -n '/Devices/,/^$/p;/Backends/,/^$/p' "$W/setup.log"
meson compile -C "$B" > "$W/compile.log" 2>&1 || { cat "$W/compile.log"; fail "the $DARCH build"; }
t2=$(date +%s)
say "$DARCH build compiled in $((t2 - t1)) s"

BIN=$B/migratectl
desc=$(file -b "$BIN") || fail "file $BIN"
echo "migratectl: $desc"
# shellcheck disable=SC2053
[[ $desc == *$ELF* ]] || fail "$BIN is not a $DARCH ELF ($ELF)"
interp=$($TRIPLE-readelf -l "$BIN" | sed -n 's/.*Requesting program interpreter: \(.*\)\]/\1/p')
[ -n "$interp" ] && [ -e "$SR$interp" ] || fail "the interpreter '$interp' is not in $SR"

# Every NEEDED library, and the ones those need, in the sysroot's library
# directories (what the loader searches in a chroot into it).
find_lib() {
	local d
	for d in lib/$TRIPLE usr/lib/$TRIPLE lib64 lib usr/lib; do
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

# The code meson chose for this architecture is in it (arm64: the lab VM;
# s390x: the DIAG 318 class, and its kernel backend in the library).
if [ -n "$ARCH_SYM" ]; then
	$TRIPLE-readelf -s "$BIN" | grep -c " $ARCH_SYM\$" >/dev/null ||
		fail "migratectl has no $ARCH_SYM: the $DARCH code was not chosen"
fi
if [ "$DARCH" = s390x ]; then
	$TRIPLE-nm "$B/libmigrate.a" | grep -c ' diag318_kernel_backend$' >/dev/null ||
		fail "libmigrate.a has no diag318_kernel_backend"
fi
t3=$t2
if [ $QEMU_RUN = 1 ]; then
	# Where this architecture has no lab VM, `vm run` says so and what to do.
	if grep -q 'lab VM *: False' "$W/setup.log"; then
		out=$($QEMU -L "$SR" "$BIN" vm run 2>&1)
		st=$?
		echo "migratectl vm run: exit $st: $out"
		[ $st = 1 ] && [[ $out == *"no $FAMILY port yet"*"host lab VMs on an agent"* ]] ||
			fail "migratectl vm run without a lab VM: exit $st, '$out'"
	fi
	say "the pure tests under $QEMU"
	meson test -C "$B" --suite pure --print-errorlogs --num-processes 2 ||
		fail "the pure tests under $QEMU (log: $B/meson-logs/testlog.txt)"
	t3=$(date +%s)
fi
echo "$DARCH cross build: sysroot $((t1 - t0)) s, compile $((t2 - t1)) s, tests $((t3 - t2)) s"
exit 0
