// SPDX-License-Identifier: MIT
/*
 * ssh:// endpoints with libssh2 (include/migrate/ssh.h).
 *
 * A libssh2 session is not thread-safe: every call on it is made holding
 * s->lock.  The pump thread holds it while it moves bytes between the
 * channels and their local sockets (non-blocking on both sides) and lets
 * go while it sleeps in poll; a thread that opens a channel or starts the
 * remote agent takes it, runs the session's calls to completion (waiting
 * on the ssh socket itself) and wakes the pump after.
 *
 * libssh2 1.10 (Debian bookworm) has no call for OpenSSH's
 * direct-streamlocal channel: the channel is opened by type name with the
 * request's fields (socket path, two reserved fields) built here.
 */
#include <migrate/ssh.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <pwd.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <libssh2.h>
#include <openssl/evp.h>

#include "util.h"

#define SSH_CONNECT_MS 10000
#define SSH_CALL_MS 20000          /* one blocking step on the session */
#define SSH_AGENT_START_MS 30000   /* a remote agent to say it listens */
#define SSH_AGENT_STOP_MS 10000    /* a remote agent to stop and its shell to exit */
#define PUMP_BUF 32768
#define PUMP_IDLE_MS 200

static struct mig_ssh_opts g_opts;

void mig_ssh_configure(const struct mig_ssh_opts *o)
{
	g_opts = *o;
}

/* One control connection: channel <-> local socket. */
struct bridge {
	LIBSSH2_CHANNEL *ch;
	int fd;
	char up[PUMP_BUF];          /* from the socket, to the channel */
	size_t up_len, up_off;
	char down[PUMP_BUF];        /* from the channel, to the socket */
	size_t down_len, down_off;
	bool fd_eof, ch_eof, eof_sent, dead;
	int blocked_op;             /* enum bridge_op: the call to repeat */
	unsigned long adjust;       /* OP_ADJUST's amount */
	struct bridge *next;
};

/* --tunnel: a port sshd listens on at the source host, each connection to
 * it carried to a port on the destination host through the other ssh
 * connection. */
struct tunnel {
	LIBSSH2_LISTENER *l;
	struct mig_ssh *to;
	int to_port;
	struct tunnel *next;
};

struct mig_ssh {
	pthread_mutex_t lock;
	atomic_int refs;
	atomic_int waiting;         /* threads that want the lock: the pump yields */
	int sock;
	int wake;                   /* eventfd: the pump's poll ends */
	LIBSSH2_SESSION *sess;
	pthread_t pump;
	bool pump_started, stop;
	bool dead;                  /* the ssh connection is lost */
	bool reached;               /* a channel reached the agent once */
	struct bridge *bridges;
	struct bridge *blocked;     /* whose call sent part of a packet */
	struct tunnel *tunnels;
	/* an agent started for this connection (none: exec NULL) */
	LIBSSH2_CHANNEL *exec;
	char exec_err[512];         /* the tail of its stderr */
	char agent_path[108];
	LIBSSH2_KNOWNHOSTS *kh;
	char kh_path[512];
	struct xport_endpoint ep;
	char name[300];
};

const char *mig_ssh_agent_path(const struct mig_ssh *s)
{
	return s->agent_path;
}

static void ssh_lock(struct mig_ssh *s)
{
	atomic_fetch_add(&s->waiting, 1);
	pthread_mutex_lock(&s->lock);
	atomic_fetch_sub(&s->waiting, 1);
}

static void ssh_unlock(struct mig_ssh *s)
{
	pthread_mutex_unlock(&s->lock);
}

bool mig_ssh_alive(struct mig_ssh *s)
{
	bool alive;

	ssh_lock(s);
	alive = !s->dead;
	ssh_unlock(s);
	return alive;
}

/* Whether the session's last error means the connection itself is gone. */
static bool session_lost(struct mig_ssh *s)
{
	switch (libssh2_session_last_errno(s->sess)) {
	case LIBSSH2_ERROR_SOCKET_SEND:
	case LIBSSH2_ERROR_SOCKET_RECV:
	case LIBSSH2_ERROR_SOCKET_DISCONNECT:
	case LIBSSH2_ERROR_SOCKET_TIMEOUT:
		return true;
	default:
		return false;
	}
}

static void pump_wake(struct mig_ssh *s)
{
	uint64_t one = 1;

	if (write(s->wake, &one, sizeof(one)) < 0) {
		/* the counter is already due: the pump wakes anyway */
	}
}

/* The session's last error, for a message. */
static const char *last_error(struct mig_ssh *s)
{
	char *msg = NULL;

	libssh2_session_last_error(s->sess, &msg, NULL, 0);
	return msg && *msg ? msg : "unknown error";
}

/* Waits until the ssh socket can move what the session is blocked on. */
static int wait_socket(struct mig_ssh *s, uint64_t deadline)
{
	int dir = libssh2_session_block_directions(s->sess);
	struct pollfd p = { .fd = s->sock };
	uint64_t now = mig_now_ms();
	int n;

	if (dir & LIBSSH2_SESSION_BLOCK_INBOUND)
		p.events |= POLLIN;
	if (dir & LIBSSH2_SESSION_BLOCK_OUTBOUND)
		p.events |= POLLOUT;
	if (!p.events)
		p.events = POLLIN;
	if (now >= deadline)
		return -ETIMEDOUT;
	n = poll(&p, 1, (int)(deadline - now < 100 ? deadline - now : 100));
	return n < 0 && errno != EINTR ? -errno : 0;
}

/* Runs a non-blocking session call to the end, bounded: its result, or
 * LIBSSH2_ERROR_TIMEOUT. */
