// SPDX-License-Identifier: MIT
/*
 * Endpoints: parsing the SRC/DST strings users type, and the blocking
 * control-plane socket setup (listen, connect) that precedes io_uring.
 */
#include <migrate/transport.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "util.h"

#include "transport-internal.h"

#define EP_FORMS "local, tcp://HOST:PORT, HOST:PORT, unix:///PATH or " \
	"ssh://[USER@]HOST[:PORT][/PATH]"
#define LISTEN_BACKLOG 64
#define SOCK_BUF_BYTES (4 << 20)

/* ---- parsing ---- */

static bool starts_with(const char *s, const char *prefix)
{
	return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* Decimal 1..65535, nothing else (no sign, no spaces, no hex). */
static int parse_port(const char *s, const char *what, uint16_t *ret, struct mig_error *err)
{
	unsigned long v = 0;

	if (!*s)
		return mig_error_set(err, -EINVAL, "%s: missing port after ':' "
				     "(expected a number from 1 to 65535)", what);
	for (const char *p = s; *p; p++) {
		if (*p < '0' || *p > '9')
			return mig_error_set(err, -EINVAL, "%s: port \"%s\" is not a number "
					     "(expected 1 to 65535)", what, s);
		v = v * 10 + (unsigned long)(*p - '0');
		if (v > 65535)
			break;
	}
	if (v == 0 || v > 65535)
		return mig_error_set(err, -ERANGE, "%s: port %s is out of range "
				     "(expected 1 to 65535)", what, s);
	*ret = (uint16_t)v;
	return 0;
}

/* Host names and IPv4 literals: letters, digits, '-', '.', '_'.  Refusing
 * everything else catches typos like "tcp://host/path" or a stray space
 * here instead of as a confusing resolver error later. */
static bool host_name_ok(const char *h, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		char c = h[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_'))
			return false;
	}
	return true;
}

/* Inside brackets: an IPv6 literal, optionally with a %zone. */
static bool host_v6_ok(const char *h, size_t n)
{
	bool colon = false, zone = false;

	for (size_t i = 0; i < n; i++) {
		char c = h[i];

		if (zone) {
			if (!host_name_ok(&c, 1))
				return false;
			continue;
		}
		if (c == ':')
			colon = true;
		else if (c == '%')
			zone = true;
		else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') ||
			   (c >= 'A' && c <= 'F') || c == '.'))
			return false;
	}
	return colon;
}

/*
 * "HOST:PORT", "[V6]:PORT", and when default_port is non-zero also "HOST"
 * and "[V6]".  The host lands in ep->host without brackets.
 */
static int parse_host_port(const char *s, const char *what, uint16_t default_port,
			   struct xport_endpoint *ep, struct mig_error *err)
{
	const char *host, *port = NULL;
	size_t hlen;

	if (*s == '[') {
		const char *close = strchr(s, ']');

		if (!close)
			return mig_error_set(err, -EINVAL, "%s: missing ']' after the IPv6 "
					     "address (write it as [ADDR]:PORT)", what);
		host = s + 1;
		hlen = (size_t)(close - host);
		if (close[1] == ':')
			port = close + 2;
		else if (close[1])
			return mig_error_set(err, -EINVAL, "%s: unexpected \"%s\" after the "
					     "IPv6 address (expected :PORT)", what, close + 1);
		if (!hlen)
			return mig_error_set(err, -EINVAL, "%s: empty host", what);
		if (!host_v6_ok(host, hlen))
			return mig_error_set(err, -EINVAL, "%s: \"%.*s\" is not an IPv6 "
					     "address", what, (int)hlen, host);
	} else {
		const char *colon = strchr(s, ':');

		host = s;
		if (colon && strchr(colon + 1, ':'))
			return mig_error_set(err, -EINVAL, "%s: an IPv6 address needs "
					     "brackets: [ADDR]:PORT, e.g. tcp://[::1]:4444",
					     what);
		hlen = colon ? (size_t)(colon - s) : strlen(s);
		if (colon)
			port = colon + 1;
		if (!hlen)
			return mig_error_set(err, -EINVAL, "%s: empty host (expected "
					     "HOST:PORT)", what);
		if (!host_name_ok(host, hlen))
			return mig_error_set(err, -EINVAL, "%s: \"%.*s\" is not a valid "
					     "host name or address", what, (int)hlen, host);
	}
	if (hlen >= sizeof(ep->host))
		return mig_error_set(err, -ENAMETOOLONG, "%s: host name is %zu characters; "
				     "at most %zu are allowed", what, hlen,
				     sizeof(ep->host) - 1);
	memcpy(ep->host, host, hlen);
	ep->host[hlen] = '\0';

