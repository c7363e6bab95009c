#!/bin/bash
# SPDX-License-Identifier: MIT
#
# The Debian package (debian/, README "The Debian package"): the source
# tree copied to a scratch directory (tracked and new files, no build
# directory), `dpkg-buildpackage -us -uc -b` there (nocheck: the build's
# tests are the pure suite, which this suite's own run has covered), lintian
# without errors, then the .deb installed by dpkg into a scratch root (its
# maintainer scripts run too, for that root only) and from the installed
# files: `migratectl --version` and one local migration of a small lab VM.
# Then removal and purge from the scratch root.  This machine's own
# packages and units are not touched.
#
# Skips (77) only when dpkg-buildpackage, debhelper or lintian are missing
# and cannot be installed, or (after every other check) without /dev/kvm.
#
# env: SRCDIR (the source tree), VERSION (meson's project version).
set -u
src=${SRCDIR:?SRCDIR is the source tree}
version=${VERSION:?VERSION is the project version}
export DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8

need=()
command -v dpkg-buildpackage >/dev/null || need+=(dpkg-dev)
command -v dh >/dev/null || need+=(debhelper)
command -v lintian >/dev/null || need+=(lintian)
if [ "${#need[@]}" -gt 0 ] && [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
	echo "installing ${need[*]} (contrib/build.sh's list has them)"
	timeout 600 apt-get install -y --no-install-recommends "${need[@]}" >/dev/null 2>&1 ||
		{ timeout 300 apt-get update >/dev/null 2>&1 &&
		  timeout 600 apt-get install -y --no-install-recommends "${need[@]}" >/dev/null 2>&1; }
fi
for t in dpkg-buildpackage dh lintian; do
	if ! command -v "$t" >/dev/null; then
		echo "$t is missing and could not be installed (run contrib/build.sh as root)"
		exit 77
	fi
done

work=$(mktemp -d /tmp/migratectl-deb.XXXXXX)
trap 'rm -rf "$work"' EXIT
fail=0
bad() { echo "FAIL: $*"; fail=1; }
ok() { echo "ok: $*"; }

# The tree as it is now: tracked and new files (git), or every file; never a
# build directory (any with meson-private) nor a package build's leftovers.
mkdir "$work/src"
skip=$(cd "$src" && find . -mindepth 2 -maxdepth 3 -name meson-private -type d -printf '%h\n' |
	sed 's|^\./||')
skip+=$'\nobj-*\ndebian/migratectl\ndebian/.debhelper\ndebian/tmp'
files() {
	if git -C "$src" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
		git -C "$src" ls-files -c -o --exclude-standard
	else
		(cd "$src" && find . -type f -printf '%P\n')
	fi
}
files | while IFS= read -r f; do
	keep=1
	while IFS= read -r d; do
		[ -n "$d" ] || continue
		# shellcheck disable=SC2053
		case $f in $d/*) keep=0; break ;; esac
	done <<<"$skip"
	[ "$keep" = 1 ] && [ -e "$src/$f" ] && printf '%s\n' "$f"
done >"$work/files"
tar -C "$src" -cf - -T "$work/files" | tar -xf - -C "$work/src"
[ -f "$work/src/debian/control" ] || { bad "the copy of the tree has no debian/control"; exit 1; }

# The package's version is the project's.
deb_version=$(cd "$work/src" && dpkg-parsechangelog -S Version)
[ "$deb_version" = "$version" ] ||
	bad "debian/changelog is at $deb_version but meson.build at $version: add a changelog entry"

start=$(date +%s)
if ! (cd "$work/src" && DEB_BUILD_OPTIONS="nocheck parallel=2" \
	timeout 900 dpkg-buildpackage -us -uc -b >"$work/build.log" 2>&1); then
	tail -40 "$work/build.log"
	bad "dpkg-buildpackage -us -uc -b failed (log above)"
	exit 1
fi
arch=$(dpkg --print-architecture)
deb=$work/migratectl_${deb_version}_$arch.deb
changes=$work/migratectl_${deb_version}_$arch.changes
ok "dpkg-buildpackage -us -uc -b: $(basename "$deb") in $(($(date +%s) - start)) s"
grep -iE '(^|[^-])warning:' "$work/build.log" | grep -v '^dpkg-' | sed 's/^/    build: /'

# lintian: no error; what else it says is printed.
if timeout 300 lintian --fail-on error "$changes" >"$work/lintian.log" 2>&1; then
	ok "lintian: no errors"
else
	bad "lintian reports errors:"
fi
grep -v 'running with root privileges' "$work/lintian.log" | sed 's/^/    /'

# What it installs.
contents=$(dpkg-deb -c "$deb" | awk '{print $6}')
for f in ./usr/bin/migratectl ./usr/share/man/man1/migratectl.1.gz \
	 ./lib/systemd/system/migratectl-agent.service ./lib/systemd/system/migratectl-agent.socket \
	 ./etc/default/migratectl-agent ./etc/libvirt/hooks/qemu.d/50-migratectl \
	 ./etc/migratectl/hook.conf ./usr/share/bash-completion/completions/migratectl; do
	grep -qxF "$f" <<<"$contents" || bad "the package lacks $f"
done
grep -qx './etc/libvirt/hooks/qemu' <<<"$contents" && bad "the package ships hooks/qemu itself"
dpkg-deb -e "$deb" "$work/ctl"
conffiles=$(cat "$work/ctl/conffiles")
for f in /etc/default/migratectl-agent /etc/libvirt/hooks/qemu.d/50-migratectl \
	 /etc/migratectl/hook.conf; do
	grep -qxF "$f" <<<"$conffiles" || bad "$f is not a conffile"
done
# Installing or upgrading neither starts nor restarts (nor stops) the agent:
# only removal stops it (debian/migratectl.prerm).
if grep -qE 'deb-systemd-invoke|systemctl' "$work/ctl/postinst" "$work/ctl/preinst" 2>/dev/null; then
	bad "postinst or preinst starts, restarts or stops a unit"
fi
grep -qE '^if \[ "\$1" = remove \].*' "$work/ctl/prerm" 2>/dev/null ||
	bad "prerm does not stop the agent on removal only"

# Installed by dpkg into a scratch root (dependencies checked against this
# machine below, since the root has none of its own).
root=$work/root
mkdir -p "$root/var/lib/dpkg/info" "$root/var/lib/dpkg/updates"
: >"$root/var/lib/dpkg/status"; : >"$root/var/lib/dpkg/available"
dpkgr=(dpkg --root="$root" --force-script-chrootless --force-depends --log=/dev/null)
if "${dpkgr[@]}" -i "$deb" >"$work/install.log" 2>&1; then
	ok "installed in a scratch root by dpkg -i (maintainer scripts run)"
else
	sed 's/^/    /' "$work/install.log"; bad "dpkg -i into the scratch root failed"
fi
if command -v apt-get >/dev/null; then
	sim=$(apt-get -s install "$deb" 2>&1)
	if grep '^Inst ' <<<"$sim" | grep -qv '^Inst migratectl '; then
		bad "its dependencies are not all on this machine:"; grep '^Inst ' <<<"$sim"
	elif ! grep -q '^Inst migratectl ' <<<"$sim"; then
		bad "apt cannot install it here:"; sed 's/^/    /' <<<"$sim" | tail -5
	fi
fi
ls "$root"/etc/systemd/system/*/migratectl-agent.* >/dev/null 2>&1 &&
	bad "installing enabled a unit: $(ls "$root"/etc/systemd/system/*/migratectl-agent.*)"
grep -qxF 'MIGRATECTL=${MIGRATECTL:-/usr/bin/migratectl}' "$root/etc/libvirt/hooks/qemu.d/50-migratectl" ||
	bad "the installed hook does not run /usr/bin/migratectl"
cmp -s "$root/usr/share/bash-completion/completions/migratectl" \
	"$src/contrib/bash-completion/migratectl" || bad "the installed completion is not contrib's"

# From the installed files.
mig=$root/usr/bin/migratectl
got=$("$mig" --version 2>&1)
[ "$got" = "migratectl $version" ] && ok "installed migratectl --version: $got" ||
	bad "installed migratectl --version says '$got', not 'migratectl $version'"
man -l "$root/usr/share/man/man1/migratectl.1.gz" 2>/dev/null | grep -q 'migratectl' ||
	bad "the installed man page does not render"

if [ -c /dev/kvm ]; then
	if timeout 300 "$mig" start local local --lab mem=64M,vcpus=1,wss=8M --json \
		>"$work/start.json" 2>"$work/start.err" && python3 -c '
import json, sys
j = json.load(open(sys.argv[1]))
assert j["result"] == "completed" and j["owner"] == "destination", j
assert j["verify"]["match"] is True, j["verify"]' "$work/start.json"; then
		ok "installed migratectl start local local: completed and verified"
	else
		bad "installed migratectl start local local:"
		sed 's/^/    /' "$work/start.err" "$work/start.json"
	fi
fi

# Removal keeps the conffiles; purge removes them.
"${dpkgr[@]}" -r migratectl >/dev/null 2>&1 || bad "dpkg -r in the scratch root failed"
[ -e "$mig" ] && bad "dpkg -r left /usr/bin/migratectl"
[ -e "$root/etc/migratectl/hook.conf" ] || bad "dpkg -r removed a conffile"
"${dpkgr[@]}" -P migratectl >/dev/null 2>&1 || bad "dpkg -P in the scratch root failed"
[ -e "$root/etc/libvirt/hooks/qemu.d/50-migratectl" ] && bad "dpkg -P left the hook"

if [ "$fail" -ne 0 ]; then
	exit 1
fi
if [ ! -c /dev/kvm ]; then
	echo "every check passed but the installed migration: it needs /dev/kvm"
	exit 77
fi
echo "the package builds, installs, migrates and goes"