#define SSH_RUN(s, deadline, call) ({                                          \
	__typeof__(call) _r;                                                   \
	while ((_r = (call)) == LIBSSH2_ERROR_EAGAIN) {                        \
		if (wait_socket((s), (deadline)) < 0) {                        \
			_r = LIBSSH2_ERROR_TIMEOUT;                             \
			break;                                                 \
		}                                                              \
	}                                                                      \
	_r; })

/* The same for calls that return a pointer, NULL with EAGAIN meaning "again". */
#define SSH_RUN_PTR(s, deadline, call) ({                                      \
	__typeof__(call) _p;                                                   \
	while (!(_p = (call)) &&                                               \
	       libssh2_session_last_errno((s)->sess) == LIBSSH2_ERROR_EAGAIN) {  \
		if (wait_socket((s), (deadline)) < 0)                          \
			break;                                                 \
	}                                                                      \
	_p; })

/* ---- the host key ---- */

/* "SHA256:" and the unpadded base64 of the key's SHA-256, as OpenSSH prints it. */
static void fingerprint(struct mig_ssh *s, char *buf, size_t n)
{
	const unsigned char *h = (const unsigned char *)libssh2_hostkey_hash(
		s->sess, LIBSSH2_HOSTKEY_HASH_SHA256);
	unsigned char b64[64];
	int len;

	if (!h) {
		snprintf(buf, n, "(no SHA-256 fingerprint)");
		return;
	}
	len = EVP_EncodeBlock(b64, h, 32);
	while (len > 0 && b64[len - 1] == '=')
		len--;
	snprintf(buf, n, "SHA256:%.*s", len, b64);
}

/* ~/.ssh/NAME of the user running us. */
static int home_file(const char *name, char *buf, size_t n)
{
	const char *home = getenv("HOME");

	if (!home || !*home) {
		struct passwd *pw = getpwuid(geteuid());

		home = pw ? pw->pw_dir : NULL;
	}
	if (!home)
		return -ENOENT;
	snprintf(buf, n, "%s/.ssh/%s", home, name);
	return 0;
}

static const struct {
	int hostkey;
	int known;
	const char *name;           /* OpenSSH's name, for ssh-keyscan -t */
	const char *type;           /* as OpenSSH prints it */
	const char *methods;        /* its host key algorithms */
} key_types[] = {
	{ LIBSSH2_HOSTKEY_TYPE_ED25519, LIBSSH2_KNOWNHOST_KEY_ED25519, "ed25519", "ED25519",
	  "ssh-ed25519" },
	{ LIBSSH2_HOSTKEY_TYPE_ECDSA_256, LIBSSH2_KNOWNHOST_KEY_ECDSA_256, "ecdsa", "ECDSA",
	  "ecdsa-sha2-nistp256" },
	{ LIBSSH2_HOSTKEY_TYPE_ECDSA_384, LIBSSH2_KNOWNHOST_KEY_ECDSA_384, "ecdsa", "ECDSA",
	  "ecdsa-sha2-nistp384" },
	{ LIBSSH2_HOSTKEY_TYPE_ECDSA_521, LIBSSH2_KNOWNHOST_KEY_ECDSA_521, "ecdsa", "ECDSA",
	  "ecdsa-sha2-nistp521" },
	{ LIBSSH2_HOSTKEY_TYPE_RSA, LIBSSH2_KNOWNHOST_KEY_SSHRSA, "rsa", "RSA",
	  "rsa-sha2-512,rsa-sha2-256,ssh-rsa" },
	{ LIBSSH2_HOSTKEY_TYPE_DSS, LIBSSH2_KNOWNHOST_KEY_SSHDSS, "dsa", "DSA", "ssh-dss" },
};

/* Reads the known hosts file into s->kh before the handshake.  A missing
 * file lists no host: every key is then unknown. */
static int load_known_hosts(struct mig_ssh *s, struct mig_error *err)
{
	if (g_opts.known_hosts)
		snprintf(s->kh_path, sizeof(s->kh_path), "%s", g_opts.known_hosts);
	else if (home_file("known_hosts", s->kh_path, sizeof(s->kh_path)) < 0)
		return mig_error_set(err, -ENOENT, "%s: no home directory to find "
				     "~/.ssh/known_hosts in: give --known-hosts FILE", s->name);
	s->kh = libssh2_knownhost_init(s->sess);
	if (!s->kh)
		return mig_error_set(err, -ENOMEM, "%s: out of memory", s->name);
	if (access(s->kh_path, F_OK) == 0 &&
	    libssh2_knownhost_readfile(s->kh, s->kh_path, LIBSSH2_KNOWNHOST_FILE_OPENSSH) < 0)
		return mig_error_set(err, -EINVAL, "%s: cannot read %s: %s (fix or move the "
				     "file, or give --known-hosts FILE)", s->name, s->kh_path,
				     last_error(s));
	return 0;
}

/*
 * The host key algorithms of the key types known for this host first, as
 * OpenSSH orders them: a host whose ECDSA key is known is not asked for
 * its Ed25519 one, which would be "unknown".  A type is known when a probe
 * key of it is a mismatch (or a match) rather than not found.
 */
