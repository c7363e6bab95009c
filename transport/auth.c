// SPDX-License-Identifier: MIT
/*
 * Authentication primitives: HMAC-SHA256 (OpenSSL 3 EVP_MAC; the HMAC_CTX
 * API is deprecated there), constant-time comparison, kernel randomness and
 * the shared key file.
 */
#include <migrate/transport.h>

#include <errno.h>
#include <fcntl.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#define KEY_MAX 4096

static int hmac_sha256(const void *key, size_t key_len, const struct iovec *iov, int iovcnt,
		       uint8_t out[XPORT_MAC_LEN])
{
	static const unsigned char no_key;
	char digest[] = "SHA256";
	OSSL_PARAM params[] = {
		OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
		OSSL_PARAM_construct_end(),
	};
	EVP_MAC *mac;
	EVP_MAC_CTX *ctx = NULL;
	size_t outl = 0;
	int ok = 0;

	mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
	if (!mac)
		return -ENOSYS;
	ctx = EVP_MAC_CTX_new(mac);
	/* OpenSSL refuses a NULL key even at length 0; HMAC defines the
	 * empty key, so hand it a valid pointer. */
	if (!ctx || !EVP_MAC_init(ctx, key_len ? key : &no_key, key_len, params))
		goto out;
	for (int i = 0; i < iovcnt; i++)
		if (iov[i].iov_len && !EVP_MAC_update(ctx, iov[i].iov_base, iov[i].iov_len))
			goto out;
	ok = EVP_MAC_final(ctx, out, &outl, XPORT_MAC_LEN) && outl == XPORT_MAC_LEN;
out:
	EVP_MAC_CTX_free(ctx);
	EVP_MAC_free(mac);
	return ok ? 0 : -EIO;
}

void xport_hmac(const void *key, size_t key_len, const struct iovec *iov, int iovcnt,
		uint8_t out[XPORT_MAC_LEN])
{
	/*
	 * The API has no error path, so fail closed: if OpenSSL cannot compute
	 * the MAC, output unpredictable bytes.  A peer's MAC then does not
	 * match ours and authentication is refused, instead of both sides
	 * agreeing on some fixed value an attacker could also produce.
	 */
	if (hmac_sha256(key, key_len, iov, iovcnt, out) < 0 &&
	    xport_random(out, XPORT_MAC_LEN) < 0)
		memset(out, 0xa5, XPORT_MAC_LEN);
}

bool xport_mac_equal(const uint8_t *a, const uint8_t *b, size_t n)
{
	/* memcmp returns at the first difference, which tells an attacker
	 * how many leading bytes of a forged MAC were right. */
	return CRYPTO_memcmp(a, b, n) == 0;
}

int xport_random(void *buf, size_t n)
{
	uint8_t *p = buf;

	while (n) {
		/* getrandom may return fewer bytes than asked (large requests,
		 * signals); flags 0 blocks only until the pool is initialised. */
		ssize_t r = getrandom(p, n, 0);

		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += r;
		n -= (size_t)r;
	}
	return 0;
}

/* What a path that is not a regular file is, for the refusal. */
static const char *file_kind(mode_t mode)
{
	switch (mode & S_IFMT) {
	case S_IFDIR: return "a directory";
	case S_IFIFO: return "a FIFO";
	case S_IFSOCK: return "a socket";
	case S_IFCHR: return "a character device";
	case S_IFBLK: return "a block device";
	default: return "of an unknown kind";
	}
}

static int key_open_error(const char *path, int r, struct mig_error *err)
{
	if (r == -ENOENT)
		return mig_error_set(err, r, "key file %s does not exist (create one "
				     "with: (umask 077; head -c 32 /dev/urandom > %s))", path, path);
	return mig_error_set(err, r, "cannot read key file %s: %s", path, strerror(-r));
}

static int key_not_regular(const char *path, mode_t mode, struct mig_error *err)
{
	return mig_error_set(err, -EINVAL, "key file %s is %s, not a regular file: give a "
			     "file of 32 to %d bytes (make one with: (umask 077; head -c 32 "
			     "/dev/urandom > FILE))", path, file_kind(mode), KEY_MAX);
}

int xport_key_load(const char *path, struct mig_buf *ret, struct mig_error *err)
{
	uint8_t key[KEY_MAX + 1];
	struct mig_buf b = { 0 };
	size_t n = 0;
	struct stat st;
	int fd, r;

	/*
	 * Look before opening: opening a FIFO waits for a writer, forever if
	 * none comes, and opening a device can act on it.  O_NONBLOCK covers a
	 * path swapped for a FIFO in between, and fstat says what was opened.
	 * On a regular file O_NONBLOCK changes nothing: the reads below get
	 * all of its data.
	 */
	if (stat(path, &st) < 0)
		return key_open_error(path, -errno, err);
	if (!S_ISREG(st.st_mode))
		return key_not_regular(path, st.st_mode, err);
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0)
		return key_open_error(path, -errno, err);
	if (fstat(fd, &st) < 0) {
		r = -errno;
		close(fd);
		return mig_error_set(err, r, "cannot read key file %s: %s", path, strerror(-r));
	}
	if (!S_ISREG(st.st_mode)) {
		close(fd);
		return key_not_regular(path, st.st_mode, err);
	}
	/* A key others can read is a key others hold; one others can write is
	 * one they choose.  Refuse both rather than warn into a log. */
	if (st.st_mode & (S_IRGRP | S_IROTH)) {
		close(fd);
		return mig_error_set(err, -EPERM, "key file %s is readable by other users "
				     "(mode %04o; chmod 600 %s)", path,
				     (unsigned)(st.st_mode & 07777), path);
	}
	if (st.st_mode & (S_IWGRP | S_IWOTH)) {
		close(fd);
		return mig_error_set(err, -EPERM, "key file %s is writable by other users "
				     "(mode %04o; chmod 600 %s)", path,
				     (unsigned)(st.st_mode & 07777), path);
	}
	/* Read one byte past the limit to tell "exactly 4096" from "more". */
	while (n < sizeof(key)) {
		ssize_t got = read(fd, key + n, sizeof(key) - n);

		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0) {
			r = -errno;
			close(fd);
			explicit_bzero(key, sizeof(key));
			return mig_error_set(err, r, "cannot read key file %s: %s", path,
					     strerror(-r));
		}
		if (got == 0)
			break;
		n += (size_t)got;
	}
	close(fd);
	if (n < XPORT_KEY_MIN) {
		explicit_bzero(key, sizeof(key));
		return mig_error_set(err, -EINVAL, "key file %s holds %zu bytes; it needs at "
				     "least %d (create one with: head -c 32 /dev/urandom > %s)",
				     path, n, XPORT_KEY_MIN, path);
	}
	if (n > KEY_MAX) {
		explicit_bzero(key, sizeof(key));
		return mig_error_set(err, -EFBIG, "key file %s holds more than %d bytes; "
				     "a key is 32 to %d bytes (is this the right file?)",
				     path, KEY_MAX, KEY_MAX);
	}
	/* The whole content is the key, newline included if there is one:
	 * both sides read the same file, so nothing needs trimming. */
	r = mig_buf_append(&b, key, n);
	explicit_bzero(key, sizeof(key));
	if (r < 0)
		return mig_error_set(err, r, "loading key file %s: out of memory", path);
	if (ret->data)
		explicit_bzero(ret->data, ret->cap);
	mig_buf_free(ret);
	*ret = b;
	return 0;
}
