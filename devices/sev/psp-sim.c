// SPDX-License-Identifier: MIT
/*
 * psp-sim: a stand-in for the AMD security processor's SEV firmware, for
 * hosts without SEV (every host here).  It keeps one guest context with
 * the SEV API's guest states and refuses, with the firmware's status
 * codes, what the firmware refuses:
 *
 *   SEND_START        RUNNING -> SENDING; POLICY_FAILURE under NOSEND;
 *                     INVALID_CERTIFICATE for a PDH that is no key
 *   SEND_UPDATE_DATA  SENDING only
 *   SEND_FINISH       SENDING -> SENT (the context cannot run again)
 *   SEND_CANCEL       SENDING -> RUNNING
 *   RECEIVE_START     no context -> RECEIVING; a session that does not
 *                     open with this platform's key is BAD_SIGNATURE
 *   RECEIVE_UPDATE_DATA RECEIVING only; a packet that fails its MAC is
 *                     BAD_MEASUREMENT, and nothing is written
 *   RECEIVE_FINISH    RECEIVING -> RUNNING
 *
 * and really transforms the data.  Each platform has an X25519 key (its
 * PDH).  SEND_START makes a transport key for this migration and wraps it
 * for the destination's PDH (an ephemeral X25519 agreement, HKDF-SHA256,
 * AES-256-GCM); the wrapped key is the session blob.  Each page is sealed
 * with AES-256-GCM under the transport key, a fresh IV per packet and the
 * page's address as associated data: a page sent in clear by mistake, sent
 * to another address, or opened with another migration's key fails.
 *
 * What it does not model: the guest's memory encryption itself (the lab
 * guest's RAM holds plaintext, as the guest sees it), the certificate
 * chains, and the measurement.
 */
#include <endian.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <linux/psp-sev.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/rand.h>

#include "sev/sev.h"
#include "util.h"

#define KEY 32U          /* X25519 keys, AES-256 keys */
#define IV 12U
#define TAG 16U
#define PAGE 4096U
#define SESSION_MAGIC 0x31535350U   /* "PSS1" */

/* The session blob: what the destination's RECEIVE_START opens. */
struct session {
	uint32_t magic;
	uint32_t policy;
	uint8_t eph[KEY];         /* the sender's ephemeral public key */
	uint8_t iv[IV];
	uint8_t wrapped[KEY];     /* the transport key, sealed with the KEK */
	uint8_t tag[TAG];
};

/* The packet header's layout within the SEV API's 52 bytes. */
struct packet_hdr {
	uint32_t flags;
	uint8_t iv[16];           /* the first IV bytes used */
	uint8_t mac[32];          /* the first TAG bytes used */
};
_Static_assert(sizeof(struct packet_hdr) == SEV_PACKET_HDR, "SEV packet header");

struct sim {
	struct sev_fw fw;
	EVP_PKEY *pdh;            /* this platform's */
	pthread_mutex_t lock;     /* state and keys; the page commands only read them */
	unsigned state;
	uint32_t policy;
	uint8_t tek[KEY];
	_Atomic uint64_t packets; /* IV counter */
};

static struct sim *sim_of(struct sev_fw *fw)
{
	return container_of(fw, struct sim, fw);
}

/* A refusal of the firmware: -EIO, its code, and what it means. */
static int refuse(uint32_t *st, uint32_t code, struct mig_error *err, const char *cmd,
		  const char *why)
{
	*st = code;
	return mig_error_set(err, -EIO, "psp-sim: %s: %s (%s)", cmd, sev_fw_status_name(code), why);
}

static int want_state(struct sim *s, unsigned want, uint32_t *st, struct mig_error *err,
		      const char *cmd)
{
	char why[96];

	if (s->state == want)
		return 0;
	snprintf(why, sizeof(why), "the guest is %s, the command needs %s",
		 sev_fw_state_name(s->state), sev_fw_state_name(want));
	return refuse(st, SEV_RET_INVALID_GUEST_STATE, err, cmd, why);
}

static int crypto_failed(struct mig_error *err, const char *what)
{
	return mig_error_set(err, -EIO, "psp-sim: %s failed in libcrypto", what);
}

static EVP_PKEY *x25519_new(void)
{
	EVP_PKEY_CTX *c = EVP_PKEY_CTX_new_id(EVP_PKEY_X25519, NULL);
	EVP_PKEY *k = NULL;

	if (c && EVP_PKEY_keygen_init(c) > 0)
		EVP_PKEY_keygen(c, &k);
	EVP_PKEY_CTX_free(c);
	return k;
}