	if (port)
		return parse_port(port, what, &ep->port, err);
	if (!default_port)
		return mig_error_set(err, -EINVAL, "%s: missing port (expected HOST:PORT, "
				     "e.g. tcp://%s:4444)", what, ep->host);
	ep->port = default_port;
	return 0;
}

/* ssh://[USER@]HOST[:PORT][/PATH]: the remote agent's socket in ep->path
 * (XPORT_SSH_AGENT_SOCK when none is given).  A host name has no '/', so the
 * first one starts the path. */
static int ssh_host_path(const char *rest, const char *what, struct xport_endpoint *ep,
			 struct mig_error *err)
{
	const char *slash = strchr(rest, '/');
	char hostport[300];
	size_t n = slash ? (size_t)(slash - rest) : strlen(rest);

	if (n >= sizeof(hostport))
		return mig_error_set(err, -ENAMETOOLONG, "%s: host name is %zu characters; at "
				     "most %zu are allowed", what, n, sizeof(ep->host) - 1);
	memcpy(hostport, rest, n);
	hostport[n] = '\0';
	if (!slash) {
		str_copy(ep->path, sizeof(ep->path), XPORT_SSH_AGENT_SOCK);
	} else if (!slash[1]) {
		return mig_error_set(err, -EINVAL, "%s: empty socket path after the host "
				     "(expected ssh://[USER@]HOST[:PORT][/ABSOLUTE/PATH], or "
				     "nothing after HOST[:PORT] for %s)", what,
				     XPORT_SSH_AGENT_SOCK);
	} else if (strlen(slash) >= sizeof(ep->path)) {
		return mig_error_set(err, -ENAMETOOLONG, "%s: the remote socket path is %zu "
				     "bytes; unix sockets allow at most %zu", what, strlen(slash),
				     sizeof(ep->path) - 1);
	} else {
		memcpy(ep->path, slash, strlen(slash) + 1);
	}
	return parse_host_port(hostport, what, 22, ep, err);
}

int xport_endpoint_parse(const char *s, struct xport_endpoint *ret, struct mig_error *err)
{
	struct xport_endpoint ep = { 0 };
	char what[300];
	const char *sep;
	int r;

	if (!s || !*s)
		return mig_error_set(err, -EINVAL, "empty endpoint; expected " EP_FORMS);
	snprintf(what, sizeof(what), "endpoint \"%s\"", s);

	if (strcmp(s, "local") == 0) {
		ep.kind = XPORT_EP_LOCAL;
	} else if (starts_with(s, "tcp://")) {
		ep.kind = XPORT_EP_TCP;
		r = parse_host_port(s + 6, what, 0, &ep, err);
		if (r < 0)
			return r;
	} else if (starts_with(s, "unix://")) {
		const char *path = s + 7;
		size_t n = strlen(path);

		ep.kind = XPORT_EP_UNIX;
		if (!n)
			return mig_error_set(err, -EINVAL, "%s: missing path (expected "
					     "unix:///ABSOLUTE/PATH)", what);
		if (path[0] != '/')
			return mig_error_set(err, -EINVAL, "%s: the socket path must be "
					     "absolute: unix:///ABSOLUTE/PATH (three slashes)",
					     what);
		/* sun_path needs room for the terminating NUL. */
		if (n >= sizeof(ep.path))
			return mig_error_set(err, -ENAMETOOLONG, "%s: socket path is %zu "
					     "bytes; unix sockets allow at most %zu", what, n,
					     sizeof(ep.path) - 1);
		memcpy(ep.path, path, n + 1);
	} else if (starts_with(s, "ssh://")) {
		const char *rest = s + 6, *at = strchr(rest, '@');

		ep.kind = XPORT_EP_SSH;
		if (at) {
			size_t ulen = (size_t)(at - rest);

			if (!ulen)
				return mig_error_set(err, -EINVAL, "%s: empty user name before "
						     "'@' (expected ssh://[USER@]HOST[:PORT])",
						     what);
			if (ulen >= sizeof(ep.user))
				return mig_error_set(err, -ENAMETOOLONG, "%s: user name is %zu "
						     "characters; at most %zu are allowed",
						     what, ulen, sizeof(ep.user) - 1);
			if (!host_name_ok(rest, ulen))
				return mig_error_set(err, -EINVAL, "%s: \"%.*s\" is not a valid "
						     "user name", what, (int)ulen, rest);
			memcpy(ep.user, rest, ulen);
			ep.user[ulen] = '\0';
			rest = at + 1;
		}
		r = ssh_host_path(rest, what, &ep, err);
		if (r < 0)
			return r;
	} else if ((sep = strstr(s, "://"))) {
		return mig_error_set(err, -EINVAL, "unknown endpoint scheme \"%.*s\" in \"%s\"; "
				     "expected " EP_FORMS, (int)(sep - s), s, s);
	} else if (strchr(s, ':')) {
		ep.kind = XPORT_EP_TCP;
		r = parse_host_port(s, what, 0, &ep, err);
		if (r < 0)
			return r;
	} else {
		return mig_error_set(err, -EINVAL, "%s is not an endpoint; expected " EP_FORMS
				     " (a bare host needs a port)", what);
	}
	*ret = ep;
	return 0;
}

