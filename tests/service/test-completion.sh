#!/bin/bash
# SPDX-License-Identifier: MIT
#
# contrib/bash-completion/migratectl against the program: every command
# that cli/main.c dispatches and every long option each command parses
# (its getopt table in cli/ or backends/lab/) is offered, and a few values
# and endpoints complete as documented.  Runs the completion function in
# bash; needs neither the bash-completion package nor a build.
#
# env: SRCDIR (the source tree).
set -u
src=${SRCDIR:?SRCDIR is the source tree}
# shellcheck source=/dev/null
source "$src/contrib/bash-completion/migratectl" || exit 1
fail=0

# What the completion offers for the words given, the last one being
# completed.
offers() {
	COMP_WORDS=(migratectl "$@")
	COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
	_migratectl
	printf '%s\n' "${COMPREPLY[@]}"
}
# The long options of a getopt table in FILE.
options_of() {
	grep -oE '\{ "[a-z0-9-]+", (no|required|optional)_argument' "$1" |
		sed -E 's/\{ "([^"]+)".*/--\1/'
}
expect() { # WHAT WANTED-WORD OFFERED-LIST
	grep -qxF -- "$2" <<<"$3" || { echo "FAIL: $1: '$2' is not offered"; fail=1; }
}

# The commands main() dispatches.
top=$(offers "")
for c in $(grep -oE 'strcmp\(argv\[1\], "[a-z-]+"\)' "$src/cli/main.c" |
	   sed -E 's/.*"([a-z-]+)".*/\1/'); do
	case $c in help|-h) continue ;; esac
	expect "migratectl <TAB>" "$c" "$top"
done

check_cmd() { # FILE WORDS...
	local file=$1; shift
	local got; got=$(offers "$@" --)
	for o in $(options_of "$file"); do
		expect "migratectl $* --<TAB> ($file)" "$o" "$got"
	done
}
check_cmd "$src/cli/cmd-start.c" start
check_cmd "$src/cli/cmd-agent.c" agent
check_cmd "$src/cli/cmd-cancel.c" cancel
check_cmd "$src/cli/cmd-check.c" check
check_cmd "$src/cli/cmd-migrations.c" migrations
check_cmd "$src/cli/cmd-journal.c" journal
check_cmd "$src/cli/cmd-hook.c" hook
check_cmd "$src/cli/cmd-chaos.c" chaos
check_cmd "$src/backends/lab/lab-run.c" vm run
# vm's remote commands share one table: each option is offered by one of them.
vm_all=$(for s in create list destroy resume discard; do offers vm "$s" --; done)
for o in $(options_of "$src/cli/cmd-vm.c"); do
	expect "migratectl vm create|list|destroy|resume|discard --<TAB>" "$o" "$vm_all"
done
for s in $(grep -oE 'strcmp\(argv\[1\], "[a-z]+"\)' "$src/cli/cmd-vm.c" |
	   sed -E 's/.*"([a-z]+)".*/\1/'); do
	expect "migratectl vm <TAB>" "$s" "$(offers vm "")"
done

# Values and endpoints.
expect "start --checksum <TAB>" pages "$(offers start local --checksum "")"
expect "start --compress <TAB>" zstd "$(offers start --compress "")"
expect "agent --listen <TAB>" unix:/// "$(offers agent --listen "")"
expect "start <TAB> (SRC)" local "$(offers start "")"
expect "start local <TAB> (DST)" tcp:// "$(offers start local "")"
expect "start --streams 2 local <TAB> (DST)" local "$(offers start --streams 2 local "")"
[ -z "$(offers start local local "")" ] || {
	echo "FAIL: start SRC DST <TAB> offers a third endpoint"; fail=1; }
expect "vm list <TAB>" local "$(offers vm list "")"

[ "$fail" -eq 0 ] && echo "ok: every command and option of cli/ completes"
exit "$fail"