/* KEK = HKDF-SHA256(X25519(mine, theirs), salt iv, "psp-sim kek"). */
static int kek_derive(EVP_PKEY *mine, const uint8_t theirs[KEY], const uint8_t iv[IV],
		      uint8_t kek[KEY])
{
	EVP_PKEY *peer = EVP_PKEY_new_raw_public_key(EVP_PKEY_X25519, NULL, theirs, KEY);
	EVP_PKEY_CTX *c = peer ? EVP_PKEY_CTX_new(mine, NULL) : NULL;
	uint8_t shared[KEY];
	size_t n = sizeof(shared);
	int ok = c && EVP_PKEY_derive_init(c) > 0 && EVP_PKEY_derive_set_peer(c, peer) > 0 &&
		 EVP_PKEY_derive(c, shared, &n) > 0 && n == KEY;

	EVP_PKEY_CTX_free(c);
	EVP_PKEY_free(peer);
	if (ok) {
		EVP_KDF *kdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
		EVP_KDF_CTX *k = kdf ? EVP_KDF_CTX_new(kdf) : NULL;
		OSSL_PARAM p[] = {
			OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, "SHA256", 0),
			OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, shared, KEY),
			OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, (void *)iv, IV),
			OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, "psp-sim kek", 11),
			OSSL_PARAM_construct_end(),
		};

		ok = k && EVP_KDF_derive(k, kek, KEY, p) > 0;
		EVP_KDF_CTX_free(k);
		EVP_KDF_free(kdf);
	}
	OPENSSL_cleanse(shared, sizeof(shared));
	return ok ? 0 : -1;
}

/* The cipher, fetched once, and a context per thread (the page commands
 * run on every stream's thread): a page costs its cipher work only. */
static EVP_CIPHER *aes_gcm;
static pthread_once_t aes_once = PTHREAD_ONCE_INIT;
static pthread_key_t ctx_key;

static void ctx_free(void *c)
{
	EVP_CIPHER_CTX_free(c);
}

static void aes_init(void)
{
	aes_gcm = EVP_CIPHER_fetch(NULL, "AES-256-GCM", NULL);
	pthread_key_create(&ctx_key, ctx_free);
}

static EVP_CIPHER_CTX *thread_ctx(void)
{
	EVP_CIPHER_CTX *c;

	pthread_once(&aes_once, aes_init);
	c = pthread_getspecific(ctx_key);
	if (!c) {
		c = EVP_CIPHER_CTX_new();
		if (c && pthread_setspecific(ctx_key, c)) {
			EVP_CIPHER_CTX_free(c);
			c = NULL;
		}
	}
	return aes_gcm ? c : NULL;
}

/* AES-256-GCM over n bytes (in and out may be the same), aad of aad_n.
 * Sealing writes tag; opening checks it: -1 if it fails. */
static int gcm(bool seal, const uint8_t key[KEY], const uint8_t iv[IV], const void *aad,
	       size_t aad_n, const uint8_t *in, uint8_t *out, size_t n, uint8_t tag[TAG])
{
	EVP_CIPHER_CTX *c = thread_ctx();
	int len, ok;

	ok = c && EVP_CipherInit_ex2(c, aes_gcm, key, iv, seal, NULL) > 0 &&
	     EVP_CipherUpdate(c, NULL, &len, aad, (int)aad_n) > 0 &&
	     EVP_CipherUpdate(c, out, &len, in, (int)n) > 0;
	if (ok && seal)
		ok = EVP_CipherFinal_ex(c, out + len, &len) > 0 &&
		     EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, TAG, tag) > 0;
	else if (ok)
		ok = EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, TAG, tag) > 0 &&
		     EVP_CipherFinal_ex(c, out + len, &len) > 0;
	return ok ? 0 : -1;
}

static int sim_probe(struct sev_fw *fw, struct mig_error *err)
{
	(void)fw;
	(void)err;
	return 0;
}

static int sim_launch(struct sev_fw *fw, uint32_t policy, uint32_t *st, struct mig_error *err)
{
	struct sim *s = sim_of(fw);
	int r;

	pthread_mutex_lock(&s->lock);
	r = want_state(s, SEV_FW_INVALID, st, err, "LAUNCH_START");
	if (r >= 0 && (policy & SEV_POLICY_ES))
		r = refuse(st, SEV_RET_UNSUPPORTED, err, "LAUNCH_START",
			   "SEV-ES: KVM cannot migrate its VMSAs (SEND_UPDATE_VMSA)");
	if (r >= 0) {
		s->policy = policy;
		s->state = SEV_FW_RUNNING;
	}
	pthread_mutex_unlock(&s->lock);
	return r;
}

static int sim_pdh(struct sev_fw *fw, struct mig_buf *out, struct mig_error *err)
{
	uint8_t pub[KEY];
	size_t n = sizeof(pub);

	if (EVP_PKEY_get_raw_public_key(sim_of(fw)->pdh, pub, &n) <= 0 || n != KEY)
		return crypto_failed(err, "PDH export");
	if (mig_buf_append(out, pub, KEY) < 0)
		return mig_error_set(err, -ENOMEM, "out of memory");
	return 0;
}

