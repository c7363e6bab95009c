// SPDX-License-Identifier: MIT
/*
 * Sealed frames (include/migrate/aead.h, docs/protocol.md §1.8):
 * AES-256-GCM through OpenSSL's EVP, keys from HKDF-SHA256.  One cipher
 * context per direction, keyed once; each frame only sets its nonce.
 */
#include <endian.h>
#include <errno.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/params.h>
#include <stdlib.h>
#include <string.h>

#include <migrate/aead.h>

#include "util.h"

struct xport_aead {
	EVP_CIPHER_CTX *ctx[2];   /* 0 sends, 1 receives */
	uint8_t iv[2][XPORT_AEAD_IV];
};

enum { TX = 0, RX = 1 };

static int hkdf(const void *ikm, size_t ikm_len, const void *salt, size_t salt_len,
		const void *info, size_t info_len, uint8_t *out, size_t n)
{
	EVP_KDF *kdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
	EVP_KDF_CTX *ctx = kdf ? EVP_KDF_CTX_new(kdf) : NULL;
	char digest[] = "SHA256";
	OSSL_PARAM params[] = {
		OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, digest, 0),
		OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, (void *)ikm, ikm_len),
		OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, (void *)salt, salt_len),
		OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, (void *)info, info_len),
		OSSL_PARAM_construct_end(),
	};
	int ok = ctx && EVP_KDF_derive(ctx, out, n, params) > 0;

	EVP_KDF_CTX_free(ctx);
	EVP_KDF_free(kdf);
	return ok ? 0 : -EIO;
}

int xport_aead_new(const void *ikm, size_t ikm_len, const void *salt, size_t salt_len,
		   const char *label, const void *context, size_t context_len, bool initiator,
		   struct xport_aead **ret, struct mig_error *err)
{
	uint8_t okm[2 * (XPORT_AEAD_KEY + XPORT_AEAD_IV)], info[256];
	size_t llen = strlen(label);
	struct xport_aead *a;
	EVP_CIPHER *gcm;
	int r = -EIO;

	*ret = NULL;
	if (llen + context_len > sizeof(info))
		return mig_error_set(err, -EINVAL, "internal: key context of %zu bytes",
				     llen + context_len);
	memcpy(info, label, llen);
	if (context_len)
		memcpy(info + llen, context, context_len);
	a = calloc(1, sizeof(*a));
	if (!a)
		return mig_error_set(err, -ENOMEM, "out of memory");
	gcm = EVP_CIPHER_fetch(NULL, "AES-256-GCM", NULL);
	if (!gcm || hkdf(ikm, ikm_len, salt, salt_len, info, llen + context_len, okm,
			 sizeof(okm)) < 0)
		goto fail;
	for (int d = 0; d < 2; d++) {
		/* the initiator sends with the first pair */
		const uint8_t *k = okm + ((d == TX) == initiator ? 0 : XPORT_AEAD_KEY + XPORT_AEAD_IV);

		a->ctx[d] = EVP_CIPHER_CTX_new();
		if (!a->ctx[d] || !EVP_CipherInit_ex(a->ctx[d], gcm, NULL, k, NULL, d == TX))
			goto fail;
		memcpy(a->iv[d], k + XPORT_AEAD_KEY, XPORT_AEAD_IV);
	}
	EVP_CIPHER_free(gcm);
	OPENSSL_cleanse(okm, sizeof(okm));
	*ret = a;
	return 0;
fail:
	EVP_CIPHER_free(gcm);
	OPENSSL_cleanse(okm, sizeof(okm));
	xport_aead_free(a);
	return mig_error_set(err, r, "OpenSSL cannot set up AES-256-GCM with HKDF-SHA256 keys");
}

void xport_aead_free(struct xport_aead *a)
{
	if (!a)
		return;
	for (int d = 0; d < 2; d++)
		EVP_CIPHER_CTX_free(a->ctx[d]);
	OPENSSL_cleanse(a, sizeof(*a));
	free(a);
}

/* The IV with the part (first 4 bytes) and seq (last 8) mixed in. */
static void nonce_of(const uint8_t iv[XPORT_AEAD_IV], uint64_t seq, uint32_t part,
		     uint8_t out[XPORT_AEAD_IV])
{
	uint32_t p = htole32(part);
	uint64_t s = htole64(seq);

	memcpy(out, iv, XPORT_AEAD_IV);
	for (int i = 0; i < 4; i++)
		out[i] ^= ((const uint8_t *)&p)[i];
	for (int i = 0; i < 8; i++)
		out[4 + i] ^= ((const uint8_t *)&s)[i];
}

