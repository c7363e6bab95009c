#!/bin/bash
# SPDX-License-Identifier: MIT
#
# A sysroot from Debian's archive for a cross build, and a meson cross file
# that builds against it:
#
#   contrib/cross-sysroot.sh ARCH WORKDIR
#   meson setup --cross-file WORKDIR/cross-ARCH.ini -Dtests=disabled BUILD
#   meson compile -C BUILD
#
# ARCH is a Debian architecture: arm64, s390x, ppc64el or mips64el (the
# cross compiler is Debian's gcc-TRIPLE package: gcc-aarch64-linux-gnu,
# gcc-s390x-linux-gnu, gcc-powerpc64le-linux-gnu, gcc-mips64el-linux-gnuabi64).
# Where Debian's qemu-user is installed, the cross file runs the build's
# programs under it (qemu-ARCH -L WORKDIR/sysroot), so `meson test` works.
#
# The system's apt setup is left alone: no `dpkg --add-architecture`, no
# change under /etc or /var.  A private APT_CONFIG (its own lists, status,
# cache, source list and configuration parts) repeats the URIs and suites of
# the system's /etc/apt/sources.list.d/debian.sources for the native
# architecture (amd64) and ARCH, keeps the system's Acquire settings
# (proxies, Check-Valid-Until) and nothing else of it (no update hooks),
# and `apt-get download`s the ARCH packages, which dpkg-deb -x unpacks
# into WORKDIR/sysroot.  Root is not needed.
#
# The sysroot is also a root filesystem for the ARCH programs (an arm64
# guest chroots into it over 9p; qemu-user takes it as -L): the runtime
# libraries and the dynamic loader stay in place, and every absolute
# symlink is made relative so it resolves inside the tree.
#
# A complete sysroot for the same package list is kept: a re-run only
# rewrites the cross file.
#
# Exit status: 0 done; 77 the archive cannot be reached; 1 anything else.
set -euo pipefail

die() { echo "cross-sysroot: $*" >&2; exit 1; }
unreachable() { echo "cross-sysroot: the archive cannot be reached: $*" >&2; exit 77; }
say() { echo "cross-sysroot: $*" >&2; }

[ $# -eq 2 ] || die "usage: cross-sysroot.sh arm64|s390x|ppc64el|mips64el WORKDIR"
DARCH=$1
shift
# Each architecture: its GNU triple, meson's cpu_family, cpu and byte
# order, its dynamic loader and its qemu-user.
case $DARCH in
arm64)    TRIPLE=aarch64-linux-gnu; FAMILY=aarch64; CPU=aarch64; ENDIAN=little
	  LOADER=lib/ld-linux-aarch64.so.1; QEMU=qemu-aarch64 ;;
s390x)    TRIPLE=s390x-linux-gnu; FAMILY=s390x; CPU=s390x; ENDIAN=big
	  LOADER=lib/ld64.so.1; QEMU=qemu-s390x ;;
ppc64el)  TRIPLE=powerpc64le-linux-gnu; FAMILY=ppc64; CPU=ppc64le; ENDIAN=little
	  LOADER=lib64/ld64.so.2; QEMU=qemu-ppc64le ;;
mips64el) TRIPLE=mips64el-linux-gnuabi64; FAMILY=mips64; CPU=mips64el; ENDIAN=little
	  LOADER=lib64/ld.so.1; QEMU=qemu-mips64el ;;
*) die "no cross build for the architecture '$DARCH' (arm64, s390x, ppc64el or mips64el)" ;;
esac
for t in apt-get apt-config dpkg dpkg-deb awk realpath pkg-config $TRIPLE-gcc; do
	command -v "$t" >/dev/null 2>&1 || die "$t is not installed (Debian: contrib/build.sh installs gcc-$TRIPLE)"
done
mkdir -p "$1" || die "cannot make $1"
W=$(cd "$1" && pwd -P)
SR=$W/sysroot
A=$W/apt
SOURCES=${CROSS_SYSROOT_SOURCES:-/etc/apt/sources.list.d/debian.sources}
NATIVE=$(dpkg --print-architecture) || die "dpkg --print-architecture failed"
ARCHS=$NATIVE
[ "$NATIVE" = "$DARCH" ] || ARCHS="$NATIVE,$DARCH"

