/* SPDX-License-Identifier: MIT */
/*
 * The local cluster of a chaos run (`migratectl chaos --local N`) in
 * network namespaces: each agent in a namespace of its own, "mcc<PID>-<i>"
 * (PID: the runner's), with one veth pair to a bridge "mcc<PID>br" in the
 * root namespace.  Agent i has 10.X.Y.(i+1)/24 on its end ("eth0"); the
 * bridge has 10.X.Y.254, so the runner, in the root namespace, reaches
 * every agent's control port, and the agents reach each other through the
 * bridge.  Migration streams then cross a real link that a fault can cut,
 * shape or blackhole.
 *
 * The bridge is in the root namespace rather than in a hub namespace: the
 * runner needs a route to every agent anyway, and a hub would need one
 * more veth pair and a route into it; one bridge is one more object to
 * delete, which teardown and reap_stale do by name.
 *
 * Everything is made with the `ip`, `tc` and `iptables` programs, run
 * without a shell; a failure's message holds the program's stderr.  Needs
 * root (CAP_NET_ADMIN and CAP_SYS_ADMIN); without it, setup fails with
 * -EPERM and the runner falls back to plain processes.
 */
#ifndef MIGRATE_NETNS_H
#define MIGRATE_NETNS_H

#include <stdint.h>
#include <sys/types.h>

#include <migrate/error.h>

struct chaos_cluster_net;

/* At most this many agents: their addresses are .1 to .N of one /24. */
#define CHAOS_NETNS_MAX 200

/*
 * Creates N namespaces, the bridge, a veth pair per namespace, the
 * addresses, and brings lo and the links up.  The /24 is the first of
 * 10.237.Y.0/24 (Y from the runner's PID on) that no route or address of
 * this host overlaps.  -EPERM when not root, -ENOTSUP when this host has
 * no `ip` or no network namespaces; on failure nothing is left behind.
 */
int chaos_netns_setup(unsigned n, struct chaos_cluster_net **ret, struct mig_error *err);

unsigned chaos_netns_count(const struct chaos_cluster_net *c);
/* Agent i's address ("10.237.Y.(i+1)"), NULL for i out of range. */
const char *chaos_netns_addr(const struct chaos_cluster_net *c, unsigned i);
/* The root namespace's address on the bridge ("10.237.Y.254"). */
const char *chaos_netns_bridge_addr(const struct chaos_cluster_net *c);
/* Namespace i's name ("mcc<PID>-<i>"), as `ip netns` shows it. */
const char *chaos_netns_name(const struct chaos_cluster_net *c, unsigned i);

/*
 * fork()s and execvp()s argv inside namespace i (only the network
 * namespace changes: the child sees the host's files and /sys), stdout and
 * stderr on the given fds (-1: /dev/null), stdin /dev/null.  Returns the
 * child's pid once exec succeeded, or -errno with the cause (exec's errno
 * included).  The caller reaps it; kill agents before teardown, since a
 * namespace with processes in it outlives its name.
 */
pid_t chaos_netns_spawn(const struct chaos_cluster_net *c, unsigned i, char *const argv[],
			int stdout_fd, int stderr_fd, struct mig_error *err);

/*
 * Faults on agent i's link, each undone by chaos_netns_heal():
 *   DOWN   its veth down: nothing crosses, connections stall;
 *   RATE   tbf on both ends of its veth: `arg` bytes/s each way;
 *   DROP   TCP to or from port `arg` (0: any) silently dropped in its
 *          namespace (iptables);
 *   RESET  the same traffic answered with a TCP reset (iptables REJECT).
 * DROP and RESET are -ENOTSUP where iptables does not work in a
 * namespace (chaos_netns_supported()).  Faults add up until heal.
 */
enum chaos_link_fault {
	CHAOS_LINK_DOWN = 1,
	CHAOS_LINK_RATE,
	CHAOS_LINK_DROP,
	CHAOS_LINK_RESET,
	CHAOS_LINK_FAULT_MAX,
};
const char *chaos_link_fault_to_string(enum chaos_link_fault f);
int chaos_link_fault_from_string(const char *s);

int chaos_netns_fault(struct chaos_cluster_net *c, unsigned i, enum chaos_link_fault f,
		      uint64_t arg, struct mig_error *err);
/* Undoes every fault on agent i's link: up, no shaping, no rules. */
int chaos_netns_heal(struct chaos_cluster_net *c, unsigned i, struct mig_error *err);
/* The faults this host can make, as a bitmask of 1 << fault (for the report). */
unsigned chaos_netns_supported(const struct chaos_cluster_net *c);

/*
 * Deletes the namespaces, veths and bridge (the rules go with their
 * namespace).  Goes on past failures and does nothing the second time, so
 * the runner may call it from its normal path and again from an atexit or
 * signal path: it allocates nothing, and only forks, execs and waits.
 * NULL is a no-op.
 */
void chaos_netns_teardown(struct chaos_cluster_net *c);
/* Tears down (if not yet) and frees c. */
void chaos_netns_free(struct chaos_cluster_net *c);
/* Deletes the namespaces, veths and bridges named for a runner PID that
 * no longer exists (one killed before its teardown). */
void chaos_netns_reap_stale(void);

#endif
