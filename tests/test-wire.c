// SPDX-License-Identifier: MIT
/*
 * The frame header: name and limit tables, seal/check round trips, one
 * corrupted field at a time (each must fail with its own code and a message
 * naming the field), and the little-endian byte layout.  No KVM needed.
 */
#include <criterion/criterion.h>
#include <endian.h>
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <xxhash.h>

#include <migrate/agent.h>
#include <migrate/engine.h>
#include <migrate/error.h>
#include <migrate/lab.h>
#include <migrate/vm.h>
#include <migrate/wire.h>
#include <migrate/wire-order.h>

#define SEQ 5

/* Every enumerator of enum mig_frame_type except INVALID, spelled out so a
 * value added to the enum without a table entry fails the walk below. */
static const uint16_t all_types[] = {
	MIG_FRAME_HELLO, MIG_FRAME_AUTH_CHALLENGE, MIG_FRAME_AUTH_RESPONSE,
	MIG_FRAME_AUTH_OK, MIG_FRAME_STREAM_HELLO, MIG_FRAME_ERROR,
	MIG_FRAME_REQUEST, MIG_FRAME_REPLY, MIG_FRAME_EVENT,
	MIG_FRAME_SETUP, MIG_FRAME_READY, MIG_FRAME_PAGES, MIG_FRAME_ROUND_END,
	MIG_FRAME_DEVICE_DATA, MIG_FRAME_LOADED, MIG_FRAME_COMMIT,
	MIG_FRAME_RUNNING, MIG_FRAME_ABORT, MIG_FRAME_SUMS_REQUEST, MIG_FRAME_SUMS,
	MIG_FRAME_OPEN, MIG_FRAME_OPENED, MIG_FRAME_TUNNEL_DATA, MIG_FRAME_TUNNEL_END,
	MIG_FRAME_HANDOVER, MIG_FRAME_POSTCOPY, MIG_FRAME_PAGE_REQUEST, MIG_FRAME_PC_RESUME,
};

static bool is_declared(uint16_t t)
{
	for (size_t i = 0; i < sizeof(all_types) / sizeof(all_types[0]); i++)
		if (all_types[i] == t)
			return true;
	return false;
}

/* ---- tables ---- */

Test(wire_tables, every_type_has_a_name_and_a_limit)
{
	for (size_t i = 0; i < sizeof(all_types) / sizeof(all_types[0]); i++) {
		uint16_t t = all_types[i];
		const char *name = mig_frame_type_to_string(t);

		cr_assert_not_null(name, "type %u has no name", t);
		cr_assert_gt(strlen(name), 0, "type %u has an empty name", t);
		cr_assert_gt(mig_frame_max_payload(t), 0, "type %u (%s) has no limit", t, name);
		cr_assert_leq(mig_frame_max_payload(t), MIG_FRAME_MAX, "type %s", name);
		for (size_t j = 0; j < i; j++)
			cr_assert_str_neq(name, mig_frame_type_to_string(all_types[j]),
					  "types %u and %u share the name %s", t, all_types[j],
					  name);
	}
}

Test(wire_tables, walk_every_value_below_the_end)
{
	/* Values in the gaps of the enum (7..15, 19..31) are unknown. */
	for (unsigned t = 0; t < _MIG_FRAME_TYPE_END + 8; t++) {
		bool want = is_declared((uint16_t)t);

		cr_assert_eq(mig_frame_type_to_string((uint16_t)t) != NULL, want,
			     "type %u: name %s", t, want ? "missing" : "unexpected");
		cr_assert_eq(mig_frame_max_payload((uint16_t)t) != 0, want,
			     "type %u: limit %s", t, want ? "missing" : "unexpected");
	}
	cr_assert_null(mig_frame_type_to_string(0xffff));
	cr_assert_eq(mig_frame_max_payload(0xffff), 0);
	cr_assert_null(mig_frame_type_to_string(MIG_FRAME_INVALID));
	cr_assert_eq(mig_frame_max_payload(MIG_FRAME_INVALID), 0);
}

Test(wire_tables, limits_fit_the_frame_class)
{
	static const uint16_t small[] = {
		MIG_FRAME_HELLO, MIG_FRAME_AUTH_CHALLENGE, MIG_FRAME_AUTH_RESPONSE,
		MIG_FRAME_AUTH_OK, MIG_FRAME_STREAM_HELLO, MIG_FRAME_ERROR,
		MIG_FRAME_ROUND_END, MIG_FRAME_LOADED, MIG_FRAME_OPENED,
		MIG_FRAME_COMMIT, MIG_FRAME_RUNNING, MIG_FRAME_ABORT, MIG_FRAME_SUMS_REQUEST,
		MIG_FRAME_TUNNEL_END, MIG_FRAME_HANDOVER,
	};
	static const uint16_t control[] = { MIG_FRAME_REQUEST, MIG_FRAME_REPLY,
					    MIG_FRAME_EVENT };

	for (size_t i = 0; i < sizeof(small) / sizeof(small[0]); i++)
		cr_assert_leq(mig_frame_max_payload(small[i]), 4096, "%s",
			      mig_frame_type_to_string(small[i]));
	for (size_t i = 0; i < sizeof(control) / sizeof(control[0]); i++)
		cr_assert_leq(mig_frame_max_payload(control[i]), 65536, "%s",
			      mig_frame_type_to_string(control[i]));
	cr_assert_eq(mig_frame_max_payload(MIG_FRAME_DEVICE_DATA),
		     sizeof(struct mig_device_data) + MIG_DEVICE_CHUNK_MAX);
	cr_assert_eq(mig_frame_max_payload(MIG_FRAME_SUMS), MIG_SUMS_MAX * 8);
	/* the devices' session data: READY's answers after its reply, OPEN */
	cr_assert_eq(mig_frame_max_payload(MIG_FRAME_READY), 4096 + MIG_SESSION_MAX);
	cr_assert_eq(mig_frame_max_payload(MIG_FRAME_OPEN), MIG_SESSION_MAX);
	/* SETUP holds the device manifest: bounded, but above the control frames */
	cr_assert_eq(mig_frame_max_payload(MIG_FRAME_SETUP), MIG_SETUP_MAX);
	cr_assert_lt(MIG_SETUP_MAX, MIG_FRAME_MAX);
	cr_assert_str_eq(mig_frame_type_to_string(MIG_FRAME_PAGES), "PAGES");
	cr_assert_str_eq(mig_frame_type_to_string(MIG_FRAME_HELLO), "HELLO");
}