void xport_endpoint_format(const struct xport_endpoint *ep, char *buf, size_t n)
{
	/* An IPv6 literal needs its brackets back, or the port looks like part
	 * of the address. */
	bool v6 = strchr(ep->host, ':') != NULL;
	const char *lb = v6 ? "[" : "", *rb = v6 ? "]" : "";

	if (!n)
		return;
	switch (ep->kind) {
	case XPORT_EP_LOCAL:
		snprintf(buf, n, "local");
		break;
	case XPORT_EP_TCP:
		snprintf(buf, n, "tcp://%s%s%s:%u", lb, ep->host, rb, ep->port);
		break;
	case XPORT_EP_UNIX:
		snprintf(buf, n, "unix://%s", ep->path);
		break;
	case XPORT_EP_SSH: {
		/* the default socket goes unsaid; any other parses back */
		const char *path = strcmp(ep->path, XPORT_SSH_AGENT_SOCK) ? ep->path : "";
		char port[8] = "";

		if (ep->port != 22)
			snprintf(port, sizeof(port), ":%u", ep->port);
		snprintf(buf, n, "ssh://%s%s%s%s%s%s%s", ep->user, *ep->user ? "@" : "", lb,
			 ep->host, rb, port, path);
		break;
	}
	default:
		snprintf(buf, n, "(endpoint kind %d)", (int)ep->kind);
		break;
	}
}

/* ---- socket setup ---- */

/* Reads an integer sysctl; -1 when it cannot be read. */
static long read_sysctl(const char *path)
{
	char buf[32] = { 0 };
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return -1;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	return n > 0 ? strtol(buf, NULL, 10) : -1;
}

/*
 * Setting SO_SNDBUF/SO_RCVBUF on a TCP socket switches off the kernel's
 * buffer autotuning for good, and the request is silently capped at
 * net.core.[wr]mem_max (often only 208 KiB).  A capped request would leave
 * us with smaller buffers than autotuning would have grown, so: force the
 * size where we may (CAP_NET_ADMIN), else set it only when the cap lets the
 * full size through, else leave autotuning alone.
 */
static void tune_buf(int fd, bool tcp, int opt, int force_opt, const char *max_path)
{
	int v = SOCK_BUF_BYTES;
	long max;

	if (setsockopt(fd, SOL_SOCKET, force_opt, &v, sizeof(v)) == 0)
		return;
	max = read_sysctl(max_path);
	if (!tcp || max >= SOCK_BUF_BYTES)
		(void)setsockopt(fd, SOL_SOCKET, opt, &v, sizeof(v));
}

static bool addr_is_loopback(const struct sockaddr_storage *a)
{
	if (a->ss_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)a;

		return (ntohl(in->sin_addr.s_addr) >> 24) == 127;
	}
	if (a->ss_family == AF_INET6) {
		const struct in6_addr *in6 = &((const struct sockaddr_in6 *)a)->sin6_addr;

		return IN6_IS_ADDR_LOOPBACK(in6) ||
		       (IN6_IS_ADDR_V4MAPPED(in6) && in6->s6_addr[12] == 127);
	}
	return false;
}

