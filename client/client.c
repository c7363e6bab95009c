// SPDX-License-Identifier: MIT
/*
 * The client side of the control protocol: reach an agent (starting a
 * private one for "local"), prove the key, make requests.
 */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <migrate/agent.h>
#include <migrate/engine.h>
#include <migrate/ssh.h>
#include <migrate/wire-order.h>

#include "util.h"

#define CONNECT_TIMEOUT_MS 10000
#define CALL_TIMEOUT_MS 600000

/* "local": a private agent on a unix socket in a fresh directory; it dies
 * with us (PR_SET_PDEATHSIG) if we die first. */
static int spawn_local(struct mig_client *c, struct mig_error *err)
{
	int p[2];
	char ready_arg[16], c_buf;
	pid_t pid;
	ssize_t n;

	/* $TMPDIR when it is absolute and short enough for the directory's
	 * name (c->tmpdir) and the socket's (sun_path), else /tmp */
	const char *tmp = getenv("TMPDIR");

	if (!tmp || tmp[0] != '/' || strlen(tmp) > 40)
		tmp = "/tmp";
	snprintf(c->tmpdir, sizeof(c->tmpdir), "%s/migratectl-XXXXXX", tmp);
	if (!mkdtemp(c->tmpdir))
		return mig_error_set(err, -errno, "creating a directory for a local agent: %s",
				     strerror(errno));
	snprintf(c->url, sizeof(c->url), "unix://%s/agent.sock", c->tmpdir);
	if (pipe2(p, O_CLOEXEC) < 0)
		return mig_error_set(err, -errno, "pipe: %s", strerror(errno));
	pid = fork();
	if (pid < 0) {
		close(p[0]);
		close(p[1]);
		return mig_error_set(err, -errno, "fork: %s", strerror(errno));
	}
	if (pid == 0) {
		sigset_t all;

		sigemptyset(&all);
		sigprocmask(SIG_SETMASK, &all, NULL);
		/* Its own process group: a Ctrl-C on the terminal goes to the
		 * command, which turns it into a cancel; the agent must live on
		 * to roll back.  It still ends with the command. */
		setpgid(0, 0);
		prctl(PR_SET_PDEATHSIG, SIGTERM);
		close(p[0]);
		fcntl(p[1], F_SETFD, 0);
		snprintf(ready_arg, sizeof(ready_arg), "%d", p[1]);
		execl("/proc/self/exe", "migratectl", "agent", "--listen", c->url, "--ready-fd",
		      ready_arg, "--quiet", (char *)NULL);
		_exit(127);
	}
	close(p[1]);
	c->child = pid;
	do
		n = read(p[0], &c_buf, 1);
	while (n < 0 && errno == EINTR);
	close(p[0]);
	if (n != 1)
		return mig_error_set(err, -ECHILD, "the local agent did not start");
	return 0;
}