static void prefer_known_types(struct mig_ssh *s)
{
	char first[300] = "", rest[300] = "";

	for (size_t i = 0; i < ARRAY_SIZE(key_types); i++) {
		int r = libssh2_knownhost_checkp(s->kh, s->ep.host, s->ep.port, "probe", 5,
						 LIBSSH2_KNOWNHOST_TYPE_PLAIN |
						 LIBSSH2_KNOWNHOST_KEYENC_RAW |
						 key_types[i].known, NULL);
		char *to = r == LIBSSH2_KNOWNHOST_CHECK_MISMATCH ||
			   r == LIBSSH2_KNOWNHOST_CHECK_MATCH ? first : rest;

		if (to == rest && key_types[i].known == LIBSSH2_KNOWNHOST_KEY_SSHDSS)
			continue;     /* DSA only where it is the known key */
		snprintf(to + strlen(to), 300 - strlen(to), "%s%s", *to ? "," : "",
			 key_types[i].methods);
	}
	if (!first[0])
		return;
	snprintf(first + strlen(first), sizeof(first) - strlen(first), "%s%s", *rest ? "," : "",
		 rest);
	libssh2_session_method_pref(s->sess, LIBSSH2_METHOD_HOSTKEY, first);
}

static int check_host_key(struct mig_ssh *s, struct mig_error *err)
{
	char fp[80], host_arg[300], keyscan[900];
	const char *key, *tname = "unknown", *tshort = "", *path = s->kh_path;
	struct libssh2_knownhost *found = NULL;
	size_t len;
	int type, known = 0, r;

	key = libssh2_session_hostkey(s->sess, &len, &type);
	if (!key)
		return mig_error_set(err, -EPROTO, "%s: the server sent no host key", s->name);
	for (size_t i = 0; i < ARRAY_SIZE(key_types); i++)
		if (key_types[i].hostkey == type) {
			known = key_types[i].known;
			tname = key_types[i].type;
			tshort = key_types[i].name;
		}
	fingerprint(s, fp, sizeof(fp));
	if (s->ep.port == 22)
		snprintf(host_arg, sizeof(host_arg), "%s", s->ep.host);
	else
		snprintf(host_arg, sizeof(host_arg), "[%s]:%u", s->ep.host, s->ep.port);
	snprintf(keyscan, sizeof(keyscan), "ssh-keyscan -p %u%s%s %s >> %s", s->ep.port,
		 *tshort ? " -t " : "", tshort, s->ep.host, path);

	r = libssh2_knownhost_checkp(s->kh, s->ep.host, s->ep.port, key, len,
				     LIBSSH2_KNOWNHOST_TYPE_PLAIN | LIBSSH2_KNOWNHOST_KEYENC_RAW |
				     known, &found);
	switch (r) {
	case LIBSSH2_KNOWNHOST_CHECK_MATCH:
		r = 0;
		break;
	case LIBSSH2_KNOWNHOST_CHECK_NOTFOUND:
		r = mig_error_set(err, -EACCES, "the host key of %s is not known: %s key %s is "
				  "not in %s; refused.  Check it against the host's own fingerprint "
				  "(ssh-keygen -lf /etc/ssh/ssh_host_%s_key.pub, run there), then "
				  "add the key: `%s`", host_arg, tname, fp, path,
				  *tshort ? tshort : "*", keyscan);
		break;
	case LIBSSH2_KNOWNHOST_CHECK_MISMATCH:
		r = mig_error_set(err, -EACCES, "the host key of %s has CHANGED (someone may be "
				  "intercepting the connection, or the host was reinstalled): it "
				  "offers %s key %s, not the key %s lists; refused.  Only if the "
				  "host's own fingerprint (ssh-keygen -lf /etc/ssh/ssh_host_%s_key.pub "
				  "there) is this one: `ssh-keygen -R '%s' -f %s`, then `%s`",
				  host_arg, tname, fp, path, *tshort ? tshort : "*", host_arg, path,
				  keyscan);
		break;
	default:
		r = mig_error_set(err, -EACCES, "%s: cannot check the host key against %s: "
				  "%s; refused", s->name, path, last_error(s));
		break;
	}
	return r;
}

/* ---- authentication ---- */

static int auth_agent(struct mig_ssh *s, const char *user, bool *tried)
{
	struct libssh2_agent_publickey *id = NULL, *prev = NULL;
	LIBSSH2_AGENT *agent;
	int r = -1;

	if (!getenv("SSH_AUTH_SOCK"))
		return -1;
	agent = libssh2_agent_init(s->sess);
	if (!agent)
		return -1;
	if (libssh2_agent_connect(agent) == 0 && libssh2_agent_list_identities(agent) == 0) {
		while (r != 0 && libssh2_agent_get_identity(agent, &id, prev) == 0) {
			*tried = true;
			r = libssh2_agent_userauth(agent, user, id);
			prev = id;
		}
		libssh2_agent_disconnect(agent);
	}
	libssh2_agent_free(agent);
	return r;
}