/* ---- seal and check ---- */

static uint8_t payload[3000];

static void fill_payload(void)
{
	for (size_t i = 0; i < sizeof(payload); i++)
		payload[i] = (uint8_t)(i * 131 + 7);
}

/* A DEVICE_DATA frame, seq SEQ, with the FINAL flag and `payload`, sealed over
 * three iovecs (the checksum must not depend on how the payload is cut). */
static void seal_frame(struct mig_frame_hdr *h)
{
	struct iovec iov[3] = {
		{ payload, 1 },
		{ payload + 1, 1000 },
		{ payload + 1001, sizeof(payload) - 1001 },
	};

	fill_payload();
	mig_frame_seal(h, MIG_FRAME_DEVICE_DATA, MIG_FRAME_F_FINAL, SEQ, iov, 3);
}

Test(wire_seal, seal_then_check_passes)
{
	struct mig_error err = { 0 };
	struct mig_frame_hdr h;

	seal_frame(&h);
	cr_assert_eq(mig_frame_check_header(&h, SEQ, &err), 0, "%s", err.msg);
	cr_assert_eq(mig_frame_check_payload(&h, payload, &err), 0, "%s", err.msg);
	cr_assert_eq(err.code, 0);
	cr_assert_eq(le32toh(h.length), sizeof(payload));
}

Test(wire_seal, empty_payload_and_no_iovecs)
{
	struct mig_error err = { 0 };
	struct mig_frame_hdr h;

	mig_frame_seal(&h, MIG_FRAME_COMMIT, 0, 1, NULL, 0);
	cr_assert_eq(mig_frame_check_header(&h, 1, &err), 0, "%s", err.msg);
	cr_assert_eq(mig_frame_check_payload(&h, NULL, &err), 0, "%s", err.msg);
	cr_assert_eq(h.length, 0);
}

Test(wire_seal, checksum_is_seeded_with_seq)
{
	struct iovec iov = { payload, 64 };
	struct mig_frame_hdr a, b;

	fill_payload();
	mig_frame_seal(&a, MIG_FRAME_PAGES, 0, 1, &iov, 1);
	mig_frame_seal(&b, MIG_FRAME_PAGES, 0, 2, &iov, 1);
	cr_assert_neq(a.checksum, b.checksum);
	/* Same frame, same seq: deterministic. */
	mig_frame_seal(&b, MIG_FRAME_PAGES, 0, 1, &iov, 1);
	cr_assert_eq(a.checksum, b.checksum);
}

struct corrupt_case {
	const char *what;
	void (*corrupt)(struct mig_frame_hdr *h);
	uint64_t expect_seq;
	int code;
	const char *field;      /* must appear in err.msg */
	const char *detail;     /* and so must this */
};

static void bad_magic(struct mig_frame_hdr *h) { h->magic = htole32(0x50545448); }
/* a version this build does not speak (it speaks MIG_WIRE_VERSION) */
#define TEXT_OF(x) #x
#define WIRE_VERSION_TEXT_(x) TEXT_OF(x)
#define WIRE_VERSION_TEXT WIRE_VERSION_TEXT_(MIG_WIRE_VERSION)
static void new_version(struct mig_frame_hdr *h) { h->version = htole16(MIG_WIRE_VERSION + 1); }
static void old_version(struct mig_frame_hdr *h) { h->version = htole16(0); }
static void type_zero(struct mig_frame_hdr *h) { h->type = 0; }
static void type_gap(struct mig_frame_hdr *h) { h->type = htole16(7); }
static void type_end(struct mig_frame_hdr *h) { h->type = htole16(_MIG_FRAME_TYPE_END); }
static void type_huge(struct mig_frame_hdr *h) { h->type = htole16(0xff00); }
static void flag_unknown(struct mig_frame_hdr *h) { h->flags = htole32(MIG_FRAME_F_ZSTD | 1U << 9); }
static void flag_high(struct mig_frame_hdr *h) { h->flags = htole32(1U << 31); }
static void flag_wrong_type(struct mig_frame_hdr *h) { h->type = htole16(MIG_FRAME_HELLO); }
static void length_over(struct mig_frame_hdr *h) { h->length = htole32(MIG_FRAME_MAX + 1); }
static void length_max(struct mig_frame_hdr *h) { h->length = htole32(0xffffffff); }
static void length_over_type(struct mig_frame_hdr *h)
{
	h->flags = 0;
	h->type = htole16(MIG_FRAME_HELLO);
	h->length = htole32(mig_frame_max_payload(MIG_FRAME_HELLO) + 1);
}
static void no_change(struct mig_frame_hdr *h) { (void)h; }

static const struct corrupt_case header_cases[] = {
	{ "magic", bad_magic, SEQ, -EPROTO, "magic", "0x50545448" },
	{ "newer version", new_version, SEQ, -EPROTO, "version", "this build speaks " WIRE_VERSION_TEXT },
	{ "older version", old_version, SEQ, -EPROTO, "version", "upgrade" },
	{ "type 0", type_zero, SEQ, -EBADMSG, "type", "type 0" },
	{ "type in an enum gap", type_gap, SEQ, -EBADMSG, "type", "unknown" },
	{ "type at the enum end", type_end, SEQ, -EBADMSG, "type", "unknown" },
	{ "type far out", type_huge, SEQ, -EBADMSG, "type", "65280" },
	{ "unknown flag", flag_unknown, SEQ, -EBADMSG, "flags", "0x200" },
	{ "top flag bit", flag_high, SEQ, -EBADMSG, "flags", "0x80000000" },
	{ "flag on a type without it", flag_wrong_type, SEQ, -EBADMSG, "flags", "HELLO" },
	{ "length above MIG_FRAME_MAX", length_over, SEQ, -EMSGSIZE, "length", "16777217" },
	{ "length 4 GiB - 1", length_max, SEQ, -EMSGSIZE, "length", "4294967295" },
	{ "length above the type's limit", length_over_type, SEQ, -EMSGSIZE, "length", "4097" },
	{ "seq replayed", no_change, SEQ + 1, -EPROTO, "seq", "replayed" },
	{ "seq skipped", no_change, SEQ - 1, -EPROTO, "seq", "expected 4" },
	{ "seq from an earlier connection", no_change, 1, -EPROTO, "seq", "seq 5" },
};