static int handshake(struct mig_client *c, const char *key_file, struct mig_error *err)
{
	struct mig_hello h = { .role = MIG_ROLE_CLIENT };
	struct mig_frame_hdr fh;
	struct mig_buf pl = { 0 }, key = { 0 };
	struct mig_auth_challenge ch;
	struct mig_auth_response resp;
	struct mig_auth_proof proof;
	uint8_t want[XPORT_MAC_LEN];
	int r;

	snprintf(h.software, sizeof(h.software), "migratectl client");
	mig_wire_le(&mig_wl_hello, &h, 1);
	r = xport_conn_send(&c->conn, MIG_FRAME_HELLO, 0, &h, sizeof(h), err);
	if (r < 0) {
		/* An agent that refuses a connection says why and closes before
		 * our HELLO arrives: its ERROR may be waiting to be read. */
		struct mig_error why = *err;

		if (xport_conn_recv(&c->conn, &fh, &pl, 1000, NULL) < 0 ||
		    fh.type != MIG_FRAME_ERROR) {
			*err = why;
			goto out;
		}
		mig_error_clear(err);
		r = 0;
	} else {
		r = xport_conn_recv(&c->conn, &fh, &pl, CONNECT_TIMEOUT_MS, err);
	}
	if (r < 0)
		goto out;
	if (fh.type == MIG_FRAME_ERROR) {
		/* refused before the handshake: busy, or not allowed to connect */
		struct mig_error_msg m;

		r = mig_error_set(err, mig_error_msg_parse(pl.data, pl.len, &m, -EPROTO),
				  "the agent at %s refused the connection: %s", c->url, m.msg);
		goto out;
	}
	if (fh.type != MIG_FRAME_HELLO || pl.len != sizeof(h)) {
		r = mig_error_set(err, -EPROTO, "the peer did not answer HELLO like an agent");
		goto out;
	}
	memcpy(&h, pl.data, sizeof(h));
	mig_wire_le(&mig_wl_hello, &h, 1);
	if (!(h.flags & MIG_HELLO_F_AUTH))
		goto out;
	if (!key_file) {
		r = mig_error_set(err, -EACCES, "the agent at %s requires a key: pass --key-file F "
				  "with the agent's key", c->url);
		goto out;
	}
	r = xport_key_load(key_file, &key, err);
	if (r >= 0)
		r = xport_conn_recv(&c->conn, &fh, &pl, CONNECT_TIMEOUT_MS, err);
	if (r < 0)
		goto out;
	if (fh.type != MIG_FRAME_AUTH_CHALLENGE || pl.len != sizeof(ch)) {
		r = mig_error_set(err, -EPROTO, "expected AUTH_CHALLENGE from the agent");
		goto out;
	}
	memcpy(&ch, pl.data, sizeof(ch));
	xport_random(resp.nonce, sizeof(resp.nonce));
	mig_ctl_auth_mac(key.data, key.len, "migratectl-client", ch.nonce, resp.nonce, resp.mac);
	r = xport_conn_send(&c->conn, MIG_FRAME_AUTH_RESPONSE, 0, &resp, sizeof(resp), err);
	if (r >= 0)
		r = xport_conn_recv(&c->conn, &fh, &pl, CONNECT_TIMEOUT_MS, err);
	if (r < 0)
		goto out;
	if (fh.type == MIG_FRAME_ERROR) {
		r = mig_error_set(err, -EACCES, "the agent at %s refused the key in %s "
				  "(authentication failed)", c->url, key_file);
		goto out;
	}
	if (fh.type != MIG_FRAME_AUTH_OK || pl.len != sizeof(proof)) {
		r = mig_error_set(err, -EPROTO, "expected AUTH_OK from the agent");
		goto out;
	}
	memcpy(&proof, pl.data, sizeof(proof));
	mig_ctl_auth_mac(key.data, key.len, "migratectl-agent", resp.nonce, ch.nonce, want);
	if (!xport_mac_equal(want, proof.mac, sizeof(want)))
		r = mig_error_set(err, -EACCES, "the agent at %s could not prove it holds the key",
				  c->url);
	else
		r = mig_ctl_session_keys(key.data, key.len, ch.nonce, resp.nonce, true,
					 &c->conn.aead, err);
out:
	mig_buf_free(&pl);
	mig_buf_free(&key);
	return r;
}

static int connect_url(struct mig_client *c, const char *key_file, struct mig_error *err)
{
	int fd, r;

	r = xport_endpoint_parse(c->url, &c->ep, err);
	if (r < 0)
		return r;
	/* ssh: a channel to the agent's socket on the host, as a local socket;
	 * a reopened client shares its first's ssh connection */
	if (c->ep.kind == XPORT_EP_SSH && !c->ssh) {
		r = mig_ssh_open(&c->ep, &c->ssh, err);
		if (r < 0)
			return r;
	}
	if (c->ssh)
		fd = mig_ssh_connect_agent(c->ssh, err);
	else
		fd = xport_connect(&c->ep, CONNECT_TIMEOUT_MS, err);
	if (fd < 0)
		return fd;
	r = xport_conn_init(&c->conn, fd, err);
	if (r < 0) {
		close(fd);
		return r;
	}
	return handshake(c, key_file, err);
}

int mig_client_open(const char *endpoint, const char *key_file, struct mig_client *c,
		    struct mig_error *err)
{
	struct xport_endpoint ep;
	int r;