static int authenticate(struct mig_ssh *s, struct mig_error *err)
{
	char user[64], keys[600] = "", file[512];
	static const char *const defaults[] = { "id_ed25519", "id_ecdsa", "id_rsa" };
	const char *methods;
	bool tried = false;
	int r;

	if (s->ep.user[0]) {
		snprintf(user, sizeof(user), "%s", s->ep.user);
	} else {
		struct passwd *pw = getpwuid(geteuid());

		if (!pw)
			return mig_error_set(err, -ENOENT, "%s: no user name for uid %u: "
					     "give ssh://USER@HOST", s->name, geteuid());
		snprintf(user, sizeof(user), "%s", pw->pw_name);
	}
	methods = libssh2_userauth_list(s->sess, user, (unsigned)strlen(user));
	if (!methods && libssh2_userauth_authenticated(s->sess))
		return 0;
	if (methods && !strstr(methods, "publickey"))
		return mig_error_set(err, -EACCES, "%s: the server offers %s to %s, not "
				     "publickey, the only way migratectl logs in", s->name,
				     methods, user);
	if (g_opts.key_file) {
		if (access(g_opts.key_file, R_OK) < 0)
			return mig_error_set(err, -errno, "%s: --ssh-key %s: %s", s->name,
					     g_opts.key_file, strerror(errno));
		r = libssh2_userauth_publickey_fromfile(s->sess, user, NULL, g_opts.key_file,
							NULL);
		if (r == 0)
			return 0;
		if (r == LIBSSH2_ERROR_FILE || r == LIBSSH2_ERROR_METHOD_NOT_SUPPORTED)
			return mig_error_set(err, -EINVAL, "%s: cannot use the key %s: %s "
					     "(a key with a passphrase must be loaded into "
					     "ssh-agent with ssh-add instead)", s->name,
					     g_opts.key_file, last_error(s));
		return mig_error_set(err, -EACCES, "%s: the server refused the key %s for "
				     "user %s (publickey authentication failed): is its public "
				     "key in ~%s/.ssh/authorized_keys on %s?", s->name,
				     g_opts.key_file, user, user, s->ep.host);
	}
	if (auth_agent(s, user, &tried) == 0)
		return 0;
	if (tried)
		snprintf(keys, sizeof(keys), "the keys of ssh-agent (SSH_AUTH_SOCK)");
	for (size_t i = 0; i < ARRAY_SIZE(defaults); i++) {
		if (home_file(defaults[i], file, sizeof(file)) < 0 || access(file, R_OK) < 0)
			continue;
		if (libssh2_userauth_publickey_fromfile(s->sess, user, NULL, file, NULL) == 0)
			return 0;
		snprintf(keys + strlen(keys), sizeof(keys) - strlen(keys), "%s%s",
			 keys[0] ? ", " : "", file);
	}
	if (!keys[0])
		return mig_error_set(err, -EACCES, "%s: no key to log in as %s with: no "
				     "ssh-agent (SSH_AUTH_SOCK) and no ~/.ssh/id_ed25519, id_ecdsa "
				     "or id_rsa; give --ssh-key FILE", s->name, user);
	return mig_error_set(err, -EACCES, "%s: the server refused %s for user %s "
			     "(publickey authentication failed): give --ssh-key FILE with a key "
			     "whose public half is in ~%s/.ssh/authorized_keys on %s", s->name,
			     keys, user, user, s->ep.host);
}

/* ---- the pump ---- */

/*
 * libssh2 sends one packet at a time: a call that could send only part of
 * its packet (EAGAIN with the socket's send side full) must be repeated,
 * the same call with the same arguments, before the session sends
 * anything else, or the session refuses (LIBSSH2_ERROR_BAD_USE).  So the
 * bridge whose call that was is the only one served until it is through
 * (s->blocked), and a thread that wants the session first finishes it
 * (flush_blocked()).
 */
enum bridge_op { OP_NONE, OP_WRITE, OP_EOF, OP_READ, OP_ADJUST };

/* libssh2 grows a channel's receive window only by what one read asks
 * for, so a stream would flow a read's worth per round trip: it is grown
 * here instead, back to WINDOW_HIGH whenever it falls under WINDOW_LOW. */
#define WINDOW_HIGH (8U << 20)
#define WINDOW_LOW (4U << 20)

/* One session call of a bridge; EAGAIN with the send side full marks it. */
static ssize_t bridge_call(struct mig_ssh *s, struct bridge *b, enum bridge_op op)
{
	ssize_t n;

	switch (op) {
	case OP_WRITE:
		n = libssh2_channel_write(b->ch, b->up + b->up_off, b->up_len - b->up_off);
		break;
	case OP_EOF:
		n = libssh2_channel_send_eof(b->ch);
		break;
	case OP_ADJUST:
		n = libssh2_channel_receive_window_adjust2(b->ch, b->adjust, 1, NULL);
		break;
	default:
		n = libssh2_channel_read(b->ch, b->down, sizeof(b->down));
		break;
	}
	if (n == LIBSSH2_ERROR_EAGAIN &&
	    (libssh2_session_block_directions(s->sess) & LIBSSH2_SESSION_BLOCK_OUTBOUND)) {
		s->blocked = b;
		b->blocked_op = op;
	} else if (s->blocked == b) {
		s->blocked = NULL;
		b->blocked_op = OP_NONE;
	}
	return n;
}

/* What a call's result does to its bridge: true when something moved. */
static bool bridge_result(struct bridge *b, enum bridge_op op, ssize_t n)
{
	if (n == LIBSSH2_ERROR_EAGAIN)
		return false;
	if (n < 0) {
		b->dead = true;
		return true;
	}
	switch (op) {
	case OP_WRITE:
		b->up_off += (size_t)n;
		return true;
	case OP_EOF:
		b->eof_sent = true;
		return true;
	case OP_ADJUST:
		b->adjust = 0;
		return false;
	default:
		if (n > 0) {
			b->down_len = (size_t)n;
			b->down_off = 0;
			return true;
		}
		if (libssh2_channel_eof(b->ch)) {
			b->ch_eof = true;
			return true;
		}
		return false;
	}
}