# The -dev packages the build needs and the runtime libraries behind them.
packages=(
	libc6-dev linux-libc-dev liburing-dev libzstd-dev libxxhash-dev uuid-dev libssl-dev
	libc6 libgcc-s1 liburing2 libzstd1 libxxhash0 libuuid1 libssl3
)

# Debian's cross gcc searches its own /usr/TRIPLE (the cross libc,
# libc6-dev-ARCH-cross, where installed) before any sysroot: -nostdinc
# with gcc's own headers named again, and -B for the start files and
# libraries, make libc, its headers and the kernel's come from the sysroot
# alone, whatever the host has installed.  Only gcc's runtime (crtbegin,
# libgcc) is the compiler's.
GCC_INCLUDE=$($TRIPLE-gcc -print-file-name=include)
[ -f "$GCC_INCLUDE/stddef.h" ] || die "$TRIPLE-gcc has no include directory ($GCC_INCLUDE)"
sr_flags=(--sysroot="$SR" -nostdinc -isystem "$GCC_INCLUDE"
	  -isystem "$SR/usr/include/$TRIPLE" -isystem "$SR/usr/include" -B"$SR/usr/lib/$TRIPLE/")

# The meson cross file and its pkg-config, confined to the sysroot; its
# include and library directories count as system ones there (filtered from
# the flags, as /usr/include is natively), so the sysroot's headers are
# system headers to gcc and no -I puts them before gcc's own.  Written on
# every run (the sysroot may have moved).
write_cross_file() {
	cat > "$W/$TRIPLE-pkg-config" <<EOF
#!/bin/sh
# Written by contrib/cross-sysroot.sh: pkg-config for $SR.
export PKG_CONFIG_SYSROOT_DIR='$SR'
export PKG_CONFIG_LIBDIR='$SR/usr/lib/$TRIPLE/pkgconfig:$SR/usr/share/pkgconfig'
export PKG_CONFIG_SYSTEM_INCLUDE_PATH='$SR/usr/include'
export PKG_CONFIG_SYSTEM_LIBRARY_PATH='$SR/usr/lib/$TRIPLE:$SR/lib/$TRIPLE'
exec pkg-config "\$@"
EOF
	chmod +x "$W/$TRIPLE-pkg-config"
	# meson runs the build's programs (its tests) under qemu-user.
	local wrapper=
	command -v "$QEMU" >/dev/null 2>&1 && wrapper="exe_wrapper = ['$QEMU', '-L', sysroot]"
	cat > "$W/cross-$DARCH.ini.new" <<EOF
# Written by contrib/cross-sysroot.sh: the $FAMILY build against the $DARCH
# sysroot next to this file (Debian's cross gcc; libc and every library from
# the sysroot, found through a pkg-config confined to it).
[constants]
sysroot = '$SR'

[binaries]
c = ['$TRIPLE-gcc', '--sysroot=' + sysroot, '-nostdinc', '-isystem', '$GCC_INCLUDE',
     '-isystem', sysroot + '/usr/include/$TRIPLE', '-isystem', sysroot + '/usr/include',
     '-B' + sysroot + '/usr/lib/$TRIPLE/']
ar = '$TRIPLE-gcc-ar'
strip = '$TRIPLE-strip'
readelf = '$TRIPLE-readelf'
pkgconfig = '$W/$TRIPLE-pkg-config'
$wrapper

[properties]
sys_root = sysroot
pkg_config_libdir = [sysroot + '/usr/lib/$TRIPLE/pkgconfig', sysroot + '/usr/share/pkgconfig']

[host_machine]
system = 'linux'
cpu_family = '$FAMILY'
cpu = '$CPU'
endian = '$ENDIAN'
EOF
	mv "$W/cross-$DARCH.ini.new" "$W/cross-$DARCH.ini"
}