static int sim_send_start(struct sev_fw *fw, const void *pdh, size_t pdh_len,
			  struct mig_buf *out, uint32_t *st, struct mig_error *err)
{
	struct sim *s = sim_of(fw);
	struct session ss = { .magic = htole32(SESSION_MAGIC) };
	uint8_t kek[KEY];
	size_t n = KEY;
	EVP_PKEY *eph = NULL;
	int r;

	pthread_mutex_lock(&s->lock);
	r = want_state(s, SEV_FW_RUNNING, st, err, "SEND_START");
	if (r >= 0 && (s->policy & SEV_POLICY_NOSEND))
		r = refuse(st, SEV_RET_POLICY_FAILURE, err, "SEND_START",
			   "the guest's policy has NOSEND");
	if (r >= 0 && pdh_len != KEY)
		r = refuse(st, SEV_RET_INVALID_CERTIFICATE, err, "SEND_START",
			   "the destination's PDH is not a key of this platform type");
	if (r < 0)
		goto out;
	ss.policy = htole32(s->policy);
	eph = x25519_new();
	if (!eph || RAND_bytes(ss.iv, IV) <= 0 || RAND_bytes(s->tek, KEY) <= 0 ||
	    EVP_PKEY_get_raw_public_key(eph, ss.eph, &n) <= 0 || kek_derive(eph, pdh, ss.iv, kek) ||
	    gcm(true, kek, ss.iv, &ss.policy, sizeof(ss.policy), s->tek, ss.wrapped, KEY, ss.tag)) {
		r = crypto_failed(err, "SEND_START");
		goto out;
	}
	if (mig_buf_append(out, &ss, sizeof(ss)) < 0) {
		r = mig_error_set(err, -ENOMEM, "out of memory");
		goto out;
	}
	atomic_store(&s->packets, 0);
	s->state = SEV_FW_SENDING;
	*st = 0;
out:
	OPENSSL_cleanse(kek, sizeof(kek));
	EVP_PKEY_free(eph);
	pthread_mutex_unlock(&s->lock);
	return r;
}

/* The page's address, bound into its packet. */
struct page_aad {
	uint64_t gpa;
};

static int sim_send_update(struct sev_fw *fw, uint64_t gpa, const void *guest, void *trans,
			   uint8_t hdr[SEV_PACKET_HDR], uint32_t *st, struct mig_error *err)
{
	struct sim *s = sim_of(fw);
	struct packet_hdr h = { 0 };
	struct page_aad aad = { .gpa = gpa };
	uint64_t ctr;

	/* the state moves only between migrations; a page command reads it */
	if (__atomic_load_n(&s->state, __ATOMIC_ACQUIRE) != SEV_FW_SENDING)
		return want_state(s, SEV_FW_SENDING, st, err, "SEND_UPDATE_DATA");
	if (gpa % PAGE)
		return refuse(st, SEV_RET_INVALID_ADDRESS, err, "SEND_UPDATE_DATA",
			      "the region crosses a page boundary");
	ctr = atomic_fetch_add(&s->packets, 1) + 1;
	memcpy(h.iv, &ctr, sizeof(ctr));
	if (gcm(true, s->tek, h.iv, &aad, sizeof(aad), guest, trans, PAGE, h.mac))
		return crypto_failed(err, "SEND_UPDATE_DATA");
	memcpy(hdr, &h, sizeof(h));
	*st = 0;
	return 0;
}

static int sim_move(struct sev_fw *fw, unsigned from, unsigned to, const char *cmd,
		    uint32_t *st, struct mig_error *err)
{
	struct sim *s = sim_of(fw);
	int r;

	pthread_mutex_lock(&s->lock);
	r = want_state(s, from, st, err, cmd);
	if (r >= 0) {
		__atomic_store_n(&s->state, to, __ATOMIC_RELEASE);
		if (to != SEV_FW_RECEIVING && to != SEV_FW_SENDING)
			OPENSSL_cleanse(s->tek, KEY);
		*st = 0;
	}
	pthread_mutex_unlock(&s->lock);
	return r;
}

static int sim_send_finish(struct sev_fw *fw, uint32_t *st, struct mig_error *err)
{
	return sim_move(fw, SEV_FW_SENDING, SEV_FW_SENT, "SEND_FINISH", st, err);
}

static int sim_send_cancel(struct sev_fw *fw, uint32_t *st, struct mig_error *err)
{
	return sim_move(fw, SEV_FW_SENDING, SEV_FW_RUNNING, "SEND_CANCEL", st, err);
}

static int sim_receive_start(struct sev_fw *fw, uint32_t policy, const void *pdh, size_t pdh_len,
			     const void *session, size_t session_len, uint32_t *st,
			     struct mig_error *err)
{
	struct sim *s = sim_of(fw);
	struct session ss;
	uint8_t kek[KEY];
	int r;