Test(wire_check, one_corrupted_header_field_at_a_time)
{
	for (size_t i = 0; i < sizeof(header_cases) / sizeof(header_cases[0]); i++) {
		const struct corrupt_case *c = &header_cases[i];
		struct mig_error err = { 0 };
		struct mig_frame_hdr h;
		int r;

		seal_frame(&h);
		c->corrupt(&h);
		r = mig_frame_check_header(&h, c->expect_seq, &err);
		cr_assert_eq(r, c->code, "%s: got %d (%s), want %d", c->what, r, err.msg, c->code);
		cr_assert_eq(err.code, c->code, "%s: err.code %d", c->what, err.code);
		cr_assert_not_null(strstr(err.msg, c->field), "%s: message \"%s\" does not name "
				   "the field \"%s\"", c->what, err.msg, c->field);
		cr_assert_not_null(strstr(err.msg, c->detail), "%s: message \"%s\" lacks \"%s\"",
				   c->what, err.msg, c->detail);
	}
}

Test(wire_check, messages_say_what_to_do)
{
	struct mig_error err = { 0 };
	struct mig_frame_hdr h;

	seal_frame(&h);
	bad_magic(&h);
	mig_frame_check_header(&h, SEQ, &err);
	cr_assert_not_null(strstr(err.msg, "not a migratectl peer?"), "%s", err.msg);

	mig_error_clear(&err);
	seal_frame(&h);
	new_version(&h);
	mig_frame_check_header(&h, SEQ, &err);
	{
		char want[96];

		snprintf(want, sizeof(want), "peer speaks protocol version %u, this build speaks %u; "
			 "upgrade the older side", MIG_WIRE_VERSION + 1, MIG_WIRE_VERSION);
		cr_assert_not_null(strstr(err.msg, want), "%s", err.msg);
	}
}

Test(wire_check, length_at_the_limit_is_accepted)
{
	struct mig_error err = { 0 };
	struct mig_frame_hdr h;

	seal_frame(&h);
	h.length = htole32(mig_frame_max_payload(MIG_FRAME_DEVICE_DATA));
	cr_assert_eq(mig_frame_check_header(&h, SEQ, &err), 0, "%s", err.msg);
	h.length = htole32(mig_frame_max_payload(MIG_FRAME_DEVICE_DATA) + 1);
	cr_assert_lt(mig_frame_check_header(&h, SEQ, &err), 0);
	mig_error_clear(&err);
	h.length = htole32(4096);
	h.type = htole16(MIG_FRAME_HELLO);
	h.flags = 0;
	cr_assert_eq(mig_frame_check_header(&h, SEQ, &err), 0, "%s", err.msg);
}

Test(wire_check, corrupted_checksum_field)
{
	struct mig_error err = { 0 };
	struct mig_frame_hdr h;

	seal_frame(&h);
	h.checksum ^= htole64(1ULL << 40);
	/* The header check does not look at the checksum... */
	cr_assert_eq(mig_frame_check_header(&h, SEQ, &err), 0, "%s", err.msg);
	/* ...the payload check does. */
	cr_assert_eq(mig_frame_check_payload(&h, payload, &err), -EBADMSG);
	cr_assert_eq(err.code, -EBADMSG);
	cr_assert_not_null(strstr(err.msg, "checksum mismatch on DEVICE_DATA frame seq 5"), "%s",
			   err.msg);
}

Test(wire_check, one_payload_byte)
{
	static const size_t where[] = { 0, 1, 1000, 1001, sizeof(payload) - 1 };

	for (size_t i = 0; i < sizeof(where) / sizeof(where[0]); i++) {
		struct mig_error err = { 0 };
		struct mig_frame_hdr h;

		seal_frame(&h);
		payload[where[i]] ^= 0x01;
		cr_assert_eq(mig_frame_check_header(&h, SEQ, &err), 0, "%s", err.msg);
		cr_assert_eq(mig_frame_check_payload(&h, payload, &err), -EBADMSG,
			     "flipped byte %zu went unnoticed", where[i]);
		cr_assert_not_null(strstr(err.msg, "checksum"), "%s", err.msg);
	}
}

Test(wire_check, header_fields_are_covered_by_the_checksum)
{
	struct mig_error err = { 0 };
	struct mig_frame_hdr h;

	/* A change the header check accepts (FINAL cleared on DEVICE_DATA) must
	 * still fail the checksum. */
	seal_frame(&h);
	h.flags = 0;
	cr_assert_eq(mig_frame_check_header(&h, SEQ, &err), 0, "%s", err.msg);
	cr_assert_eq(mig_frame_check_payload(&h, payload, &err), -EBADMSG);

	/* So must a different type under whose limit the length fits. */
	mig_error_clear(&err);
	seal_frame(&h);
	h.type = htole16(MIG_FRAME_REPLY);
	h.flags = 0;
	cr_assert_eq(mig_frame_check_header(&h, SEQ, &err), 0, "%s", err.msg);
	cr_assert_eq(mig_frame_check_payload(&h, payload, &err), -EBADMSG);
	cr_assert_not_null(strstr(err.msg, "REPLY"), "%s", err.msg);
}

Test(wire_check, shorter_length_fails_the_checksum)
{
	struct mig_error err = { 0 };
	struct mig_frame_hdr h;

	seal_frame(&h);
	h.length = htole32(le32toh(h.length) - 1);
	cr_assert_eq(mig_frame_check_header(&h, SEQ, &err), 0, "%s", err.msg);
	cr_assert_eq(mig_frame_check_payload(&h, payload, &err), -EBADMSG);
}

/* ---- byte layout ---- */