/* Moves what can move now: true when a byte moved or the bridge ended. */
static bool bridge_step(struct mig_ssh *s, struct bridge *b)
{
	bool moved = false;
	ssize_t n;

	if (s->blocked && s->blocked != b)
		return false;
	if (s->blocked == b) {
		enum bridge_op op = b->blocked_op;

		moved = bridge_result(b, op, bridge_call(s, b, op));
		if (s->blocked)
			return moved;
	}
	if (!b->fd_eof && b->up_off == b->up_len) {
		n = recv(b->fd, b->up, sizeof(b->up), MSG_DONTWAIT);
		if (n > 0) {
			b->up_len = (size_t)n;
			b->up_off = 0;
			moved = true;
		} else if (n == 0) {
			b->fd_eof = moved = true;
		} else if (errno != EAGAIN && errno != EINTR) {
			b->dead = true;
		}
	}
	while (!b->dead && !s->blocked && b->up_off < b->up_len) {
		bool m = bridge_result(b, OP_WRITE, n = bridge_call(s, b, OP_WRITE));

		moved |= m;
		if (!m)
			break;
	}
	if (!b->dead && !s->blocked && b->fd_eof && !b->eof_sent && b->up_off == b->up_len)
		moved |= bridge_result(b, OP_EOF, bridge_call(s, b, OP_EOF));
	if (!b->dead && !s->blocked && !b->ch_eof && b->down_off == b->down_len)
		moved |= bridge_result(b, OP_READ, bridge_call(s, b, OP_READ));
	if (!b->dead && !s->blocked && !b->ch_eof) {
		unsigned long win = libssh2_channel_window_read_ex(b->ch, NULL, NULL);

		if (win < WINDOW_LOW) {
			b->adjust = (unsigned long)WINDOW_HIGH - win;
			bridge_result(b, OP_ADJUST, bridge_call(s, b, OP_ADJUST));
		}
	}
	while (b->down_off < b->down_len) {
		n = send(b->fd, b->down + b->down_off, b->down_len - b->down_off,
			 MSG_DONTWAIT | MSG_NOSIGNAL);
		if (n < 0) {
			if (errno != EAGAIN && errno != EINTR)
				b->dead = true;
			break;
		}
		b->down_off += (size_t)n;
		moved = true;
	}
	if (b->ch_eof && b->down_off == b->down_len)
		shutdown(b->fd, SHUT_WR);
	if (b->ch_eof && b->fd_eof && b->down_off == b->down_len)
		b->dead = true;
	return moved || b->dead;
}

/* Finishes the blocked call, if any, so the session may send again. */
static int flush_blocked(struct mig_ssh *s, uint64_t deadline)
{
	while (s->blocked) {
		struct bridge *b = s->blocked;
		enum bridge_op op = b->blocked_op;

		bridge_result(b, op, bridge_call(s, b, op));
		if (s->blocked && wait_socket(s, deadline) < 0)
			return -ETIMEDOUT;
	}
	return 0;
}

static void bridge_free(struct mig_ssh *s, struct bridge *b)
{
	uint64_t deadline = mig_now_ms() + 2000;

	close(b->fd);
	flush_blocked(s, deadline);
	s->blocked = NULL;
	SSH_RUN(s, deadline, libssh2_channel_close(b->ch));
	SSH_RUN(s, deadline, libssh2_channel_free(b->ch));
	free(b);
}

/* Appends n bytes to the string in tail (cap bytes), dropping its oldest. */
static void keep_tail(char *tail, size_t cap, const char *p, size_t n)
{
	size_t have = strlen(tail);

	if (n >= cap) {
		p += n - (cap - 1);
		n = cap - 1;
	}
	if (have + n >= cap) {
		size_t cut = have + n - (cap - 1);

		memmove(tail, tail + cut, have - cut);
		have -= cut;
	}
	memcpy(tail + have, p, n);
	tail[have + n] = '\0';
}

/* The agent started for us wrote to stderr: keep its tail for a message;
 * stdout carries nothing after its first line and byte. */
static void drain_exec(struct mig_ssh *s)
{
	char buf[sizeof(s->exec_err)];
	ssize_t n;

	if (!s->exec)
		return;
	while ((n = libssh2_channel_read_stderr(s->exec, buf, sizeof(buf) - 1)) > 0)
		keep_tail(s->exec_err, sizeof(s->exec_err), buf, (size_t)n);
	while (libssh2_channel_read(s->exec, buf, sizeof(buf)) > 0)
		;
}

static struct bridge *bridge_add(struct mig_ssh *s, LIBSSH2_CHANNEL *ch, int fd)
{
	struct bridge *b = calloc(1, sizeof(*b));

	if (!b)
		return NULL;
	b->ch = ch;
	b->fd = fd;
	b->next = s->bridges;
	s->bridges = b;
	return b;
}

/*
 * A connection to the tunnel's port at this host (held: s->lock): a
 * channel of the destination's ssh connection to its port there, and one
 * socketpair joining the two channels' bridges, each pumped by its own
 * connection's thread.  Only this direction takes a second lock (the
 * destination's while holding ours), so two pumps never wait on each other.
 */
static bool tunnel_accept(struct mig_ssh *s, struct tunnel *t)
{
	LIBSSH2_CHANNEL *in = libssh2_channel_forward_accept(t->l), *out;
	uint64_t deadline = mig_now_ms() + SSH_CALL_MS;
	int sv[2];

	if (!in)
		return false;
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		goto drop;
	ssh_lock(t->to);
	out = t->to->dead || flush_blocked(t->to, deadline) < 0 ? NULL :
	      SSH_RUN_PTR(t->to, deadline, libssh2_channel_direct_tcpip_ex(
		      t->to->sess, "127.0.0.1", t->to_port, "127.0.0.1", 0));
	if (!out || !bridge_add(t->to, out, sv[1])) {
		if (out) {
			SSH_RUN(t->to, deadline, libssh2_channel_close(out));
			SSH_RUN(t->to, deadline, libssh2_channel_free(out));
		}
		ssh_unlock(t->to);
		close(sv[0]);
		close(sv[1]);
		goto drop;
	}
	ssh_unlock(t->to);
	pump_wake(t->to);
	if (!bridge_add(s, in, sv[0])) {
		close(sv[0]);      /* the other side sees it end */
		goto drop;
	}
	return true;
drop:
	/* the source agent's connection fails, and its stream with it */
	SSH_RUN(s, deadline, libssh2_channel_close(in));
	SSH_RUN(s, deadline, libssh2_channel_free(in));
	return true;
}