/* One AEAD pass: aad, then in[i] into out[i]; the tag made (tx) or checked
 * (rx).  1 when it opened (or sealed), 0 when a tag did not match, <0 when
 * OpenSSL failed. */
static int pass(struct xport_aead *a, int d, uint64_t seq, uint32_t part, const void *aad,
		size_t aad_len, const struct iovec *in, const struct iovec *out, int n,
		uint8_t *tag)
{
	EVP_CIPHER_CTX *ctx = a->ctx[d];
	uint8_t nonce[XPORT_AEAD_IV];
	int outl;

	nonce_of(a->iv[d], seq, part, nonce);
	if (!EVP_CipherInit_ex(ctx, NULL, NULL, NULL, nonce, -1))
		return -EIO;
	if (aad_len && !EVP_CipherUpdate(ctx, NULL, &outl, aad, (int)aad_len))
		return -EIO;
	for (int i = 0; i < n; i++)
		if (in[i].iov_len && !EVP_CipherUpdate(ctx, out[i].iov_base, &outl, in[i].iov_base,
						       (int)in[i].iov_len))
			return -EIO;
	if (d == RX) {
		if (!EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, XPORT_AEAD_TAG, tag))
			return -EIO;
		return EVP_CipherFinal_ex(ctx, nonce, &outl) > 0;
	}
	if (!EVP_CipherFinal_ex(ctx, nonce, &outl) ||
	    !EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, XPORT_AEAD_TAG, tag))
		return -EIO;
	return 1;
}

int xport_aead_seal(struct xport_aead *a, struct mig_frame_hdr *h, uint64_t trailer,
		    struct iovec *payload, int n, uint8_t tag[XPORT_AEAD_TAG], struct mig_error *err)
{
	h->flags = htole32(le32toh(h->flags) | MIG_FRAME_F_SEALED);
	h->checksum = htole64(trailer);
	if (pass(a, TX, le64toh(h->seq), 0, h, sizeof(*h), payload, payload, n, tag) < 0)
		return mig_error_set(err, -EIO, "OpenSSL failed to seal a frame");
	return 0;
}

static const char *type_name(const struct mig_frame_hdr *h)
{
	const char *s = mig_frame_type_to_string(le16toh(h->type));

	return s ? s : "unknown";
}

int xport_aead_open(struct xport_aead *a, const struct mig_frame_hdr *h, struct iovec *payload,
		    int n, const uint8_t tag[XPORT_AEAD_TAG], struct mig_error *err)
{
	int r = pass(a, RX, le64toh(h->seq), 0, h, sizeof(*h), payload, payload, n, (uint8_t *)tag);

	if (r < 0)
		return mig_error_set(err, -EIO, "OpenSSL failed to open a frame");
	if (!r)
		return mig_error_set(err, -EBADMSG, "sealed %s frame seq %llu does not open: its "
				     "tag does not match (damaged or forged in transit, or sealed "
				     "for another connection, stream or migration)", type_name(h),
				     (unsigned long long)le64toh(h->seq));
	return 0;
}

int xport_aead_seal_data(struct xport_aead *a, uint64_t seq, const struct iovec *in,
			 const struct iovec *out, int n, uint8_t tag[XPORT_AEAD_TAG],
			 struct mig_error *err)
{
	if (pass(a, TX, seq, 1, NULL, 0, in, out, n, tag) < 0)
		return mig_error_set(err, -EIO, "OpenSSL failed to seal a frame's data");
	return 0;
}

int xport_aead_open_data(struct xport_aead *a, uint64_t seq, const struct iovec *data, int n,
			 const uint8_t tag[XPORT_AEAD_TAG], struct mig_error *err)
{
	int r = pass(a, RX, seq, 1, NULL, 0, data, data, n, (uint8_t *)tag);

	if (r < 0)
		return mig_error_set(err, -EIO, "OpenSSL failed to open a frame's data");
	if (!r)
		return mig_error_set(err, -EBADMSG, "the data after sealed frame seq %llu does not "
				     "open: its tag does not match (damaged or forged in transit)",
				     (unsigned long long)seq);
	return 0;
}

int xport_sealing_check(const struct mig_frame_hdr *h, bool sealed, struct mig_error *err)
{
	bool is = le32toh(h->flags) & MIG_FRAME_F_SEALED;

	if (is == sealed)
		return 0;
	if (is)
		return mig_error_set(err, -EPROTO, "%s frame seq %llu is sealed, and this connection "
				     "carries frames in clear (a peer of another migratectl version?)",
				     type_name(h), (unsigned long long)le64toh(h->seq));
	return mig_error_set(err, -EPROTO, "%s frame seq %llu came in clear on a sealed connection "
			     "(refused: something on the path strips the encryption)", type_name(h),
			     (unsigned long long)le64toh(h->seq));
}
