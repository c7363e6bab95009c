/* SPDX-License-Identifier: MIT */
/*
 * ssh:// endpoints (client/ssh.c): one ssh connection per remote host
 * (libssh2), its host key checked against known_hosts, and each control
 * connection to the host's agent a channel to the agent's unix socket
 * (direct-streamlocal@openssh.com), bridged to a local socket that the
 * client code uses as it would a unix:// one.  Where no agent listens at
 * that socket, one is started for the connection's lifetime over an exec
 * channel and stopped when the last client lets go.
 */
#ifndef MIGRATE_SSH_H
#define MIGRATE_SSH_H

#include <stdbool.h>

#include <migrate/error.h>
#include <migrate/transport.h>

struct mig_ssh_opts {
	const char *key_file;       /* private key; NULL: ssh-agent, then ~/.ssh/id_* */
	const char *known_hosts;    /* NULL: ~/.ssh/known_hosts */
	const char *remote_cmd;     /* the remote migratectl; NULL: "migratectl" on its PATH */
};

/* For every ssh:// endpoint this process opens from now on (a command's
 * options; the strings must outlive the command). */
void mig_ssh_configure(const struct mig_ssh_opts *o);

struct mig_ssh;

/* Connects, checks the host key, authenticates: a new connection with one
 * reference.  Nothing is accepted silently: an unknown or changed host key
 * is refused with its fingerprint. */
int mig_ssh_open(const struct xport_endpoint *ep, struct mig_ssh **ret, struct mig_error *err);
struct mig_ssh *mig_ssh_ref(struct mig_ssh *s);
/* The last reference stops an agent started for it and disconnects. */
void mig_ssh_unref(struct mig_ssh *s);
/* A new connection to the remote agent: a local socket (close it to end
 * the channel), or -errno.  Starts the agent first when none listens. */
int mig_ssh_connect_agent(struct mig_ssh *s, struct mig_error *err);
/* --tunnel: sshd at `from`'s host listens on 127.0.0.1 (*ret_port), and
 * each connection to it is carried through both ssh connections to
 * 127.0.0.1:to_port at `to`'s host.  It lasts as long as `from`. */
int mig_ssh_tunnel(struct mig_ssh *from, struct mig_ssh *to, int to_port, int *ret_port,
		   struct mig_error *err);
/* false once the ssh connection is lost (a new mig_ssh_open() is needed). */
bool mig_ssh_alive(struct mig_ssh *s);
/* The remote socket connections go to ("" before the first one). */
const char *mig_ssh_agent_path(const struct mig_ssh *s);

#endif
