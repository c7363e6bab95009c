#!/bin/bash
# SPDX-License-Identifier: MIT
#
# Two libvirt "hosts", A and B, on one machine (docs/libvirt.md):
# each a root libvirtd in a mount namespace of its own, where private
# copies are bind-mounted over /etc/libvirt, /run/libvirt, /var/lib/libvirt,
# /var/cache/libvirt and /var/log/libvirt, and where one path, DIR/run (the
# migration sockets' run dir) and DIR/disk (the domains' disks), shows the
# host's own DIR/X/mig and DIR/X/disk: the same path on both hosts, each
# host seeing its own files.  The machine's own libvirt files are only read.
#
# usage: hosts.sh setup DIR
#        hosts.sh start-libvirtd DIR X
#        hosts.sh start-agent DIR X [AGENT-ARGS...]   ($MIGRATECTL: the binary;
#                                                      $SUPERVISE=1: restarted
#                                                      whenever it dies, as
#                                                      systemd's Restart= would)
#        hosts.sh install-hook DIR X [CONF-LINES...]  ($MIGRATECTL: the binary)
#        hosts.sh uri DIR X
#        hosts.sh virsh DIR X VIRSH-ARGS...
#        hosts.sh disk DIR X NAME [MEM_MIB]            (the guest's disk on X only)
#        hosts.sh guest DIR X NAME [MEM_MIB]           ($GUEST_CPU: a <cpu> element,
#                                                      $GUEST_DEVICES: more devices,
#                                                      $GUEST_BUSY=1|2: one that never pauses)
#        hosts.sh stop DIR
# X is A or B.  Every wait is bounded; errors say what failed and where the
# log is.
set -eu

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

die() {
	echo "hosts.sh: $*" >&2
	exit 1
}

. "$here/poll.sh"

host_dir() {
	[ "$2" = A ] || [ "$2" = B ] || die "host '$2': give A or B"
	[ -d "$1/$2/etc" ] || die "$1/$2 is not set up (hosts.sh setup $1)"
	echo "$1/$2"
}

uri() {
	echo "qemu+unix:///system?socket=$1/$2/sock/libvirt-sock"
}

vsh() {
	local dir=$1 x=$2
	shift 2
	timeout 60 virsh -q -c "$(uri "$dir" "$x")" "$@"
}

# Polls like wait_for, but gives up early once process $2 is gone.
wait_while_alive() {
	local secs=$1 pid=$2 i
	shift 2
	for ((i = 0; i < secs * 5; i++)); do
		"$@" >/dev/null 2>&1 && return 0
		kill -0 "$pid" 2>/dev/null || return 1
		sleep 0.2
	done
	return 1
}

# The pid in file $1 when that process is alive and its command line
# contains $2 (a recycled pid is someone else's).
live_pid() {
	local pid
	[ -f "$1" ] || return 1
	pid=$(cat "$1" 2>/dev/null) || return 1
	[ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] || return 1
	tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "$2" || return 1
	echo "$pid"
}

# Ends the process whose pid is in $1 (if it is still $2): TERM, up to
# $3 s, then KILL.
end_pid() {
	local file=$1 what=$2 secs=$3 pid
	pid=$(live_pid "$file" "$what") || { rm -f "$file"; return 0; }
	kill -TERM "$pid" 2>/dev/null || true
	if ! wait_for "$secs" eval "! kill -0 $pid"; then
		echo "hosts.sh: $what $pid did not end in ${secs}s: killing it" >&2
		kill -KILL "$pid" 2>/dev/null || true
		wait_for 10 eval "! kill -0 $pid" || echo "hosts.sh: $pid still there" >&2
	fi
	rm -f "$file"
}