static void *pump_main(void *arg)
{
	struct mig_ssh *s = arg;
	struct pollfd *p = NULL;
	size_t cap = 0;

	ssh_lock(s);
	while (!s->stop) {
		bool moved;
		size_t n = 0;

		do {
			moved = false;
			for (struct bridge **bp = &s->bridges; *bp;) {
				struct bridge *b = *bp;

				moved |= bridge_step(s, b);
				if (b->dead && session_lost(s))
					s->dead = true;
				/* a lost connection ends every channel: the
				 * clients see their sockets close */
				if (b->dead || s->dead) {
					*bp = b->next;
					bridge_free(s, b);
				} else {
					bp = &b->next;
				}
			}
			if (!s->blocked) {
				drain_exec(s);
				for (struct tunnel *t = s->tunnels; t; t = t->next)
					moved |= tunnel_accept(s, t);
			}
			/* another thread waits for the session: let it have it */
			if (atomic_load(&s->waiting)) {
				ssh_unlock(s);
				sched_yield();
				ssh_lock(s);
			}
		} while (moved && !s->stop);
		if (s->stop)
			break;
		for (struct bridge *b = s->bridges; b; b = b->next)
			n++;
		if (n + 2 > cap) {
			struct pollfd *np = realloc(p, (n + 2) * sizeof(*p));

			if (!np) {
				ssh_unlock(s);
				usleep(PUMP_IDLE_MS * 1000);
				ssh_lock(s);
				continue;
			}
			p = np;
			cap = n + 2;
		}
		n = 0;
		p[n++] = (struct pollfd){ .fd = s->wake, .events = POLLIN };
		p[n] = (struct pollfd){ .fd = s->sock, .events = POLLIN };
		if (libssh2_session_block_directions(s->sess) & LIBSSH2_SESSION_BLOCK_OUTBOUND)
			p[n].events |= POLLOUT;
		n++;
		for (struct bridge *b = s->bridges; b; b = b->next) {
			short ev = 0;

			if (!b->fd_eof && b->up_off == b->up_len)
				ev |= POLLIN;
			if (b->down_off < b->down_len)
				ev |= POLLOUT;
			p[n++] = (struct pollfd){ .fd = b->fd, .events = ev };
		}
		ssh_unlock(s);
		/* bounded: what libssh2 read for one channel while serving
		 * another sits in its buffers, not on the socket */
		if (poll(p, n, PUMP_IDLE_MS) > 0 && (p[0].revents & POLLIN)) {
			uint64_t v;

			if (read(s->wake, &v, sizeof(v)) < 0) {
				/* nothing was due */
			}
		}
		ssh_lock(s);
		if (p[1].revents & (POLLERR | POLLHUP))
			s->dead = true;
	}
	ssh_unlock(s);
	free(p);
	return NULL;
}

/* ---- channels to the agent ---- */

/* direct-streamlocal@openssh.com (OpenSSH's PROTOCOL, 2.4): string socket
 * path, string reserved, uint32 reserved. */
static LIBSSH2_CHANNEL *open_streamlocal(struct mig_ssh *s, const char *path, uint64_t deadline)
{
	static const char type[] = "direct-streamlocal@openssh.com";
	unsigned char msg[4 + 108 + 4 + 4];
	uint32_t len = (uint32_t)strlen(path), be;
	size_t off = 0;

	be = htonl(len);
	memcpy(msg + off, &be, 4);
	off += 4;
	memcpy(msg + off, path, len);
	off += len;
	memset(msg + off, 0, 8);
	off += 8;
	return SSH_RUN_PTR(s, deadline, libssh2_channel_open_ex(
		s->sess, type, sizeof(type) - 1, LIBSSH2_CHANNEL_WINDOW_DEFAULT,
		LIBSSH2_CHANNEL_PACKET_DEFAULT, (const char *)msg, (unsigned)off));
}

/*
 * The agent for this connection only, over an exec channel: a shell on the
 * host makes a private directory, prints it, and starts `migratectl agent`
 * on a socket in it, whose --ready-fd byte ("1") follows on stdout once it
 * listens.  The shell waits for the agent; a child of it waits for the
 * channel's stdin to end (we send EOF, or the connection drops however it
 * drops) and stops the agent.  Once the agent has ended, the shell prints
 * "x", removes the directory and exits: an agent that fails to start is
 * seen at once, and nothing outlives us.  (A background command's stdin is
 * /dev/null unless redirected: hence the explicit <&0.)
 */
