# SPDX-License-Identifier: MIT
# Sourced by tests/libvirt/hosts.sh and lib.sh.

# Polls "$@" every 0.2 s for at most $1 seconds.
wait_for() {
	local secs=$1 i
	shift
	for ((i = 0; i < secs * 5; i++)); do
		"$@" >/dev/null 2>&1 && return 0
		sleep 0.2
	done
	return 1
}