# A link against every library of the sysroot: the cross compiler, the
# sysroot's libc and its symlinks must agree.
check_link() {
	local out=$W/.link-check

	printf '%s\n' '#include <liburing.h>' '#include <zstd.h>' '#include <xxhash.h>' \
		'#include <uuid/uuid.h>' '#include <openssl/evp.h>' '#include <linux/kvm.h>' \
		'int main(void) { struct io_uring r; uuid_t u; uuid_generate(u);' \
		'return io_uring_queue_init(1, &r, 0) + (int)ZSTD_versionNumber() +' \
		'(int)XXH3_64bits(u, 16) + (EVP_sha256() != 0) + KVM_API_VERSION; }' |
		$TRIPLE-gcc "${sr_flags[@]}" -x c - -o "$out" \
			-luring -lzstd -lxxhash -luuid -lcrypto ||
		die "a test program does not link against $SR"
	rm -f "$out"
}

if [ -f "$W/sysroot.stamp" ] && [ -d "$SR" ] && [ "$(cat "$W/sysroot.stamp")" = "${packages[*]}" ]; then
	write_cross_file
	say "$SR is up to date"
	exit 0
fi

# ---- the private apt setup ----
[ -r "$SOURCES" ] || die "cannot read $SOURCES (the system's apt sources, deb822 format)"
rm -rf "$A/etc"
mkdir -p "$A/lists/partial" "$A/cache/archives/partial" "$A/etc/sources.list.d" \
	"$A/etc/apt.conf.d" "$A/etc/preferences.d" "$W/debs" || die "cannot make $A"
: > "$A/status"

# Every "Types: deb" stanza, each URI times each suite, for both architectures.
awk '
function flush(   n, m, i, j, U, S, opt) {
	if (types ~ /(^| )deb( |$)/ && tolower(enabled) != "no" && uris != "" && suites != "") {
		opt = "arch=" archs
		if (signed ~ /^\/[^ ]*$/)
			opt = opt " signed-by=" signed
		n = split(uris, U, " ")
		m = split(suites, S, " ")
		for (i = 1; i <= n; i++)
			for (j = 1; j <= m; j++)
				print "deb [" opt "] " U[i] " " S[j] " " comps
	}
	types = uris = suites = comps = signed = enabled = field = ""
}
function set(f, v) {
	if (f == "types") types = v
	else if (f == "uris") uris = v
	else if (f == "suites") suites = v
	else if (f == "components") comps = v
	else if (f == "signed-by") signed = v
	else if (f == "enabled") enabled = v
}
function get(f) {
	if (f == "types") return types
	if (f == "uris") return uris
	if (f == "suites") return suites
	if (f == "components") return comps
	if (f == "signed-by") return signed
	if (f == "enabled") return enabled
	return ""
}
/^#/ { next }
/^[ \t]*$/ { flush(); next }
/^[ \t]/ {
	v = $0; gsub(/^[ \t]+|[ \t]+$/, "", v)
	if (field != "" && v != ".") set(field, get(field) == "" ? v : get(field) " " v)
	next
}
{
	i = index($0, ":")
	if (!i) next
	field = tolower(substr($0, 1, i - 1))
	v = substr($0, i + 1); gsub(/^[ \t]+|[ \t]+$/, "", v); gsub(/[ \t]+/, " ", v)
	set(field, v)
}
END { flush() }
' archs="$ARCHS" "$SOURCES" > "$A/etc/sources.list"
[ -s "$A/etc/sources.list" ] || die "no deb sources found in $SOURCES"