static int start_agent(struct mig_ssh *s, struct mig_error *err)
{
	const char *remote = g_opts.remote_cmd ? g_opts.remote_cmd : "migratectl";
	uint64_t deadline = mig_now_ms() + SSH_AGENT_START_MS;
	char cmd[1024], out[200] = "";
	size_t have = 0;
	bool ready = false;
	LIBSSH2_CHANNEL *ch;
	int r;

	if (strchr(remote, '\'') || strlen(remote) > 400)
		return mig_error_set(err, -EINVAL, "--remote-migratectl: a path of at most 400 "
				     "characters without a single quote");
	snprintf(cmd, sizeof(cmd),
		 "umask 077; d=$(mktemp -d /tmp/migratectl-ssh-XXXXXX) || exit 1; "
		 "printf '%%s\\n' \"$d\"; "
		 "'%s' agent --listen \"unix://$d/agent.sock\" --ready-fd 3 --quiet "
		 "3>&1 >/dev/null </dev/null & p=$!; "
		 "(cat; kill $p) <&0 >/dev/null 2>&1 & "
		 "wait $p; s=$?; printf x; rm -rf \"$d\"; exit $s", remote);
	ch = SSH_RUN_PTR(s, deadline, libssh2_channel_open_session(s->sess));
	if (!ch)
		return mig_error_set(err, -EIO, "%s: cannot open a session channel to "
				     "start an agent: %s", s->name, last_error(s));
	r = SSH_RUN(s, deadline, libssh2_channel_exec(ch, cmd));
	if (r < 0) {
		r = mig_error_set(err, -EIO, "%s: cannot run a command to start an agent: %s",
				  s->name, last_error(s));
		goto fail;
	}
	s->exec = ch;
	s->exec_err[0] = '\0';
	/* the directory's line, then the ready byte */
	while (!ready) {
		ssize_t n = libssh2_channel_read(ch, out + have, sizeof(out) - 1 - have);

		{
			char e[512];
			ssize_t m;

			while ((m = libssh2_channel_read_stderr(ch, e, sizeof(e))) > 0)
				keep_tail(s->exec_err, sizeof(s->exec_err), e, (size_t)m);
		}
		if (n > 0) {
			char *nl;

			have += (size_t)n;
			out[have] = '\0';
			nl = strchr(out, '\n');
			if (nl && nl[1]) {
				ready = nl[1] == '1';
				break;
			}
			if (have == sizeof(out) - 1)
				break;
			continue;
		}
		if (n == LIBSSH2_ERROR_EAGAIN && !libssh2_channel_eof(ch) &&
		    wait_socket(s, deadline) == 0)
			continue;
		break;
	}
	if (!ready) {
		int status = libssh2_channel_get_exit_status(ch);
		size_t el = strlen(s->exec_err);

		while (el && (s->exec_err[el - 1] == '\n' || s->exec_err[el - 1] == ' '))
			s->exec_err[--el] = '\0';
		r = mig_error_set(err, -ECHILD, "%s: no agent listens at %s there, and "
				  "starting one with `%s agent` failed%s%s%s (install migratectl "
				  "on the host, give its path with --remote-migratectl PATH, or "
				  "start an agent there on %s)", s->name, s->ep.path, remote,
				  el ? ": " : (mig_now_ms() >= deadline ? ": it did not listen in "
					       "time" : ""), s->exec_err,
				  !el && status ? " (the command exited with an error)" : "",
				  s->ep.path);
		s->exec = NULL;
		goto fail;
	}
	*strchr(out, '\n') = '\0';
	snprintf(s->agent_path, sizeof(s->agent_path), "%.90s/agent.sock", out);
	return 0;
fail:
	SSH_RUN(s, deadline, libssh2_channel_close(ch));
	SSH_RUN(s, deadline, libssh2_channel_free(ch));
	return r;
}

int mig_ssh_connect_agent(struct mig_ssh *s, struct mig_error *err)
{
	uint64_t deadline = mig_now_ms() + SSH_CALL_MS;
	LIBSSH2_CHANNEL *ch = NULL;
	int sv[2] = { -1, -1 }, r;
	char *why = NULL;

	ssh_lock(s);
	if (s->dead || flush_blocked(s, deadline) < 0) {
		r = mig_error_set(err, -ECONNRESET, "%s: the ssh connection was lost", s->name);
		goto out;
	}
	if (!s->agent_path[0])
		snprintf(s->agent_path, sizeof(s->agent_path), "%s", s->ep.path);
	ch = open_streamlocal(s, s->agent_path, deadline);
	if (!ch && session_lost(s)) {
		s->dead = true;
		r = mig_error_set(err, -ECONNRESET, "%s: the ssh connection was lost: %s",
				  s->name, last_error(s));
		goto out;
	}
	/* An agent is started only for a command's first connection: one
	 * that was reached and is gone now is not replaced by a stranger. */
	if (!ch && !s->exec && !s->reached) {
		libssh2_session_last_error(s->sess, &why, NULL, 0);
		if (why && strstr(why, "prohibited")) {
			r = mig_error_set(err, -EACCES, "%s: the host's sshd does not forward "
					  "connections to unix sockets (set AllowStreamLocalForwarding "
					  "yes in its sshd_config)", s->name);
			goto out;
		}
		/* nothing listens there: an agent for this connection */
		r = start_agent(s, err);
		if (r < 0)
			goto out;
		ch = open_streamlocal(s, s->agent_path, deadline);
	}
	if (!ch) {
		r = mig_error_set(err, -ECONNREFUSED, "%s: nothing listens at %s there (is the "
				  "agent running?): %s", s->name, s->agent_path, last_error(s));
		goto out;
	}
	s->reached = true;
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0 ||
	    !bridge_add(s, ch, sv[1])) {
		r = mig_error_set(err, -ENOMEM, "%s: a local socket for the channel: %s",
				  s->name, strerror(errno ? errno : ENOMEM));
		if (sv[0] >= 0) {
			close(sv[0]);
			close(sv[1]);
		}
		goto out;
	}
	r = sv[0];
	ch = NULL;
out:
	if (ch) {
		SSH_RUN(s, deadline, libssh2_channel_close(ch));
		SSH_RUN(s, deadline, libssh2_channel_free(ch));
	}
	ssh_unlock(s);
	pump_wake(s);
	return r;
}

int mig_ssh_tunnel(struct mig_ssh *from, struct mig_ssh *to, int to_port, int *ret_port,
		   struct mig_error *err)
{
	uint64_t deadline = mig_now_ms() + SSH_CALL_MS;
	struct tunnel *t = calloc(1, sizeof(*t));
	int bound = 0;