bool xport_addrs_same_host(const struct sockaddr_storage *local,
			   const struct sockaddr_storage *peer)
{
	if (peer->ss_family == AF_UNIX)
		return true;
	if (addr_is_loopback(peer))
		return true;
	if (local->ss_family != peer->ss_family)
		return false;
	if (peer->ss_family == AF_INET)
		return ((const struct sockaddr_in *)local)->sin_addr.s_addr ==
		       ((const struct sockaddr_in *)peer)->sin_addr.s_addr;
	if (peer->ss_family == AF_INET6)
		return !memcmp(&((const struct sockaddr_in6 *)local)->sin6_addr,
			       &((const struct sockaddr_in6 *)peer)->sin6_addr,
			       sizeof(struct in6_addr));
	return false;
}

bool xport_same_host(int fd)
{
	struct sockaddr_storage local = { 0 }, peer = { 0 };
	socklen_t ll = sizeof(local), pl = sizeof(peer);

	if (getsockname(fd, (struct sockaddr *)&local, &ll) < 0 ||
	    getpeername(fd, (struct sockaddr *)&peer, &pl) < 0)
		return false;
	return xport_addrs_same_host(&local, &peer);
}

void xport_keepalive(int fd, int idle_s, int intvl_s, int cnt)
{
	int domain = 0, one = 1;
	socklen_t len = sizeof(domain);

	if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) < 0 ||
	    (domain != AF_INET && domain != AF_INET6))
		return;
	(void)setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
	(void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle_s, sizeof(idle_s));
	(void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl_s, sizeof(intvl_s));
	(void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt));
}

void xport_tune_socket(int fd)
{
	int domain = 0, type = 0, one = 1, fl;
	socklen_t len = sizeof(domain);
	bool tcp;

	fl = fcntl(fd, F_GETFD);
	if (fl >= 0 && !(fl & FD_CLOEXEC))
		(void)fcntl(fd, F_SETFD, fl | FD_CLOEXEC);
	if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) < 0)
		return;     /* not a socket: nothing more to tune */
	len = sizeof(type);
	(void)getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len);
	tcp = (domain == AF_INET || domain == AF_INET6) && type == SOCK_STREAM;
	/* Frames are written whole; Nagle would only delay the small control
	 * frames that a waiting peer needs now. */
	if (tcp) {
		(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		/* A peer whose side is gone without a word (its socket aborted by
		 * a local reset, its host cut off) is found in seconds, not at
		 * an idle timeout: neither a destination waiting for pages nor a
		 * client waiting for a RESULT holds on to nothing. */
		xport_keepalive(fd, XPORT_KEEPALIVE_IDLE_S, XPORT_KEEPALIVE_INTVL_S,
				XPORT_KEEPALIVE_CNT);
		/* TCP keeps the kernel's buffer autotuning: see xport_lone_stream(). */
		return;
	}
	tune_buf(fd, tcp, SO_SNDBUF, SO_SNDBUFFORCE, "/proc/sys/net/core/wmem_max");
	tune_buf(fd, tcp, SO_RCVBUF, SO_RCVBUFFORCE, "/proc/sys/net/core/rmem_max");
}

void xport_lone_stream(int fd)
{
	tune_buf(fd, true, SO_SNDBUF, SO_SNDBUFFORCE, "/proc/sys/net/core/wmem_max");
	tune_buf(fd, true, SO_RCVBUF, SO_RCVBUFFORCE, "/proc/sys/net/core/rmem_max");
}

static int resolve(const struct xport_endpoint *ep, bool passive, struct addrinfo **ret,
		   struct mig_error *err)
{
	struct addrinfo hints = {
		.ai_family = AF_UNSPEC,
		.ai_socktype = SOCK_STREAM,
		.ai_flags = AI_NUMERICSERV | (passive ? AI_PASSIVE : 0),
	};
	char port[8], name[400];
	int gai, r;

	snprintf(port, sizeof(port), "%u", ep->port);
	gai = getaddrinfo(ep->host, port, &hints, ret);
	if (gai == 0)
		return 0;
	xport_endpoint_format(ep, name, sizeof(name));
	switch (gai) {
	case EAI_SYSTEM:
		r = errno ? -errno : -EIO;
		break;
	case EAI_MEMORY:
		r = -ENOMEM;
		break;
	case EAI_AGAIN:
		r = -EAGAIN;
		break;
	default:
		r = -EHOSTUNREACH;
		break;
	}
	return mig_error_set(err, r, "cannot resolve host \"%s\" of %s: %s", ep->host, name,
			     gai == EAI_SYSTEM ? strerror(-r) : gai_strerror(gai));
}

