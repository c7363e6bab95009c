#!/bin/sh
# Installs migratectl's libvirt qemu hook (docs/libvirt.md):
#   /etc/libvirt/hooks/qemu.d/50-migratectl   the hook (replaced if there)
#   /etc/migratectl/hook.conf                 the example, only if there is none
# A site's own /etc/libvirt/hooks/qemu is never replaced or edited: libvirt
# runs it first and the qemu.d files after it.
#
# usage: install.sh [--bin PATH]   (PATH: the migratectl binary; default:
#        the one on PATH).  DESTDIR=DIR installs under DIR instead of /.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
root=${DESTDIR:-}
bin=

while [ $# -gt 0 ]; do
	case $1 in
	--bin) bin=${2:?--bin needs a path}; shift 2 ;;
	*) echo "install.sh: unknown argument '$1' (usage: install.sh [--bin PATH])" >&2; exit 2 ;;
	esac
done
if [ -z "$bin" ]; then
	bin=$(command -v migratectl || true)
	if [ -z "$bin" ]; then
		echo "install.sh: no migratectl on PATH: give its path with --bin" >&2
		exit 1
	fi
fi
case $bin in
/*) ;;
*) echo "install.sh: --bin $bin: an absolute path (libvirtd runs the hook with its own PATH)" >&2
   exit 2 ;;
esac

hooks=$root/etc/libvirt/hooks
new_dir=no
[ -d "$hooks/qemu.d" ] || new_dir=yes
mkdir -p "$hooks/qemu.d"
tmp=$hooks/qemu.d/.50-migratectl.tmp
sed "s|@MIGRATECTL@|$bin|" "$here/50-migratectl" > "$tmp"
chmod 0755 "$tmp"
mv -f "$tmp" "$hooks/qemu.d/50-migratectl"
echo "installed $hooks/qemu.d/50-migratectl (runs $bin hook)"
if [ -e "$hooks/qemu" ]; then
	echo "left $hooks/qemu as it is: libvirt runs it before the qemu.d hooks"
fi

mkdir -p "$root/etc/migratectl"
if [ -e "$root/etc/migratectl/hook.conf" ]; then
	echo "kept $root/etc/migratectl/hook.conf"
else
	cp "$here/hook.conf.example" "$root/etc/migratectl/hook.conf"
	chmod 0644 "$root/etc/migratectl/hook.conf"
	echo "installed $root/etc/migratectl/hook.conf (the example: every line commented out)"
fi

if [ "$new_dir" = yes ]; then
	echo "$hooks/qemu.d is new: libvirtd looks for a driver's hooks only when it starts" \
	     "or gets SIGHUP; send it one (kill -HUP \$(pidof libvirtd)) or restart it"
fi