	if (!t)
		return mig_error_set(err, -ENOMEM, "out of memory");
	ssh_lock(from);
	t->l = from->dead || flush_blocked(from, deadline) < 0 ? NULL :
	       SSH_RUN_PTR(from, deadline, libssh2_channel_forward_listen_ex(
		       from->sess, "127.0.0.1", 0, &bound, 16));
	if (!t->l) {
		int r = mig_error_set(err, -EACCES, "%s: the host's sshd does not forward a port "
				      "for --tunnel: %s (it needs AllowTcpForwarding yes)",
				      from->name, from->dead ? "the connection was lost" :
				      last_error(from));

		ssh_unlock(from);
		free(t);
		return r;
	}
	t->to = mig_ssh_ref(to);
	t->to_port = to_port;
	t->next = from->tunnels;
	from->tunnels = t;
	ssh_unlock(from);
	pump_wake(from);
	*ret_port = bound;
	return 0;
}

/* ---- the connection ---- */

static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static int init_result;

static void init_libssh2(void)
{
	init_result = libssh2_init(0);
}

int mig_ssh_open(const struct xport_endpoint *ep, struct mig_ssh **ret, struct mig_error *err)
{
	struct xport_endpoint tcp = *ep;
	struct mig_ssh *s;
	int r;

	pthread_once(&init_once, init_libssh2);
	if (init_result)
		return mig_error_set(err, -EIO, "libssh2 did not initialise (%d)", init_result);
	s = calloc(1, sizeof(*s));
	if (!s)
		return mig_error_set(err, -ENOMEM, "out of memory");
	pthread_mutex_init(&s->lock, NULL);
	atomic_init(&s->refs, 1);
	s->ep = *ep;
	s->sock = s->wake = -1;
	xport_endpoint_format(ep, s->name, sizeof(s->name));
	tcp.kind = XPORT_EP_TCP;
	s->sock = xport_connect(&tcp, SSH_CONNECT_MS, err);
	if (s->sock < 0) {
		r = s->sock;
		goto fail;
	}
	s->wake = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	s->sess = libssh2_session_init();
	if (s->wake < 0 || !s->sess) {
		r = mig_error_set(err, -ENOMEM, "%s: cannot set up a session", s->name);
		goto fail;
	}
	libssh2_session_set_blocking(s->sess, 1);
	libssh2_session_set_timeout(s->sess, SSH_CALL_MS);
	r = load_known_hosts(s, err);
	if (r < 0)
		goto fail;
	prefer_known_types(s);
	if (libssh2_session_handshake(s->sess, s->sock)) {
		r = mig_error_set(err, -EPROTO, "%s: the ssh handshake failed: %s (is an "
				  "sshd listening on port %u?)", s->name, last_error(s), ep->port);
		goto fail;
	}
	r = check_host_key(s, err);
	if (r >= 0)
		r = authenticate(s, err);
	if (r < 0)
		goto fail;
	libssh2_session_set_blocking(s->sess, 0);
	r = -pthread_create(&s->pump, NULL, pump_main, s);
	if (r < 0) {
		mig_error_set(err, r, "%s: cannot start a thread: %s", s->name, strerror(-r));
		goto fail;
	}
	s->pump_started = true;
	*ret = s;
	return 0;
fail:
	mig_ssh_unref(s);
	return r;
}

struct mig_ssh *mig_ssh_ref(struct mig_ssh *s)
{
	atomic_fetch_add(&s->refs, 1);
	return s;
}

/* Ends the agent started for us: EOF on the shell's stdin, and its exit
 * awaited (bounded) so that it has stopped the agent when we return. */
static void stop_agent(struct mig_ssh *s)
{
	uint64_t deadline = mig_now_ms() + SSH_AGENT_STOP_MS;
	char buf[512];

	SSH_RUN(s, deadline, libssh2_channel_send_eof(s->exec));
	while (mig_now_ms() < deadline) {
		ssize_t n = libssh2_channel_read(s->exec, buf, sizeof(buf));

		while (libssh2_channel_read_stderr(s->exec, buf, sizeof(buf)) > 0)
			;
		if (n == 0 && libssh2_channel_eof(s->exec))
			break;
		if (n == LIBSSH2_ERROR_EAGAIN && wait_socket(s, deadline) < 0)
			break;
		if (n < 0 && n != LIBSSH2_ERROR_EAGAIN)
			break;
	}
	SSH_RUN(s, deadline, libssh2_channel_close(s->exec));
	SSH_RUN(s, deadline, libssh2_channel_wait_closed(s->exec));
	SSH_RUN(s, deadline, libssh2_channel_free(s->exec));
	s->exec = NULL;
}

void mig_ssh_unref(struct mig_ssh *s)
{
	if (!s || atomic_fetch_sub(&s->refs, 1) > 1)
		return;
	if (s->pump_started) {
		ssh_lock(s);
		s->stop = true;
		ssh_unlock(s);
		pump_wake(s);
		pthread_join(s->pump, NULL);
	}
	if (s->kh)
		libssh2_knownhost_free(s->kh);
	if (s->sess) {
		flush_blocked(s, mig_now_ms() + 2000);
		s->blocked = NULL;
		while (s->tunnels) {
			struct tunnel *t = s->tunnels;

			s->tunnels = t->next;
			SSH_RUN(s, mig_now_ms() + 2000, libssh2_channel_forward_cancel(t->l));
			mig_ssh_unref(t->to);
			free(t);
		}
		while (s->bridges) {
			struct bridge *b = s->bridges;

			s->bridges = b->next;
			bridge_free(s, b);
		}
		if (s->exec)
			stop_agent(s);
		SSH_RUN(s, mig_now_ms() + 2000,
			libssh2_session_disconnect(s->sess, "migratectl is done"));
		libssh2_session_free(s->sess);
	}
	if (s->wake >= 0)
		close(s->wake);
	if (s->sock >= 0)
		close(s->sock);
	pthread_mutex_destroy(&s->lock);
	free(s);
}