static int unix_addr(const struct xport_endpoint *ep, struct sockaddr_un *sun,
		     struct mig_error *err)
{
	size_t n = strnlen(ep->path, sizeof(ep->path));

	memset(sun, 0, sizeof(*sun));
	sun->sun_family = AF_UNIX;
	if (n == 0 || n >= sizeof(sun->sun_path) || ep->path[0] != '/')
		return mig_error_set(err, -EINVAL, "unix socket path \"%.*s\" must be absolute "
				     "and shorter than %zu bytes", (int)n, ep->path,
				     sizeof(sun->sun_path));
	memcpy(sun->sun_path, ep->path, n);
	return 0;
}

static int listen_tcp(const struct xport_endpoint *ep, const char *name, struct mig_error *err)
{
	struct addrinfo *ai = NULL;
	int r, last = -EADDRNOTAVAIL;
	const char *step = "bind";

	r = resolve(ep, true, &ai, err);
	if (r < 0)
		return r;
	for (struct addrinfo *a = ai; a; a = a->ai_next) {
		int one = 1, fd;

		fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
		if (fd < 0) {
			last = -errno;
			step = "socket";
			continue;
		}
		/* A restarted agent must not wait out TIME_WAIT of the old one. */
		(void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		/* Accepted sockets inherit buffer sizes and TCP_NODELAY, and the
		 * receive window scale is fixed at SYN time: tune before listen. */
		xport_tune_socket(fd);
		if (bind(fd, a->ai_addr, a->ai_addrlen) < 0) {
			last = -errno;
			step = "bind";
			close(fd);
			continue;
		}
		if (listen(fd, LISTEN_BACKLOG) < 0) {
			last = -errno;
			step = "listen";
			close(fd);
			continue;
		}
		freeaddrinfo(ai);
		return fd;
	}
	freeaddrinfo(ai);
	if (last == -EADDRINUSE)
		return mig_error_set(err, last, "cannot listen on %s: the port is in use "
				     "(another agent running?)", name);
	if (last == -EADDRNOTAVAIL)
		return mig_error_set(err, last, "cannot listen on %s: %s is not an address "
				     "of this host", name, ep->host);
	return mig_error_set(err, last, "cannot listen on %s: %s: %s", name, step,
			     strerror(-last));
}

/*
 * A unix socket file outlives its listener.  Remove it only when it is a
 * socket and nobody answers on it: never a regular file someone mistyped,
 * never a live agent's socket.
 */
static int unix_remove_stale(const struct sockaddr_un *sun, const char *name,
			     struct mig_error *err)
{
	struct stat st;
	int fd, r;

	if (lstat(sun->sun_path, &st) < 0)
		return errno == ENOENT ? 0 : mig_error_set(err, -errno, "cannot listen on %s: "
							   "%s", name, strerror(errno));
	if (!S_ISSOCK(st.st_mode))
		return mig_error_set(err, -EEXIST, "cannot listen on %s: %s exists and is not "
				     "a socket; remove it or choose another path", name,
				     sun->sun_path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return mig_error_set(err, -errno, "cannot listen on %s: socket: %s", name,
				     strerror(errno));
	r = connect(fd, (const struct sockaddr *)sun, sizeof(*sun));
	r = r < 0 ? -errno : 0;
	close(fd);
	/* EAGAIN: a live listener with a full backlog, still somebody's. */
	if (r == 0 || r == -EAGAIN)
		return mig_error_set(err, -EADDRINUSE, "cannot listen on %s: another process "
				     "already listens there", name);
	if (r != -ECONNREFUSED)
		return mig_error_set(err, r, "cannot listen on %s: probing the existing "
				     "socket: %s", name, strerror(-r));
	if (unlink(sun->sun_path) < 0 && errno != ENOENT)
		return mig_error_set(err, -errno, "cannot listen on %s: removing the stale "
				     "socket: %s", name, strerror(errno));
	return 0;
}

/*
 * Who may connect to a unix socket is decided by its file's mode: connect()
 * needs write permission on it.  bind() creates the file with the socket
 * inode's mode less the umask, so the mode is set on the socket before
 * bind() (Linux): the file then never exists with more permissions than
 * `mode`, whatever the umask, and the process-wide umask is left alone for
 * other threads.  The umask may still have taken bits away (0660 under
 * umask 027 is 0640), so once bound the file gets its group and its exact
 * mode; in between it is only ever narrower than asked for.  Those two go
 * by path, and a process that could swap the file in between could as well
 * replace the socket outright: the directory must be trusted either way.
 * lchown() and the S_ISSOCK check just keep a symlink from redirecting us.
 */
static int unix_set_access(const char *path, mode_t mode, gid_t group, const char *name,
			   struct mig_error *err)
{
	struct stat st;

	if (group != (gid_t)-1 && lchown(path, (uid_t)-1, group) < 0)
		return mig_error_set(err, -errno, "cannot listen on %s: giving the socket to "
				     "group %u: %s (only root or a member of the group may)",
				     name, (unsigned)group, strerror(errno));
	if (lstat(path, &st) < 0)
		return mig_error_set(err, -errno, "cannot listen on %s: %s", name, strerror(errno));
	if (!S_ISSOCK(st.st_mode))
		return mig_error_set(err, -EEXIST, "cannot listen on %s: %s was replaced by "
				     "something other than our socket", name, path);
	if (chmod(path, mode) < 0)
		return mig_error_set(err, -errno, "cannot listen on %s: chmod %o: %s", name,
				     (unsigned)mode, strerror(errno));
	return 0;
}

static int listen_unix(const struct xport_endpoint *ep, const char *name, mode_t mode,
		       gid_t group, struct mig_error *err)
{
	struct sockaddr_un sun;
	int fd, r;

	r = unix_addr(ep, &sun, err);
	if (r < 0)
		return r;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return mig_error_set(err, -errno, "cannot listen on %s: socket: %s", name,
				     strerror(errno));
	xport_tune_socket(fd);
	if (fchmod(fd, mode) < 0) {
		r = -errno;
		close(fd);
		return mig_error_set(err, r, "cannot listen on %s: fchmod: %s", name, strerror(-r));
	}
	for (int attempt = 0;; attempt++) {
		if (bind(fd, (struct sockaddr *)&sun, sizeof(sun)) == 0)
			break;
		r = -errno;
		if (r != -EADDRINUSE || attempt > 0) {
			close(fd);
			return mig_error_set(err, r, "cannot listen on %s: bind: %s", name,
					     strerror(-r));
		}
		r = unix_remove_stale(&sun, name, err);
		if (r < 0) {
			close(fd);
			return r;
		}
	}
	/* Exact access before listen(): nobody connects in between. */
	r = unix_set_access(sun.sun_path, mode, group, name, err);
	if (r >= 0 && listen(fd, LISTEN_BACKLOG) < 0) {
		r = -errno;
		mig_error_set(err, r, "cannot listen on %s: listen: %s", name, strerror(-r));
	}
	if (r < 0) {
		close(fd);
		unlink(sun.sun_path);
		return r;
	}
	return fd;
}

int xport_listen(const struct xport_endpoint *ep, struct mig_error *err)
{
	char name[400];

	xport_endpoint_format(ep, name, sizeof(name));
	switch (ep->kind) {
	case XPORT_EP_TCP:
		return listen_tcp(ep, name, err);
	case XPORT_EP_UNIX:
		return listen_unix(ep, name, 0600, (gid_t)-1, err);
	default:
		return mig_error_set(err, -EINVAL, "cannot listen on %s: only tcp:// and "
				     "unix:// endpoints can listen", name);
	}
}

int xport_listen_group(const struct xport_endpoint *ep, gid_t group, struct mig_error *err)
{
	char name[400];

	xport_endpoint_format(ep, name, sizeof(name));
	if (ep->kind != XPORT_EP_UNIX)
		return mig_error_set(err, -EINVAL, "cannot listen on %s: a socket group applies "
				     "to unix:// endpoints only", name);
	return listen_unix(ep, name, 0660, group, err);
}

/*
 * A listening socket handed over by a service manager (systemd's socket
 * activation): taken only if it is what ep names, so the agent's rules for
 * ep's kind (a unix socket's peer credentials, a tcp socket's key) hold for
 * it.  The kind must match (unix: AF_UNIX; tcp: AF_INET or AF_INET6), and
 * the address too: a unix socket's path, a tcp socket's port.
 */
int xport_listen_inherited(const struct xport_endpoint *ep, int fd, struct mig_error *err)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(int), sl = sizeof(ss);
	int type = 0, acc = 0, domain = 0;
	char name[400];

	xport_endpoint_format(ep, name, sizeof(name));
	if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) < 0)
		return mig_error_set(err, -EINVAL, "the inherited fd %d is not a socket (%s): the "
				     "service manager must pass the agent's listening socket",
				     fd, strerror(errno));
	len = sizeof(acc);
	if (type != SOCK_STREAM)
		return mig_error_set(err, -EINVAL, "the inherited fd %d is not a stream socket: "
				     "its .socket unit must use ListenStream=", fd);
	if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &acc, &len) < 0 || !acc)
		return mig_error_set(err, -EINVAL, "the inherited fd %d is not a listening socket "
				     "(a connection?): its .socket unit must have Accept=no", fd);
	len = sizeof(domain);
	if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) < 0 ||
	    getsockname(fd, (struct sockaddr *)&ss, &sl) < 0)
		return mig_error_set(err, -EINVAL, "the inherited fd %d: %s", fd, strerror(errno));
	if (ep->kind == XPORT_EP_UNIX) {
		const struct sockaddr_un *sun = (const struct sockaddr_un *)&ss;
		size_t n = sl > offsetof(struct sockaddr_un, sun_path) ?
			   sl - offsetof(struct sockaddr_un, sun_path) : 0;

		if (domain != AF_UNIX)
			return mig_error_set(err, -EINVAL, "the inherited fd %d is a tcp socket but "
					     "--listen is %s: make ListenStream= and --listen the "
					     "same kind", fd, name);
		if (strnlen(sun->sun_path, n) != strlen(ep->path) ||
		    memcmp(sun->sun_path, ep->path, strlen(ep->path)) != 0)
			return mig_error_set(err, -EINVAL, "the inherited fd %d listens on "
					     "unix://%.*s but --listen is %s: make ListenStream= "
					     "and --listen name the same path", fd,
					     (int)strnlen(sun->sun_path, n), sun->sun_path, name);
	} else if (ep->kind == XPORT_EP_TCP) {
		uint16_t port;

		if (domain != AF_INET && domain != AF_INET6)
			return mig_error_set(err, -EINVAL, "the inherited fd %d is a %s socket but "
					     "--listen is %s: make ListenStream= and --listen the "
					     "same kind", fd, domain == AF_UNIX ? "unix" :
					     "non-IP", name);
		port = ntohs(domain == AF_INET ? ((struct sockaddr_in *)&ss)->sin_port :
			     ((struct sockaddr_in6 *)&ss)->sin6_port);
		if (port != ep->port)
			return mig_error_set(err, -EINVAL, "the inherited fd %d listens on port %u "
					     "but --listen is %s: make ListenStream= and --listen "
					     "name the same port", fd, port, name);
	} else {
		return mig_error_set(err, -EINVAL, "cannot listen on %s: only tcp:// and unix:// "
				     "endpoints can listen", name);
	}
	xport_tune_socket(fd);
	return fd;
}