{
	echo "// Written by contrib/cross-sysroot.sh: this sysroot's own apt state."
	echo "Dir::State::Lists \"$A/lists\";"
	echo "Dir::State::status \"$A/status\";"
	echo "Dir::Cache \"$A/cache\";"
	echo "Dir::Etc::SourceList \"$A/etc/sources.list\";"
	echo "Dir::Etc::SourceParts \"$A/etc/sources.list.d\";"
	echo "Dir::Etc::Parts \"$A/etc/apt.conf.d\";"
	echo "Dir::Etc::Preferences \"/dev/null\";"
	echo "Dir::Etc::PreferencesParts \"$A/etc/preferences.d\";"
	echo "Dir::Etc::main \"/dev/null\";"
	echo "APT::Architecture \"$NATIVE\";"
	echo "APT::Architectures { \"${ARCHS/,/\"; \"}\"; };"
	echo "Acquire::Retries \"2\";"
	echo "// The system's own Acquire settings (proxies, Check-Valid-Until, ...)."
	apt-config dump | grep '^Acquire::' | grep -v '^Acquire::Retries '
} > "$A/apt.conf"
export APT_CONFIG=$A/apt.conf

# An apt failure that says the network or the mirror is out of reach is a
# skip (77); any other is an error.
network_error() {
	grep -qE 'Could not resolve|Temporary failure resolving|Could not connect|Connection failed|Connection timed out|Connection refused|Unable to connect|Network is unreachable|No route to host|Cannot initiate the connection|50[234] |connection timed out' "$1"
}

# A mirror caught in the middle of a sync serves a list that does not match
# its Release file: apt ignores that list and keeps the others.  It is
# tried once more; if it still fails, the packages are taken from the lists
# that did arrive (the download below fails if one is missing).
mirror_syncing() {
	grep -qE 'Mirror sync in progress|Hash Sum mismatch|File has unexpected size' "$1"
}

update() {
	apt-get -q update > "$A/update.log" 2>&1 && ! grep -q '^[WE]: Failed to fetch' "$A/update.log"
}

say "apt-get update (private state under $A)"
if ! update && { ! mirror_syncing "$A/update.log" || { sleep 5; ! update; }; }; then
	if mirror_syncing "$A/update.log" && ! network_error "$A/update.log"; then
		grep '^E: Failed to fetch' "$A/update.log" >&2
		say "warning: a list is mid-sync on the mirror (above); going on with the others"
	else
		cat "$A/update.log" >&2
		network_error "$A/update.log" && unreachable "apt-get update failed (log above)"
		die "apt-get update failed (log above)"
	fi
fi

say "downloading ${#packages[@]} $DARCH packages"
rm -f "$W/debs/"*.deb
if ! (cd "$W/debs" && apt-get -q download "${packages[@]/%/:$DARCH}") > "$A/download.log" 2>&1; then
	cat "$A/download.log" >&2
	network_error "$A/download.log" && unreachable "apt-get download failed (log above)"
	die "apt-get download failed (log above)"
fi
n=$(find "$W/debs" -maxdepth 1 -name "*_$DARCH.deb" | wc -l)
[ "$n" -eq "${#packages[@]}" ] || die "downloaded $n packages of ${#packages[@]} (see $A/download.log)"

# ---- the tree ----
say "unpacking into $SR"
rm -rf "$SR.new"
mkdir -p "$SR.new"
for d in "$W/debs/"*_"$DARCH".deb; do
	dpkg-deb -x "$d" "$SR.new" || die "unpacking $d"
done
# Absolute symlinks (libfoo.so -> /lib/TRIPLE/libfoo.so.1, the
# loader) would point into the build host: each becomes the relative path to
# its target inside the tree.
while IFS= read -r -d '' l; do
	t=$(readlink "$l")
	case $t in
	/*) ln -sfn "$(realpath -m -s --relative-to="$(dirname "$l")" "$SR.new$t")" "$l" ;;
	esac
done < <(find "$SR.new" -type l -print0)
# What the toolchain and a chroot need to find
for f in $LOADER usr/lib/$TRIPLE/libc.so usr/include/stdio.h \
	 usr/include/liburing.h usr/include/$TRIPLE/asm/kvm.h; do
	[ -e "$SR.new/$f" ] || die "$f is missing from the unpacked packages"
done
rm -rf "$SR"
mv "$SR.new" "$SR"
check_link
echo "${packages[*]}" > "$W/sysroot.stamp"
write_cross_file
say "done: $SR ($(du -sh "$SR" | cut -f1)), cross file $W/cross-$DARCH.ini"