	(void)pdh;
	pthread_mutex_lock(&s->lock);
	r = want_state(s, SEV_FW_INVALID, st, err, "RECEIVE_START");
	if (r >= 0 && (pdh_len != KEY || session_len != sizeof(ss)))
		r = refuse(st, SEV_RET_INVALID_LEN, err, "RECEIVE_START",
			   "the PDH or the session blob has the wrong length");
	if (r < 0)
		goto out;
	memcpy(&ss, session, sizeof(ss));
	if (le32toh(ss.magic) != SESSION_MAGIC || le32toh(ss.policy) != policy) {
		r = refuse(st, SEV_RET_POLICY_FAILURE, err, "RECEIVE_START",
			   "the session was made for another guest policy");
		goto out;
	}
	if (kek_derive(s->pdh, ss.eph, ss.iv, kek) ||
	    gcm(false, kek, ss.iv, &ss.policy, sizeof(ss.policy), ss.wrapped, s->tek, KEY, ss.tag)) {
		r = refuse(st, SEV_RET_BAD_SIGNATURE, err, "RECEIVE_START",
			   "the session does not open with this platform's PDH: it was made "
			   "for another destination, or damaged");
		goto out;
	}
	s->policy = policy;
	__atomic_store_n(&s->state, SEV_FW_RECEIVING, __ATOMIC_RELEASE);
	*st = 0;
out:
	OPENSSL_cleanse(kek, sizeof(kek));
	pthread_mutex_unlock(&s->lock);
	return r;
}

static int sim_receive_update(struct sev_fw *fw, uint64_t gpa, const uint8_t hdr[SEV_PACKET_HDR],
			      const void *trans, void *guest, uint32_t *st, struct mig_error *err)
{
	struct sim *s = sim_of(fw);
	struct packet_hdr h;
	struct page_aad aad = { .gpa = gpa };
	uint8_t plain[PAGE];
	int r;

	if (__atomic_load_n(&s->state, __ATOMIC_ACQUIRE) != SEV_FW_RECEIVING)
		return want_state(s, SEV_FW_RECEIVING, st, err, "RECEIVE_UPDATE_DATA");
	memcpy(&h, hdr, sizeof(h));
	/* opened aside: a packet that fails writes nothing to the guest */
	r = gcm(false, s->tek, h.iv, &aad, sizeof(aad), trans, plain, PAGE, h.mac);
	if (r == 0)
		memcpy(guest, plain, PAGE);
	OPENSSL_cleanse(plain, PAGE);
	if (r)
		return refuse(st, SEV_RET_BAD_MEASUREMENT, err, "RECEIVE_UPDATE_DATA",
			      "the packet's MAC does not match: sent in clear, damaged, sent for "
			      "another page or sealed with another migration's key");
	*st = 0;
	return 0;
}

static int sim_receive_finish(struct sev_fw *fw, uint32_t *st, struct mig_error *err)
{
	return sim_move(fw, SEV_FW_RECEIVING, SEV_FW_RUNNING, "RECEIVE_FINISH", st, err);
}

static int sim_status(struct sev_fw *fw, unsigned *state, struct mig_error *err)
{
	(void)err;
	*state = __atomic_load_n(&sim_of(fw)->state, __ATOMIC_ACQUIRE);
	return 0;
}

static void sim_destroy(struct sev_fw *fw)
{
	struct sim *s = sim_of(fw);

	EVP_PKEY_free(s->pdh);
	OPENSSL_cleanse(s->tek, KEY);
	pthread_mutex_destroy(&s->lock);
	free(s);
}

static const struct sev_fw_ops sim_ops = {
	.name = "psp-sim",
	.probe = sim_probe,
	.launch = sim_launch,
	.pdh = sim_pdh,
	.send_start = sim_send_start,
	.send_update = sim_send_update,
	.send_finish = sim_send_finish,
	.send_cancel = sim_send_cancel,
	.receive_start = sim_receive_start,
	.receive_update = sim_receive_update,
	.receive_finish = sim_receive_finish,
	.status = sim_status,
	.destroy = sim_destroy,
};

int sev_fw_sim_create(struct sev_fw **ret, struct mig_error *err)
{
	struct sim *s = calloc(1, sizeof(*s));

	if (!s)
		return mig_error_set(err, -ENOMEM, "out of memory");
	s->fw = (struct sev_fw){ .ops = &sim_ops, .vm_fd = -1 };
	s->pdh = x25519_new();
	pthread_mutex_init(&s->lock, NULL);
	if (!s->pdh) {
		sim_destroy(&s->fw);
		return crypto_failed(err, "making the platform's PDH");
	}
	*ret = &s->fw;
	return 0;
}