/*
 * Non-blocking connect bounded by the deadline, then back to blocking: the
 * data path never blocks in the socket anyway (io_uring polls), and blocking
 * mode keeps any plain read/write a caller does on the control fd simple.
 * Returns the fd or -errno (no message; the caller words it).
 */
static int connect_one(int family, int type, int proto, const struct sockaddr *sa,
		       socklen_t salen, int64_t deadline)
{
	int fd, r, soerr = 0, fl;
	socklen_t len = sizeof(soerr);

	fd = socket(family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, proto);
	if (fd < 0)
		return -errno;
	xport_tune_socket(fd);   /* before SYN; TCP sizes its window scale from the sysctl maxima */
	for (;;) {
		if (connect(fd, sa, salen) == 0)
			break;
		r = -errno;
		if (r == -EINTR)
			continue;
		if (r == -EAGAIN && family == AF_UNIX) {
			/* A unix listener's backlog is full: no poll wakes us for
			 * that, so retry briefly until the deadline. */
			if (remaining_ms(deadline) == 0 || xport_interrupted()) {
				close(fd);
				return xport_interrupted() ? -EINTR : -ETIMEDOUT;
			}
			nanosleep(&(struct timespec){ .tv_nsec = 10 * 1000 * 1000 }, NULL);
			continue;
		}
		if (r != -EINPROGRESS) {
			close(fd);
			return r;
		}
		{
			struct pollfd p = { .fd = fd, .events = POLLOUT };
			int n = xport_poll_until(&p, deadline);

			if (n <= 0) {
				close(fd);
				return n == 0 ? -ETIMEDOUT : n;
			}
		}
		if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) < 0)
			soerr = errno;
		if (soerr) {
			close(fd);
			return -soerr;
		}
		break;
	}
	fl = fcntl(fd, F_GETFL);
	if (fl < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) < 0) {
		r = -errno;
		close(fd);
		return r;
	}
	return fd;
}