	memset(c, 0, sizeof(*c));
	c->conn.fd = -1;
	r = xport_endpoint_parse(endpoint, &ep, err);
	if (r < 0)
		return r;
	if (ep.kind == XPORT_EP_LOCAL) {
		r = spawn_local(c, err);
		if (r < 0) {
			mig_client_close(c);
			return r;
		}
	} else {
		xport_endpoint_format(&ep, c->url, sizeof(c->url));
	}
	r = connect_url(c, key_file, err);
	if (r < 0)
		mig_client_close(c);
	return r;
}

int mig_client_reopen(const struct mig_client *c, const char *key_file, struct mig_client *ret,
		      struct mig_error *err)
{
	int r;

	memset(ret, 0, sizeof(*ret));
	ret->conn.fd = -1;
	snprintf(ret->url, sizeof(ret->url), "%s", c->url);
	/* the same ssh connection while it lasts, else a new one */
	if (c->ssh && mig_ssh_alive(c->ssh))
		ret->ssh = mig_ssh_ref(c->ssh);
	r = connect_url(ret, key_file, err);
	if (r < 0)
		mig_client_close(ret);
	return r;
}

void mig_client_close(struct mig_client *c)
{
	if (c->conn.fd >= 0)
		xport_conn_close(&c->conn);
	c->conn.fd = -1;
	/* after the connection's socket: its channel ends first */
	mig_ssh_unref(c->ssh);
	c->ssh = NULL;
	if (c->child > 0) {
		kill(c->child, SIGTERM);
		waitpid(c->child, NULL, 0);
		c->child = 0;
	}
	if (c->tmpdir[0]) {
		char sock[128];

		snprintf(sock, sizeof(sock), "%s/agent.sock", c->tmpdir);
		unlink(sock);
		rmdir(c->tmpdir);
		c->tmpdir[0] = '\0';
	}
}

int mig_client_call(struct mig_client *c, uint32_t op, const void *body, size_t len,
		    struct mig_buf *extra, struct mig_error *err)
{
	return mig_client_call_within(c, op, body, len, extra, CALL_TIMEOUT_MS, err);
}

int mig_client_call_within(struct mig_client *c, uint32_t op, const void *body, size_t len,
			   struct mig_buf *extra, int timeout_ms, struct mig_error *err)
{
	struct mig_request req = { .op = htole32(op) };
	struct mig_buf b = { 0 }, pl = { 0 };
	struct mig_frame_hdr fh;
	struct mig_reply rep;
	int r;

	if (mig_buf_append(&b, &req, sizeof(req)) < 0 || mig_buf_append(&b, body, len) < 0) {
		mig_buf_free(&b);
		return mig_error_set(err, -ENOMEM, "out of memory");
	}
	r = xport_conn_send(&c->conn, MIG_FRAME_REQUEST, 0, b.data, b.len, err);
	mig_buf_free(&b);
	if (r >= 0)
		r = xport_conn_recv(&c->conn, &fh, &pl, timeout_ms, err);
	if (r < 0)
		goto out;
	if (fh.type == MIG_FRAME_ERROR && pl.len >= sizeof(struct mig_error_msg)) {
		struct mig_error_msg m;

		r = mig_error_set(err, mig_error_msg_parse(pl.data, pl.len, &m, -EPROTO), "%s", m.msg);
		goto out;
	}
	if (fh.type != MIG_FRAME_REPLY || pl.len < sizeof(rep)) {
		r = mig_error_set(err, -EPROTO, "the agent sent %s instead of a reply",
				  mig_frame_type_to_string(fh.type) ?: "an unknown frame");
		goto out;
	}
	memcpy(&rep, pl.data, sizeof(rep));
	mig_wire_le(&mig_wl_reply, &rep, 1);
	rep.msg[sizeof(rep.msg) - 1] = '\0';
	if (rep.status < 0) {
		r = mig_error_set(err, rep.status, "%s", rep.msg[0] ? rep.msg : strerror(-rep.status));
		goto out;
	}
	if (extra) {
		extra->len = 0;
		r = mig_buf_append(extra, pl.data + sizeof(rep), pl.len - sizeof(rep));
	}
out:
	mig_buf_free(&pl);
	return r;
}