cmd_setup() {
	local dir=$1 x d uuid
	[ "$(id -u)" = 0 ] || die "setup needs root (two root libvirtd)"
	for p in /etc/libvirt /var/lib/libvirt /var/cache/libvirt /var/log/libvirt; do
		[ -d "$p" ] || die "$p missing: install libvirt-daemon-system"
	done
	mkdir -p "$dir"
	dir=$(cd "$dir" && pwd)
	# The mount points of the per-host paths: empty here, each host's own
	# directory in its namespace.
	mkdir -p "$dir/run" "$dir/disk"
	for x in A B; do
		d=$dir/$x
		if live_pid "$d/libvirtd.pid" libvirtd >/dev/null; then
			die "$x's libvirtd is running: hosts.sh stop $dir first"
		fi
		rm -rf "$d"
		mkdir -p "$d"/{run,lib,cache,log/qemu,sock,mig,disk}
		cp -a /etc/libvirt "$d/etc"
		cp -a /var/lib/libvirt/. "$d/lib/"
		cp -a /var/cache/libvirt/. "$d/cache/"
		# No network may start with the daemon: both would create
		# the same bridge on the one machine.
		rm -f "$d"/etc/qemu/networks/autostart/*
		# Equal host UUIDs make libvirt refuse the migration ("the
		# same host").
		if [ "$x" = A ]; then
			uuid=6d69672d-6c76-4000-8000-00000000000a
		else
			uuid=6d69672d-6c76-4000-8000-00000000000b
		fi
		cat >>"$d/etc/libvirtd.conf" <<-EOF

		# hosts.sh: host $x
		unix_sock_dir = "$d/sock"
		unix_sock_rw_perms = "0700"
		auth_unix_rw = "none"
		auth_unix_ro = "none"
		host_uuid = "$uuid"
		log_filters = "1:util.hook 1:qemu.qemu_migration 3:*"
		log_outputs = "1:file:$d/libvirtd.log"
		EOF
		# This machine: /dev/kvm is root's, there is no virtlogd nor
		# systemd, and without systemd both daemons would create the
		# same machine/qemu-1-NAME cgroup.
		cat >>"$d/etc/qemu.conf" <<-EOF

		# hosts.sh: host $x
		user = "root"
		group = "root"
		stdio_handler = "file"
		cgroup_controllers = [ ]
		EOF
		mkdir -p "$d/etc/hooks/qemu.d"
		rm -f "$d"/etc/hooks/qemu "$d"/etc/hooks/qemu.d/*
		echo "$x" >"$d/etc/hosts-sh-name"
	done
	echo "hosts.sh: A and B set up in $dir"
}

cmd_start_libvirtd() {
	local dir=$1 x=$2 d pid
	d=$(host_dir "$dir" "$x")
	live_pid "$d/libvirtd.pid" libvirtd >/dev/null && die "$x's libvirtd already runs"
	command -v libvirtd >/dev/null || [ -x /usr/sbin/libvirtd ] || die "no libvirtd"
	# The package creates it with the daemon; the bind mount needs it.
	[ -d /run/libvirt ] || mkdir -p /run/libvirt
	rm -f "$d/sock/libvirt-sock" "$d/libvirtd.pid"
	unshare --mount --propagation private -- sh -c '
		d=$1 dir=$2
		mount --bind "$d/etc" /etc/libvirt &&
		mount --bind "$d/run" /run/libvirt &&
		mount --bind "$d/lib" /var/lib/libvirt &&
		mount --bind "$d/cache" /var/cache/libvirt &&
		mount --bind "$d/log" /var/log/libvirt &&
		mount --bind "$d/mig" "$dir/run" &&
		mount --bind "$d/disk" "$dir/disk" &&
		exec /usr/sbin/libvirtd --config /etc/libvirt/libvirtd.conf \
			--pid-file "$d/libvirtd.pid"' sh "$d" "$dir" \
		>"$d/libvirtd.stdout" 2>&1 </dev/null &
	pid=$!
	# Start-up probes QEMU's capabilities: allow a minute.
	if ! wait_while_alive 60 "$pid" vsh "$dir" "$x" version; then
		kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
		tail -5 "$d/libvirtd.stdout" "$d/libvirtd.log" >&2 2>/dev/null || true
		die "$x's libvirtd did not answer on $(uri "$dir" "$x") (ended, or 60 s passed)" \
			"(logs: $d/libvirtd.stdout, $d/libvirtd.log)"
	fi
	[ "$(cat "$d/libvirtd.pid" 2>/dev/null)" = "$pid" ] || echo "$pid" >"$d/libvirtd.pid"
	echo "hosts.sh: $x's libvirtd runs (pid $pid, $(uri "$dir" "$x"))"
}

libvirtd_pid() {
	live_pid "$1/$2/libvirtd.pid" libvirtd || die "$2's libvirtd is not running"
}

cmd_start_agent() {
	local dir=$1 x=$2 d lpid pid
	shift 2
	d=$(host_dir "$dir" "$x")
	[ -n "${MIGRATECTL:-}" ] && [ -x "$MIGRATECTL" ] || die "set MIGRATECTL to the migratectl binary"
	lpid=$(libvirtd_pid "$dir" "$x")
	live_pid "$d/agent.pid" " agent " >/dev/null && die "$x's agent already runs"
	rm -f "$d/agent.sock"
	# In the host's mount namespace: its libvirt run dir and the shared
	# path are the host's own there.  Supervised, a shell starts it again
	# 0.2 s after each death, and takes it down when itself is stopped.
	set -- --listen "unix://$d/agent.sock" --libvirt "$(uri "$dir" "$x")" \
		--libvirt-run-dir "$dir/run" --journal "$d/journal.jsonl" "$@"
	if [ "${SUPERVISE:-0}" = 1 ]; then
		nsenter -t "$lpid" -m -- bash -c 'trap "kill \$c 2>/dev/null; exit 0" TERM
			while :; do "$0" agent "$@" & c=$!; wait $c; sleep 0.2; done' \
			"$MIGRATECTL" "$@" >>"$d/agent.log" 2>&1 </dev/null &
	else
		nsenter -t "$lpid" -m -- "$MIGRATECTL" agent "$@" >>"$d/agent.log" 2>&1 </dev/null &
	fi
	pid=$!
	echo "$pid" >"$d/agent.pid"
	if ! wait_while_alive 30 "$pid" test -S "$d/agent.sock"; then
		tail -5 "$d/agent.log" >&2 || true
		kill -KILL "$pid" 2>/dev/null || true
		die "$x's agent did not listen on $d/agent.sock (ended, or 30 s passed; log: $d/agent.log)"
	fi
	echo "hosts.sh: $x's agent runs (pid $pid, unix://$d/agent.sock)"
}

cmd_install_hook() {
	local dir=$1 x=$2 d lpid line install
	shift 2
	d=$(host_dir "$dir" "$x")
	[ -n "${MIGRATECTL:-}" ] && [ -x "$MIGRATECTL" ] || die "set MIGRATECTL to the migratectl binary"
	lpid=$(libvirtd_pid "$dir" "$x")
	{
		echo "# hosts.sh: host $x's migratectl hook"
		echo "agent = unix://$d/agent.sock"
		for line in "$@"; do
			echo "$line"
		done
	} >"$d/hook.conf"
	# The product's wrapper, from contrib/libvirt/install.sh into a
	# scratch root; libvirtd passes hooks no environment of ours, so the
	# config's path (not the machine's /etc/migratectl/hook.conf) is
	# written into the wrapper, as a site with its config elsewhere would.
	install=$here/../../contrib/libvirt/install.sh
	if [ -f "$install" ]; then
		rm -rf "$d/hookroot"
		DESTDIR=$d/hookroot sh "$install" --bin "$MIGRATECTL" >"$d/hook-install.log" 2>&1 ||
			die "contrib/libvirt/install.sh failed (log: $d/hook-install.log)"
		sed "1a MIGRATECTL_HOOK_CONF='$d/hook.conf'" \
			"$d/hookroot/etc/libvirt/hooks/qemu.d/50-migratectl" \
			>"$d/etc/hooks/qemu.d/50-migratectl"
	else
		# TODO: a tree without contrib/libvirt: the same kind of wrapper.
		cat >"$d/etc/hooks/qemu.d/50-migratectl" <<-EOF
		#!/bin/sh
		exec "$MIGRATECTL" hook --config "$d/hook.conf" "\$@"
		EOF
	fi
	chmod 755 "$d/etc/hooks/qemu.d/50-migratectl"
	# libvirtd caches which drivers have hooks; SIGHUP makes it look again.
	kill -HUP "$lpid"
	wait_for 30 vsh "$dir" "$x" version || die "$x's libvirtd stopped answering after SIGHUP"
	echo "hosts.sh: hook installed on $x ($d/hook.conf)"
}

# The guest's boot sector, assembled once per DIR.
build_guest() {
	local dir=$1
	[ -s "$dir/guest.bin" ] && return 0
	gcc -m32 -c -o "$dir/guest.o" "$here/guest.S" || die "cannot assemble $here/guest.S"
	ld -m elf_i386 -Ttext=0x7c00 -e _start --oformat=binary -o "$dir/guest.bin" "$dir/guest.o" ||
		die "cannot link the guest"
	[ "$(stat -c %s "$dir/guest.bin")" = 512 ] || die "the guest is not one 512-byte sector"
}

# The ballast: all of the guest's memory but 8 MiB (the BIOS's, the region's).
ballast_mib() {
	local mem=$1
	if [ "$mem" -gt 16 ]; then echo $((mem - 8)); else echo 0; fi
}

cmd_disk() {
	local dir=$1 x=$2 name=$3 mem=${4:-32} d img b
	d=$(host_dir "$dir" "$x")
	build_guest "$dir"
	img=$d/disk/$name.img
	b=$(ballast_mib "$mem")
	rm -f "$img"
	truncate -s 1M "$img"
	dd if="$dir/guest.bin" of="$img" conv=notrunc status=none
	# ballast_mib: the little-endian dword at offset 0x1f8
	printf "$(printf '\\%03o\\%03o\\%03o\\%03o' $((b & 255)) $((b >> 8 & 255)) 0 0)" |
		dd of="$img" bs=1 seek=504 conv=notrunc status=none
	# GUEST_BUSY=1 or 2: the byte at 0x1fc, a guest that never pauses
	# between passes, with a region of 64 or 128 pages
	case ${GUEST_BUSY:-0} in
	0) ;;
	1|2) printf "\\00${GUEST_BUSY}" | dd of="$img" bs=1 seek=508 conv=notrunc status=none ;;
	*) die "GUEST_BUSY=$GUEST_BUSY: 1 or 2" ;;
	esac
}

cmd_guest() {
	local dir=$1 x=$2 name=$3 mem=${4:-32} d xml
	d=$(host_dir "$dir" "$x")
	libvirtd_pid "$dir" "$x" >/dev/null
	cmd_disk "$dir" "$x" "$name" "$mem"
	rm -f "$d/$name.console"
	xml=$d/$name.xml
	# The disk is read-only: libvirt refuses to migrate a writable disk
	# on a local file system without a copy of it
	# (VIR_MIGRATE_NON_SHARED_DISK) or VIR_MIGRATE_UNSAFE ("Migration
	# without shared storage is unsafe").  virtio, because QEMU's IDE
	# disks cannot be read-only and SeaBIOS's floppy boot, waiting on
	# interrupts, fails now and then under this host's slow emulation.
	# The guest never reads it after the boot.
	# The console appends: a migration that keeps the path writes on
	# after the source's lines, and the file tells the whole run.
	cat >"$xml" <<-EOF
	<domain type='kvm'>
	  <name>$name</name>
	  <memory unit='MiB'>$mem</memory>
	  <vcpu>1</vcpu>
	  ${GUEST_CPU:-}
	  <os><type arch='x86_64' machine='pc'>hvm</type><boot dev='hd'/></os>
	  <clock offset='utc'/>
	  <on_poweroff>destroy</on_poweroff>
	  <on_reboot>destroy</on_reboot>
	  <on_crash>destroy</on_crash>
	  <devices>
	    <emulator>/usr/bin/qemu-system-x86_64</emulator>
	    <disk type='file' device='disk'>
	      <driver name='qemu' type='raw'/>
	      <source file='$dir/disk/$name.img'/>
	      <target dev='vda' bus='virtio'/>
	      <readonly/>
	    </disk>
	    <serial type='file'>
	      <source path='$d/$name.console' append='on'/>
	      <target port='0'/>
	    </serial>
	    <memballoon model='none'/>
	    ${GUEST_DEVICES:-}
	  </devices>
	</domain>
	EOF
	vsh "$dir" "$x" create "$xml" >/dev/null || die "virsh create $xml on $x failed (log: $d/libvirtd.log)"
	echo "hosts.sh: $name runs on $x ($mem MiB, console $d/$name.console)"
}

cmd_stop() {
	local dir=$1 x d name f
	[ -d "$dir" ] || return 0
	for x in A B; do
		d=$dir/$x
		[ -d "$d" ] || continue
		end_pid "$d/agent.pid" " agent " 10
		if live_pid "$d/libvirtd.pid" libvirtd >/dev/null; then
			for name in $(vsh "$dir" "$x" list --name 2>/dev/null); do
				vsh "$dir" "$x" destroy "$name" >/dev/null 2>&1 || true
			done
		fi
		end_pid "$d/libvirtd.pid" libvirtd 20
		# QEMUs the daemon left behind (it was killed, or a destroy
		# failed): libvirt's own pid files.
		for f in "$d"/run/qemu/*.pid; do
			[ -f "$f" ] && end_pid "$f" qemu-system 10
		done
	done
	echo "hosts.sh: stopped the hosts in $dir (logs kept)"
}

[ $# -ge 2 ] || die "usage: hosts.sh setup|start-libvirtd|start-agent|install-hook|uri|virsh|disk|guest|stop DIR [X ...]"
cmd=$1
dir=$2
shift 2
[ -d "$dir" ] || [ "$cmd" = setup ] || [ "$cmd" = stop ] || die "$dir: no such directory"
[ -d "$dir" ] && dir=$(cd "$dir" && pwd)
case $cmd in
setup) cmd_setup "$dir" ;;
start-libvirtd) [ $# = 1 ] || die "usage: start-libvirtd DIR X"; cmd_start_libvirtd "$dir" "$1" ;;
start-agent) [ $# -ge 1 ] || die "usage: start-agent DIR X [ARGS...]"; cmd_start_agent "$dir" "$@" ;;
install-hook) [ $# -ge 1 ] || die "usage: install-hook DIR X [CONF-LINES...]"; cmd_install_hook "$dir" "$@" ;;
uri) [ $# = 1 ] || die "usage: uri DIR X"; host_dir "$dir" "$1" >/dev/null; uri "$dir" "$1" ;;
virsh) [ $# -ge 2 ] || die "usage: virsh DIR X ARGS..."; host_dir "$dir" "$1" >/dev/null; vsh "$dir" "$@" ;;
disk) [ $# -ge 2 ] || die "usage: disk DIR X NAME [MEM_MIB]"; cmd_disk "$dir" "$@" ;;
guest) [ $# -ge 2 ] || die "usage: guest DIR X NAME [MEM_MIB]"; cmd_guest "$dir" "$@" ;;
stop) cmd_stop "$dir" ;;
*) die "unknown command '$cmd'" ;;
esac