static int connect_error(const char *name, int r, int timeout_ms, struct mig_error *err)
{
	switch (r) {
	case -ECONNREFUSED:
		return mig_error_set(err, r, "nothing listens on %s (is the agent running?)",
				     name);
	case -ENOENT:
		return mig_error_set(err, r, "no socket at %s (is the agent running?)", name);
	case -ETIMEDOUT:
		return mig_error_set(err, r, "no answer from %s within %d ms (host down, "
				     "or a firewall dropping packets?)", name, timeout_ms);
	case -ENETUNREACH:
	case -EHOSTUNREACH:
		return mig_error_set(err, r, "cannot reach %s: %s (check the address and "
				     "routes)", name, strerror(-r));
	default:
		return mig_error_set(err, r, "cannot connect to %s: %s", name, strerror(-r));
	}
}

int xport_connect(const struct xport_endpoint *ep, int timeout_ms, struct mig_error *err)
{
	int64_t deadline = timeout_ms < 0 ? -1 : now_ms() + timeout_ms;
	char name[400];
	int r;

	xport_endpoint_format(ep, name, sizeof(name));
	if (ep->kind == XPORT_EP_TCP) {
		struct addrinfo *ai = NULL;

		r = resolve(ep, false, &ai, err);
		if (r < 0)
			return r;
		r = -EHOSTUNREACH;
		/* Try every address (e.g. ::1 then 127.0.0.1 for "localhost");
		 * report the last failure. */
		for (struct addrinfo *a = ai; a; a = a->ai_next) {
			r = connect_one(a->ai_family, a->ai_socktype, a->ai_protocol,
					a->ai_addr, a->ai_addrlen, deadline);
			if (r >= 0 || r == -ETIMEDOUT)
				break;
		}
		freeaddrinfo(ai);
	} else if (ep->kind == XPORT_EP_UNIX) {
		struct sockaddr_un sun;

		r = unix_addr(ep, &sun, err);
		if (r < 0)
			return r;
		r = connect_one(AF_UNIX, SOCK_STREAM, 0, (struct sockaddr *)&sun, sizeof(sun),
				deadline);
	} else {
		return mig_error_set(err, -EINVAL, "cannot connect to %s directly: only tcp:// "
				     "and unix:// endpoints take a plain socket connection",
				     name);
	}
	if (r < 0)
		return connect_error(name, r, timeout_ms, err);
	return r;
}

