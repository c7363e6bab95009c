/* SPDX-License-Identifier: MIT */
/*
 * Sealed frames (docs/protocol.md §1.8): AES-256-GCM over a connection's
 * frames once both ends have authenticated.  Each direction of a
 * connection has its own key and IV, derived with HKDF-SHA256 from a
 * secret both ends hold (a control connection's key file, a migration's
 * per-migration secret) and the nonces both sent in the handshake, so a
 * frame sealed for another connection, direction, stream or migration
 * does not open.  A frame's nonce is its IV with the frame's seq and a
 * part number mixed in: a frame replayed, reordered or dropped reaches
 * the receiver under the wrong seq and fails too.
 *
 * On the wire a sealed frame keeps its 32-byte header in clear, with
 * MIG_FRAME_F_SEALED set and the checksum field giving the sealed bytes
 * that follow the frame outside `length` (a PAGES frame's data; 0 for
 * every other frame).  The header is the AEAD's associated data; the
 * payload is encrypted and followed by its 16-byte tag; data after the
 * frame is encrypted as part 1 of the same seq and followed by its own
 * tag.  Library code: errors through struct mig_error.
 */
#ifndef MIGRATE_AEAD_H
#define MIGRATE_AEAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include <migrate/error.h>
#include <migrate/wire.h>

#define XPORT_AEAD_TAG 16
#define XPORT_AEAD_KEY 32
#define XPORT_AEAD_IV 12

struct xport_aead;

/*
 * A connection's keys: HKDF-SHA256 with ikm (the shared secret), salt (the
 * handshake's nonces, in a fixed order) and info = label || context, 2 x
 * (key, IV) out.  The initiator (the side that connected) sends with the
 * first pair and receives with the second; the other side the reverse.
 */
int xport_aead_new(const void *ikm, size_t ikm_len, const void *salt, size_t salt_len,
		   const char *label, const void *context, size_t context_len, bool initiator,
		   struct xport_aead **ret, struct mig_error *err);
void xport_aead_free(struct xport_aead *a);

/*
 * Seal a frame for sending: h is the header as it travels (sealed here:
 * MIG_FRAME_F_SEALED set, checksum = trailer bytes, the header already
 * little-endian otherwise, as mig_frame_seal() writes it), payload[0..n)
 * encrypted in place, the tag into tag.  Nothing can fail but OpenSSL.
 */
int xport_aead_seal(struct xport_aead *a, struct mig_frame_hdr *h, uint64_t trailer,
		    struct iovec *payload, int n, uint8_t tag[XPORT_AEAD_TAG], struct mig_error *err);
/* Open a received frame: h as it travelled (checked: magic, version, seq,
 * flags, length), the payload decrypted in place; -EBADMSG when the tag
 * does not match (then the payload is garbage and must not be used). */
int xport_aead_open(struct xport_aead *a, const struct mig_frame_hdr *h, struct iovec *payload,
		    int n, const uint8_t tag[XPORT_AEAD_TAG], struct mig_error *err);

/* A frame's data after it (part 1 of the frame's seq): in[i] encrypted
 * into out[i] (the same or other buffers of the same lengths), the tag
 * into tag; open decrypts in place and checks its tag. */
int xport_aead_seal_data(struct xport_aead *a, uint64_t seq, const struct iovec *in,
			 const struct iovec *out, int n, uint8_t tag[XPORT_AEAD_TAG],
			 struct mig_error *err);
int xport_aead_open_data(struct xport_aead *a, uint64_t seq, const struct iovec *data, int n,
			 const uint8_t tag[XPORT_AEAD_TAG], struct mig_error *err);

/* A frame is sealed exactly when its connection is: a sealed frame on a
 * clear connection (a peer of another version) or a clear one on a sealed
 * connection (a downgrade) is refused, -EPROTO with what happened. */
int xport_sealing_check(const struct mig_frame_hdr *h, bool sealed, struct mig_error *err);

#endif