static uint64_t get_le(const uint8_t *p, int n)
{
	uint64_t v = 0;

	for (int i = n - 1; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

Test(wire_layout, field_offsets)
{
	cr_assert_eq(offsetof(struct mig_frame_hdr, magic), 0);
	cr_assert_eq(offsetof(struct mig_frame_hdr, version), 4);
	cr_assert_eq(offsetof(struct mig_frame_hdr, type), 6);
	cr_assert_eq(offsetof(struct mig_frame_hdr, flags), 8);
	cr_assert_eq(offsetof(struct mig_frame_hdr, length), 12);
	cr_assert_eq(offsetof(struct mig_frame_hdr, seq), 16);
	cr_assert_eq(offsetof(struct mig_frame_hdr, checksum), 24);
}

Test(wire_layout, sealed_header_bytes_are_little_endian)
{
	uint8_t body[0x123], wire[sizeof(struct mig_frame_hdr) + sizeof(body)];
	struct iovec iov = { body, sizeof(body) };
	const uint64_t seq = 0x0102030405060708ULL;
	struct mig_frame_hdr h;
	uint8_t b[32];

	for (size_t i = 0; i < sizeof(body); i++)
		body[i] = (uint8_t)(i ^ 0x5a);
	mig_frame_seal(&h, MIG_FRAME_DEVICE_DATA, MIG_FRAME_F_FINAL, seq, &iov, 1);
	memcpy(b, &h, sizeof(b));

	cr_assert_eq(memcmp(b, "MGF1", 4), 0, "magic bytes %02x %02x %02x %02x",
		     b[0], b[1], b[2], b[3]);
	cr_assert_eq(b[4], MIG_WIRE_VERSION);
	cr_assert_eq(b[5], 0);
	cr_assert_eq(b[6], MIG_FRAME_DEVICE_DATA);
	cr_assert_eq(b[7], 0);
	cr_assert_eq(get_le(b + 8, 4), MIG_FRAME_F_FINAL);
	cr_assert_eq(b[12], 0x23);
	cr_assert_eq(b[13], 0x01);
	cr_assert_eq(get_le(b + 12, 4), sizeof(body));
	for (int i = 0; i < 8; i++)
		cr_assert_eq(b[16 + i], 8 - i, "seq byte %d is %#x", i, b[16 + i]);

	/* The checksum, recomputed independently with the one-shot XXH3 over
	 * header-with-zero-checksum ++ payload, seed = seq, little-endian. */
	memcpy(wire, b, sizeof(b));
	memset(wire + 24, 0, 8);
	memcpy(wire + sizeof(b), body, sizeof(body));
	cr_assert_eq(get_le(b + 24, 8), XXH3_64bits_withSeed(wire, sizeof(wire), seq));
}

/* A page's checksum is XXH3-64 seeded with its frame's seq and its place in
 * the frame, so the same bytes at another place or in another frame, or one
 * changed bit, do not match. */
Test(wire, page_sum_is_seeded_by_place)
{
	static uint8_t page[MIG_PAGE_SIZE];
	uint64_t want;

	for (size_t i = 0; i < sizeof(page); i++)
		page[i] = (uint8_t)(i * 31 + 7);
	want = XXH3_64bits_withSeed(page, sizeof(page), 42 * MIG_PAGES_MAX + 3);
	cr_assert_eq(mig_page_sum(page, 42, 3), want);
	cr_assert_neq(mig_page_sum(page, 42, 4), want);
	cr_assert_neq(mig_page_sum(page, 43, 3), want);
	page[4000] ^= 1;
	cr_assert_neq(mig_page_sum(page, 42, 3), want);
}

/* PAGES carries only its meta in the frame: a length that could hold page
 * data is refused before anything is read. */
Test(wire, pages_meta_limit)
{
	struct mig_frame_hdr h;
	struct mig_error err = { 0 };
	static uint8_t meta[MIG_PAGES_META_MAX];
	struct iovec iov = { meta, sizeof(meta) };

	cr_assert_eq(mig_frame_max_payload(MIG_FRAME_PAGES), 16 + 256 * (16 + 64));
	mig_frame_seal(&h, MIG_FRAME_PAGES, MIG_FRAME_F_LIVE, 1, &iov, 1);
	cr_assert_eq(mig_frame_check_header(&h, 1, &err), 0, "%s", err.msg);
	h.length = htole32(MIG_PAGES_META_MAX + 1);
	cr_assert_lt(mig_frame_check_header(&h, 1, &err), 0);
	cr_assert_not_null(strstr(err.msg, "exceeds the limit"), "%s", err.msg);
	/* LIVE belongs to PAGES only, FINAL to DEVICE_DATA only */
	mig_error_clear(&err);
	mig_frame_seal(&h, MIG_FRAME_DEVICE_DATA, MIG_FRAME_F_LIVE, 1, &iov, 1);
	cr_assert_lt(mig_frame_check_header(&h, 1, &err), 0);
	cr_assert_not_null(strstr(err.msg, "not valid on DEVICE_DATA"), "%s", err.msg);
	mig_error_clear(&err);
	mig_frame_seal(&h, MIG_FRAME_PAGES, MIG_FRAME_F_FINAL, 1, &iov, 1);
	cr_assert_lt(mig_frame_check_header(&h, 1, &err), 0);
	cr_assert_not_null(strstr(err.msg, "not valid on PAGES"), "%s", err.msg);
}

/* The peer's RAM for mig_where_ram_differs(): a copy with some pages changed. */
static int fake_fetch(void *ctx, uint64_t first, uint32_t count, uint32_t per, uint64_t *out)
{
	mig_ram_sums(ctx, first, count, per, out);
	return 0;
}

static int failing_fetch(void *ctx, uint64_t first, uint32_t count, uint32_t per,
			 uint64_t *out)
{
	(void)ctx, (void)first, (void)count, (void)per, (void)out;
	return -EPIPE;
}

/* 3 chunks of 2 MiB and a 5-page tail; pages named in guest page numbers. */
Test(wire, where_ram_differs_names_the_pages)
{
	const uint64_t pages = 3 * MIG_SUMS_PER_MAX + 5;
	uint8_t *a = calloc(pages, MIG_PAGE_SIZE), *b = calloc(pages, MIG_PAGE_SIZE);
	uint64_t final_set[(3 * MIG_SUMS_PER_MAX + 5 + 63) / 64] = { 0 };
	char msg[320];

	cr_assert(a && b);
	for (uint64_t i = 0; i < pages * MIG_PAGE_SIZE; i += 64)
		a[i] = b[i] = (uint8_t)(i >> 6);
	b[(MIG_SUMS_PER_MAX + 7) * MIG_PAGE_SIZE + 100] ^= 1;
	b[(MIG_SUMS_PER_MAX + 300) * MIG_PAGE_SIZE] ^= 0x80;
	b[(2 * MIG_SUMS_PER_MAX + 1) * MIG_PAGE_SIZE + 4095] ^= 2;
	cr_assert_eq(mig_where_ram_differs(a, pages, NULL, fake_fetch, b, msg, sizeof(msg)), 0);
	cr_assert_str_eq(msg, "2 of 3 2 MiB chunks differ, from pages 0x200 0x400; "
			 "2 pages of the first: 0x207 0x32c");

	/* marked by whether the final round carried them */
	cr_assert_eq(mig_where_ram_differs(a, pages, final_set, fake_fetch, b, msg, sizeof(msg)), 0);
	cr_assert_str_eq(msg, "2 of 3 2 MiB chunks differ, from pages 0x200 0x400; "
			 "2 pages of the first: 0x207 0x32c "
			 "(none was dirty at the final sync)");
	final_set[0x207 / 64] |= 1ULL << (0x207 % 64);
	final_set[0x32d / 64] |= 1ULL << (0x32d % 64);
	cr_assert_eq(mig_where_ram_differs(a, pages, final_set, fake_fetch, b, msg, sizeof(msg)), 0);
	cr_assert_str_eq(msg, "2 of 3 2 MiB chunks differ, from pages 0x200 0x400; "
			 "2 pages of the first: 0x207* 0x32c "
			 "(*: sent in the final round)");
	final_set[0x32c / 64] |= 1ULL << (0x32c % 64);
	cr_assert_eq(mig_where_ram_differs(a, pages, final_set, fake_fetch, b, msg, sizeof(msg)), 0);
	cr_assert_str_eq(msg, "2 of 3 2 MiB chunks differ, from pages 0x200 0x400; "
			 "2 pages of the first: 0x207* 0x32c* "
			 "(all sent in the final round)");

	/* only the tail */
	memcpy(b, a, pages * MIG_PAGE_SIZE);
	b[(3 * MIG_SUMS_PER_MAX + 4) * MIG_PAGE_SIZE] ^= 1;
	cr_assert_eq(mig_where_ram_differs(a, pages, NULL, fake_fetch, b, msg, sizeof(msg)), 0);
	cr_assert_str_eq(msg, "0 of 3 2 MiB chunks differ; 1 page of the tail: 0x604");

	/* equal copies, and a peer that cannot answer */
	memcpy(b, a, pages * MIG_PAGE_SIZE);
	cr_assert_eq(mig_where_ram_differs(a, pages, NULL, fake_fetch, b, msg, sizeof(msg)), 0);
	cr_assert_str_eq(msg, "no page differs, yet the digests do");
	cr_assert_eq(mig_where_ram_differs(a, pages, NULL, failing_fetch, b, msg, sizeof(msg)),
		     -EPIPE);
	free(a);
	free(b);
}

/* The switchover digest: any byte changes it, and a cancel stops it (the
 * source's VM is paused while it runs). */
Test(wire, ram_digest_sees_a_byte_and_stops_on_cancel)
{
	const size_t bytes = (16U << 20) + 4096;   /* a short last chunk */
	uint8_t *ram = calloc(1, bytes);
	struct mig_digest a, b, c;
	atomic_bool stop = false;

	cr_assert(ram);
	for (size_t i = 0; i < bytes; i += 512)
		ram[i] = (uint8_t)(i >> 9);
	cr_assert_eq(mig_ram_digest(ram, bytes, NULL, &a), 0);
	cr_assert_eq(mig_ram_digest(ram, bytes, &stop, &b), 0);
	cr_assert(a.hi == b.hi && a.lo == b.lo);
	ram[bytes - 1] ^= 1;
	cr_assert_eq(mig_ram_digest(ram, bytes, NULL, &c), 0);
	cr_assert(c.hi != a.hi || c.lo != a.lo, "a changed byte in the last chunk went unseen");
	stop = true;
	cr_assert_eq(mig_ram_digest(ram, bytes, &stop, &b), -ECANCELED);
	free(ram);
}

/* ---- the PAGES format (transport/pages.c) ---- */

/* Pages 0 (zero), 1 and 2 (adjacent), 5: one run for 1-2, one for 5. */
Test(pages, encode_flags_zero_pages_and_joins_runs)
{
	static uint8_t ram[8 * 4096], gather[4 * 4096];
	const uint64_t pfns[] = { 0, 1, 2, 5 };
	struct mig_page_ent ent[4];
	struct iovec runs[4];
	int nruns = -1;
	unsigned nz;

	memset(ram, 0, sizeof(ram));
	for (int p = 1; p < 8; p++)
		memset(ram + p * 4096, p, 4096);
	nz = mig_pages_encode(ram, pfns, 4, 9, true, ent, runs, &nruns, NULL, NULL, NULL);
	cr_assert_eq(nz, 3);
	/* the entries are as they travel: little-endian */
	cr_assert_eq(le64toh(ent[0].page), 0 | MIG_PAGE_ZERO);
	cr_assert_eq(ent[0].sum, 0);
	cr_assert_eq(nruns, 2);
	cr_assert_eq(runs[0].iov_base, ram + 4096);
	cr_assert_eq(runs[0].iov_len, 2 * 4096);
	cr_assert_eq(runs[1].iov_base, ram + 5 * 4096);
	for (unsigned i = 1; i < 4; i++) {
		cr_assert_eq(le64toh(ent[i].page), pfns[i]);
		cr_assert_eq(le64toh(ent[i].sum), mig_page_sum(ram + pfns[i] * 4096, 9, i),
			     "entry %u", i);
	}
	/* gathered: the copies are the data, in order, summed the same */
	nz = mig_pages_encode(ram, pfns, 4, 9, true, ent, NULL, NULL, gather, NULL, NULL);
	cr_assert_eq(nz, 3);
	cr_assert_eq(memcmp(gather, ram + 4096, 2 * 4096), 0);
	cr_assert_eq(memcmp(gather + 2 * 4096, ram + 5 * 4096, 4096), 0);
	cr_assert_eq(le64toh(ent[3].sum), mig_page_sum(ram + 5 * 4096, 9, 3));
	/* without sums */
	mig_pages_encode(ram, pfns, 4, 9, false, ent, runs, &nruns, NULL, NULL, NULL);
	cr_assert_eq(ent[1].sum, 0);
}

/* A page hook's transform: every byte of pages 1 and 2 inverted, page 2
 * tagged with its number; page 5 is vetoed; the others go as they are. */
static int invert_but_5(void *ctx, uint64_t pfn, void *page, void *tag)
{
	unsigned *calls = ctx;

	(*calls)++;
	if (pfn == 5)
		return -EPERM;
	if (pfn != 1 && pfn != 2)
		return 0;
	for (unsigned i = 0; i < 4096; i++)
		((uint8_t *)page)[i] ^= 0xff;
	if (pfn != 2)
		return 0;
	memset(tag, 0xa0 + (int)pfn, MIG_PAGE_TAG_SIZE);
	return 1;
}

Test(pages, a_transform_changes_the_copy_before_its_sum)
{
	static uint8_t ram[8 * 4096], gather[4 * 4096], want[4096];
	static uint8_t meta[MIG_PAGES_META_MAX], tags[MIG_PAGES_MAX * MIG_PAGE_TAG_SIZE];
	const uint64_t pfns[] = { 0, 1, 2, 5 };
	struct mig_page_ent *ent = (struct mig_page_ent *)(meta + sizeof(struct mig_pages_hdr));
	struct mig_page_ent back[MIG_PAGES_MAX];
	struct mig_pages_hdr ph = { .count = 3, .zero_count = 1, .round = 0, .data_len = 2 * 4096 };
	struct mig_error err = { 0 };
	unsigned calls = 0;

	memset(ram, 0, sizeof(ram));
	for (int p = 1; p < 8; p++)
		memset(ram + p * 4096, p, 4096);
	/* pages 0 (zero, left alone by the hook: a zero flag), 1, 2 (tagged) */
	cr_assert_eq(mig_pages_encode(ram, pfns, 3, 9, true, ent, NULL, NULL, gather,
				      invert_but_5, &calls), 2);
	cr_assert_eq(calls, 3, "every page passes the hook, the zero one too");
	/* the entries as they travel: little-endian */
	cr_assert_eq(le64toh(ent[0].page), MIG_PAGE_ZERO);
	cr_assert_eq(le64toh(ent[1].page), 1, "untagged");
	cr_assert_eq(le64toh(ent[2].page), 2 | MIG_PAGE_TAGGED);
	memset(want, 1 ^ 0xff, sizeof(want));
	cr_assert_eq(memcmp(gather, want, 4096), 0, "the copy is the wire form");
	cr_assert_eq(le64toh(ent[1].sum), mig_page_sum(want, 9, 1),
		     "the sum covers the wire form");
	cr_assert_eq(ram[4096], 1, "guest RAM is left alone");
	/* the tag follows the entries, and the meta's length counts it */
	cr_assert_eq(((uint8_t *)(ent + 3))[0], 0xa2);
	cr_assert_eq(mig_pages_meta_len(ent, 3), sizeof(ph) + 3 * sizeof(*ent) + MIG_PAGE_TAG_SIZE);
	/* and the destination takes it back, only where it takes tags */
	memcpy(meta, &ph, sizeof(ph));
	mig_wire_le(&mig_wl_pages_hdr, meta, 1);
	cr_assert_eq(mig_pages_meta_check(meta, (uint32_t)mig_pages_meta_len(ent, 3), 0, 0, 8, 1,
					  &ph, back, tags, &err), 0, "%s", err.msg);
	cr_assert_eq(tags[0], 0xa2);
	cr_assert_eq(tags[MIG_PAGE_TAG_SIZE - 1], 0xa2);
	cr_assert_eq(mig_pages_meta_check(meta, (uint32_t)mig_pages_meta_len(ent, 3), 0, 0, 8, 1,
					  &ph, back, NULL, &err), -EPROTO);
	cr_assert(strstr(err.msg, "tagged"), "%s", err.msg);
	/* a length that leaves the tag out is refused */
	cr_assert_eq(mig_pages_meta_check(meta, sizeof(ph) + 3 * sizeof(*ent), 0, 0, 8, 1, &ph,
					  back, tags, &err), -EBADMSG);
	/* a page both zero and tagged is refused */
	ent[0].page |= htole64(MIG_PAGE_TAGGED);
	cr_assert_eq(mig_pages_meta_check(meta, (uint32_t)mig_pages_meta_len(ent, 3), 0, 0, 8, 1,
					  &ph, back, tags, &err), -EBADMSG);
	/* a veto ends the batch with its error */
	cr_assert_eq(mig_pages_encode(ram, pfns, 4, 9, true, ent, NULL, NULL, gather,
				      invert_but_5, &calls), -EPERM);
}

struct meta3 {
	struct mig_pages_hdr ph;
	struct mig_page_ent ent[3];
};

static void meta_ok(struct meta3 *m)
{
	m->ph = (struct mig_pages_hdr){ .count = 3, .zero_count = 1, .round = 2,
					.data_len = 2 * 4096 };
	m->ent[0] = (struct mig_page_ent){ 10, 1 };
	m->ent[1] = (struct mig_page_ent){ 11 | MIG_PAGE_ZERO, 0 };
	m->ent[2] = (struct mig_page_ent){ 99, 2 };
}

static const char *meta_error(const struct meta3 *m, uint32_t length, uint32_t flags)
{
	static struct mig_error err;
	struct mig_pages_hdr ph;
	struct mig_page_ent ent[MIG_PAGES_MAX];
	struct meta3 w = *m;   /* as it travels */

	mig_wire_le(&mig_wl_pages_hdr, &w.ph, 1);
	mig_wire_le(&mig_wl_page_ent, w.ent, 3);
	mig_error_clear(&err);
	if (mig_pages_meta_check(&w, length, flags, 2, 100, 1, &ph, ent, NULL, &err) == 0) {
		/* and back in the host's order */
		cr_assert_eq(ph.count, m->ph.count);
		cr_assert_eq(ent[2].page, m->ent[2].page);
		return NULL;
	}
	cr_assert_lt(err.code, 0);
	return err.msg;
}

Test(pages, meta_check_names_each_fault)
{
	struct meta3 m;
	const char *e;

	meta_ok(&m);
	cr_assert_null(meta_error(&m, sizeof(m), 0));
	m.ph.data_len = 100;
	cr_assert_null(meta_error(&m, sizeof(m), MIG_FRAME_F_ZSTD), "compressed data may be short");
#define BAD(change, length, flags, needle)						\
	do {										\
		meta_ok(&m);								\
		change;									\
		e = meta_error(&m, length, flags);					\
		cr_assert_not_null(e, "accepted: %s", #change);				\
		cr_assert_not_null(strstr(e, needle), "'%s' lacks '%s'", e, needle);	\
	} while (0)
	BAD((void)0, 8, 0, "PAGES frame of 8 bytes on stream 1");
	BAD(m.ph.count = 0, sizeof(m), 0, "with 0 pages on stream 1: 1 to 256 allowed");
	BAD(m.ph.count = 257, sizeof(m), 0, "with 257 pages");
	BAD(m.ph.zero_count = 4, sizeof(m), 0, "says 4 of its 3 pages are zero");
	BAD((void)0, sizeof(m) - 16, 0, "length 48 does not match its 3 pages");
	BAD(m.ph.round = 3, sizeof(m), 0, "of round 3 on stream 1 during round 2");
	BAD(m.ent[2].page = 100, sizeof(m), 0, "page 0x64 is outside the guest's 100 pages");
	BAD(m.ent[1].page = 11, sizeof(m), 0, "says 1 zero pages, lists 0");
	BAD(m.ph.data_len = 4096, sizeof(m), 0, "raw PAGES data of 4096 bytes for 2 pages");
	BAD(m.ph.data_len = 0, sizeof(m), MIG_FRAME_F_ZSTD, "zstd PAGES data of 0 bytes");
	BAD(m.ph.data_len = 3 * 4096, sizeof(m), MIG_FRAME_F_ZSTD, "zstd PAGES data of 12288");
#undef BAD
}

/* ---- the payloads' byte order (transport/wire-order.c) ---- */

/* Each layout lists its struct's fields exactly: a field added to a payload
 * and not to its layout would travel in the host's order. */
Test(order, layouts_cover_their_structs)
{
	unsigned n = 0;

	for (const struct mig_wire_layout *const *l = mig_wire_layouts; *l; l++, n++)
		cr_assert_eq(mig_wire_layout_gap(*l), 0, "%s: byte %zu is not covered once",
			     (*l)->name, mig_wire_layout_gap(*l) - 1);
	cr_assert_eq(n, 45);
}

/* The swap reverses each integer, nested structs' too, and leaves bytes. */
Test(order, swap_reverses_integers_and_leaves_bytes)
{
	struct mig_vm_info v = { .state = 0x01020304, .mem_bytes = 0x0102030405060708ULL,
				 .lab = { .ccw = 0x0102, .vfio_fail_from = 7,
					  .vfio_rate = 0x1122334455667788ULL } };

	memcpy(v.name, "abcd", 5);
	mig_wire_swap(&mig_wl_vm_info, &v, 1);
	cr_assert_eq(v.state, 0x04030201);
	cr_assert_eq(v.mem_bytes, 0x0807060504030201ULL);
	cr_assert_eq(v.lab.ccw, 0x0201);
	cr_assert_eq(v.lab.vfio_fail_from, 7);
	cr_assert_eq(v.lab.vfio_rate, 0x8877665544332211ULL);
	cr_assert_str_eq(v.name, "abcd");
	mig_wire_swap(&mig_wl_vm_info, &v, 1);
	cr_assert_eq(v.mem_bytes, 0x0102030405060708ULL, "the swap is its own inverse");
}

/* What travels is little-endian whatever the host: an EVENT and a RESULT
 * device record as bytes (run on s390x under qemu-user too). */
Test(order, payloads_travel_little_endian)
{
	struct mig_event ev = { .round = 0x0a0b0c0d, .total_ms = 0x1122334455667788ULL,
				.phase_start_ms = { [2] = 0x0102030405060708ULL } };
	struct mig_event_device dv[2] = { { .cls = 5 }, { .bytes = 0x0100 } };
	const uint8_t *b = (const uint8_t *)&ev;
	const uint8_t *db = (const uint8_t *)dv;

	mig_wire_le(&mig_wl_event, &ev, 1);
	mig_wire_le(&mig_wl_event_device, dv, 2);
	cr_assert_eq(b[offsetof(struct mig_event, round)], 0x0d);
	cr_assert_eq(b[offsetof(struct mig_event, round) + 3], 0x0a);
	cr_assert_eq(b[offsetof(struct mig_event, total_ms)], 0x88);
	cr_assert_eq(b[offsetof(struct mig_event, total_ms) + 7], 0x11);
	cr_assert_eq(b[offsetof(struct mig_event, phase_start_ms) + 16], 0x08);
	cr_assert_eq(db[0], 5);
	cr_assert_eq(db[sizeof(dv[0]) + offsetof(struct mig_event_device, bytes) + 1], 1);
	mig_wire_le(&mig_wl_event, &ev, 1);
	cr_assert_eq(ev.round, 0x0a0b0c0d);
}

/* An ERROR payload's code, as mig_error_msg_fill() writes it. */
Test(order, error_code_is_little_endian)
{
	struct mig_error_msg m, back;
	const uint8_t *b = (const uint8_t *)&m;

	mig_error_msg_fill(&m, -EPROTO, "bad");
	cr_assert_eq(b[0], (uint8_t)-EPROTO);
	cr_assert_eq(b[3], 0xff);
	cr_assert_eq(mig_error_msg_parse(&m, sizeof(m), &back, 0), -EPROTO);
	cr_assert_str_eq(back.msg, "bad");
}

/* ---- the DEVICE_DATA header (mig_device_data_check) ---- */

/* A DEVICE_DATA payload of round 3 with `state` bytes of state, its header
 * saying `say` bytes. */
static size_t device_data_payload(uint8_t *p, uint32_t state, uint32_t say)
{
	struct mig_device_data dd = { .cls = 2, .instance = 1, .offset = 4096, .round = 3,
				      .len = say };

	mig_wire_le(&mig_wl_device_data, &dd, 1);
	memcpy(p, &dd, sizeof(dd));
	memset(p + sizeof(dd), 0x5a, state);
	return sizeof(dd) + state;
}

Test(wire_device_data, a_header_that_matches_its_frame_passes)
{
	uint8_t p[sizeof(struct mig_device_data) + 64];
	struct mig_error err = { 0 };
	struct mig_device_data dd;
	size_t n = device_data_payload(p, 64, 64);

	cr_assert_eq(mig_device_data_check(p, n, 3, 0, &dd, &err), 0, "%s", err.msg);
	cr_assert_eq(dd.cls, 2);
	cr_assert_eq(dd.instance, 1);
	cr_assert_eq(dd.offset, 4096);
	cr_assert_eq(dd.len, 64);
}

Test(wire_device_data, each_bad_field_is_named)
{
	uint8_t p[sizeof(struct mig_device_data) + 64] = { 0 };
	struct mig_error err = { 0 };
	struct mig_device_data dd;
	size_t n;

	/* shorter than its header */
	cr_assert_eq(mig_device_data_check(p, sizeof(dd) - 1, 3, 2, &dd, &err), -EBADMSG);
	cr_assert_not_null(strstr(err.msg, "DEVICE_DATA frame of 23 bytes on stream 2"), "%s",
			   err.msg);
	/* its len says more, and less, than the frame holds */
	mig_error_clear(&err);
	n = device_data_payload(p, 64, 65);
	cr_assert_eq(mig_device_data_check(p, n, 3, 0, &dd, &err), -EBADMSG);
	cr_assert_not_null(strstr(err.msg, "says it carries 65 bytes of state"), "%s", err.msg);
	mig_error_clear(&err);
	n = device_data_payload(p, 64, 63);
	cr_assert_eq(mig_device_data_check(p, n, 3, 0, &dd, &err), -EBADMSG, "%s", err.msg);
	/* another round's */
	mig_error_clear(&err);
	n = device_data_payload(p, 64, 64);
	cr_assert_eq(mig_device_data_check(p, n, 4, 1, &dd, &err), -EPROTO);
	cr_assert_not_null(strstr(err.msg, "round 3 on stream 1 during round 4"), "%s", err.msg);
}

/* ---- the agent's dispatch of a REQUEST (agent_request_parse) ---- */

static size_t request_payload(uint8_t *p, uint32_t op, size_t body)
{
	struct mig_request rq = { .op = op };

	mig_wire_le(&mig_wl_request, &rq, 1);
	memcpy(p, &rq, sizeof(rq));
	memset(p + sizeof(rq), 0, body);
	return sizeof(rq) + body;
}

Test(wire_request, a_known_op_with_its_body_size_passes)
{
	uint8_t p[sizeof(struct mig_request) + sizeof(struct mig_vm_check) +
		  2 * sizeof(struct mig_manifest_entry)];
	struct mig_error err = { 0 };
	struct agent_request rq;
	size_t n = request_payload(p, MIG_OP_VM_DESTROY, sizeof(struct mig_vm_ref));

	cr_assert_eq(agent_request_parse(MIG_FRAME_REQUEST, p, n, &rq, &err), 0, "%s", err.msg);
	cr_assert_eq(rq.op, MIG_OP_VM_DESTROY);
	cr_assert_eq(rq.body, p + sizeof(struct mig_request));
	cr_assert_eq(rq.body_len, sizeof(struct mig_vm_ref));
	/* VM_CHECK: its body and whole manifest entries */
	n = request_payload(p, MIG_OP_VM_CHECK, sizeof(p) - sizeof(struct mig_request));
	cr_assert_eq(agent_request_parse(MIG_FRAME_REQUEST, p, n, &rq, &err), 0, "%s", err.msg);
	cr_assert_eq(rq.body_len, sizeof(p) - sizeof(struct mig_request));
	n = request_payload(p, MIG_OP_VM_LIST, 0);
	cr_assert_eq(agent_request_parse(MIG_FRAME_REQUEST, p, n, &rq, &err), 0, "%s", err.msg);
	cr_assert_eq(rq.body_len, 0);
}

Test(wire_request, what_the_session_refuses)
{
	uint8_t p[sizeof(struct mig_request) + sizeof(struct mig_vm_check) +
		  sizeof(struct mig_manifest_entry) + 1];
	struct mig_error err = { 0 };
	struct agent_request rq;
	size_t n = request_payload(p, MIG_OP_VM_LIST, 0);

	/* not a REQUEST, or shorter than its op: the session ends */
	cr_assert_eq(agent_request_parse(MIG_FRAME_REPLY, p, n, &rq, &err), -EPROTO);
	cr_assert_str_eq(err.msg, "expected a REQUEST frame");
	mig_error_clear(&err);
	cr_assert_eq(agent_request_parse(MIG_FRAME_REQUEST, p, n - 1, &rq, &err), -EPROTO);
	/* an op outside the table, or the hole at 0 */
	mig_error_clear(&err);
	n = request_payload(p, _MIG_OP_END, 0);
	cr_assert_eq(agent_request_parse(MIG_FRAME_REQUEST, p, n, &rq, &err), -EOPNOTSUPP);
	cr_assert_str_eq(err.msg, "unknown operation");
	mig_error_clear(&err);
	n = request_payload(p, MIG_OP_INVALID, 0);
	cr_assert_eq(agent_request_parse(MIG_FRAME_REQUEST, p, n, &rq, &err), -EOPNOTSUPP);
	/* a body one byte off, and a part of a manifest entry */
	mig_error_clear(&err);
	n = request_payload(p, MIG_OP_VM_DESTROY, sizeof(struct mig_vm_ref) + 1);
	cr_assert_eq(agent_request_parse(MIG_FRAME_REQUEST, p, n, &rq, &err), -EINVAL);
	cr_assert_str_eq(err.msg, "VM_DESTROY: body of 65 bytes, expected 64");
	mig_error_clear(&err);
	n = request_payload(p, MIG_OP_VM_CHECK, sizeof(p) - sizeof(struct mig_request));
	cr_assert_eq(agent_request_parse(MIG_FRAME_REQUEST, p, n, &rq, &err), -EINVAL);
	cr_assert_not_null(strstr(err.msg, "and whole entries"), "%s", err.msg);
}