int xport_local_addr(int fd, char *buf, size_t n)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	char host[INET6_ADDRSTRLEN];
	int w;

	if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
		return -errno;
	if (ss.ss_family == AF_INET) {
		struct sockaddr_in *sin = (struct sockaddr_in *)&ss;

		inet_ntop(AF_INET, &sin->sin_addr, host, sizeof(host));
		w = snprintf(buf, n, "%s:%u", host, ntohs(sin->sin_port));
	} else if (ss.ss_family == AF_INET6) {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;

		/* Brackets, so the result parses back as an endpoint. */
		inet_ntop(AF_INET6, &sin6->sin6_addr, host, sizeof(host));
		w = snprintf(buf, n, "[%s]:%u", host, ntohs(sin6->sin6_port));
	} else if (ss.ss_family == AF_UNIX && len > offsetof(struct sockaddr_un, sun_path) &&
		   ((struct sockaddr_un *)&ss)->sun_path[0] == '/') {
		struct sockaddr_un *sun = (struct sockaddr_un *)&ss;

		w = snprintf(buf, n, "unix://%.*s", (int)(len - offsetof(struct sockaddr_un,
									sun_path)),
			     sun->sun_path);
	} else {
		return -EAFNOSUPPORT;
	}
	if (w < 0 || (size_t)w >= n)
		return -ENOSPC;
	return 0;
}
