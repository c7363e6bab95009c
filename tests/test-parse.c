// SPDX-License-Identifier: MIT
/*
 * Command-line value parsers, the lab spec parser, lab_config_check()
 * boundaries and the lab name tables.  No KVM needed.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include <migrate/error.h>
#include <migrate/lab.h>
#include <migrate/parse.h>

#define KiB (1ULL << 10)
#define MiB (1ULL << 20)
#define GiB (1ULL << 30)
#define TiB (1ULL << 40)

/* A value the parsers must leave alone when they fail. */
#define POISON 0xdeadbeefcafef00dULL

struct size_case {
	const char *s;
	uint64_t want;
};

/* ---- parse_size ---- */

Test(parse_size, accepts_numbers_and_binary_units)
{
	static const struct size_case good[] = {
		{ "0", 0 },
		{ "4096", 4096 },
		{ "007", 7 },
		{ "4096B", 4096 },
		{ "4096b", 4096 },
		{ "64K", 64 * KiB },
		{ "64k", 64 * KiB },
		{ "64KB", 64 * KiB },
		{ "64KiB", 64 * KiB },
		{ "64kib", 64 * KiB },
		{ "64M", 64 * MiB },
		{ "64MiB", 64 * MiB },
		{ "64mb", 64 * MiB },
		{ "1G", GiB },
		{ "1g", GiB },
		{ "1GiB", GiB },
		{ "1GB", GiB },
		{ "2T", 2 * TiB },
		{ "2TiB", 2 * TiB },
		{ "18446744073709551615", UINT64_MAX },
		{ "16777215T", 16777215 * TiB },
	};

	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		uint64_t v = POISON;
		int r = parse_size(good[i].s, &v);

		cr_assert_eq(r, 0, "parse_size(\"%s\") = %d, want 0", good[i].s, r);
		cr_assert_eq(v, good[i].want, "parse_size(\"%s\") = %llu, want %llu",
			     good[i].s, (unsigned long long)v, (unsigned long long)good[i].want);
	}
}

Test(parse_size, rejects_malformed)
{
	static const char *const bad[] = {
		"", "-1", "+1", " 1", "1 ", "12 M", "1Gx", "1.5G", "1,5G", "G", "B", "KiB",
		"1iB", "1P", "1E", "1KK", "1KiBB", "1Gi", "0x10", "1e6", "1_000", "\t1",
		"1G ", "1\n",
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		uint64_t v = POISON;
		int r = parse_size(bad[i], &v);

		cr_assert_eq(r, -EINVAL, "parse_size(\"%s\") = %d, want -EINVAL", bad[i], r);
		cr_assert_eq(v, POISON, "parse_size(\"%s\") wrote its result on failure", bad[i]);
	}
	cr_assert_eq(parse_size(NULL, &(uint64_t){0}), -EINVAL);
}

Test(parse_size, rejects_overflow)
{
	static const char *const big[] = {
		"18446744073709551616", "99999999999999999999999", "16777216T",
		"17179869184G", "18014398509481984K",
	};

	for (size_t i = 0; i < sizeof(big) / sizeof(big[0]); i++) {
		uint64_t v = POISON;
		int r = parse_size(big[i], &v);

		cr_assert_eq(r, -ERANGE, "parse_size(\"%s\") = %d, want -ERANGE", big[i], r);
		cr_assert_eq(v, POISON);
	}
	/* A bad unit is a syntax error even when the digits also overflow. */
	cr_assert_eq(parse_size("99999999999999999999999X", &(uint64_t){0}), -EINVAL);
}

/* ---- parse_u64 ---- */

Test(parse_u64, accepts_in_range)
{
	uint64_t v = POISON;

	cr_assert_eq(parse_u64("0", 0, 10, &v), 0);
	cr_assert_eq(v, 0);
	cr_assert_eq(parse_u64("10", 0, 10, &v), 0);
	cr_assert_eq(v, 10);
	cr_assert_eq(parse_u64("1", 1, 1, &v), 0);
	cr_assert_eq(v, 1);
	cr_assert_eq(parse_u64("0042", 0, 100, &v), 0);
	cr_assert_eq(v, 42);
	cr_assert_eq(parse_u64("18446744073709551615", 0, UINT64_MAX, &v), 0);
	cr_assert_eq(v, UINT64_MAX);
}

Test(parse_u64, rejects_out_of_range_and_overflow)
{
	uint64_t v = POISON;

	cr_assert_eq(parse_u64("11", 0, 10, &v), -ERANGE);
	cr_assert_eq(parse_u64("0", 1, 10, &v), -ERANGE);
	cr_assert_eq(parse_u64("65", 1, 64, &v), -ERANGE);
	cr_assert_eq(parse_u64("18446744073709551616", 0, UINT64_MAX, &v), -ERANGE);
	cr_assert_eq(parse_u64("184467440737095516150", 0, UINT64_MAX, &v), -ERANGE);
	cr_assert_eq(v, POISON);
}

Test(parse_u64, rejects_malformed)
{
	static const char *const bad[] = {
		"", "-1", "-0", "+1", " 1", "1 ", "1x", "1.0", "1K", "0x1", "1e3", "one",
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		uint64_t v = POISON;
		int r = parse_u64(bad[i], 0, UINT64_MAX, &v);

		cr_assert_eq(r, -EINVAL, "parse_u64(\"%s\") = %d, want -EINVAL", bad[i], r);
		cr_assert_eq(v, POISON);
	}
	cr_assert_eq(parse_u64(NULL, 0, 1, &(uint64_t){0}), -EINVAL);
	/* Malformed wins over too large. */
	cr_assert_eq(parse_u64("99999999999999999999999x", 0, UINT64_MAX, &(uint64_t){0}), -EINVAL);
	cr_assert_eq(parse_rate("99999999999999999999999x", &(uint64_t){0}), -EINVAL);
	cr_assert_eq(parse_duration_ms("99999999999999999999999x", 1, &(uint64_t){0}), -EINVAL);
}

/* ---- parse_rate ---- */

Test(parse_rate, max_and_numbers)
{
	uint64_t v = POISON;

	cr_assert_eq(parse_rate("max", &v), 0);
	cr_assert_eq(v, 0);
	cr_assert_eq(parse_rate("1", &v), 0);
	cr_assert_eq(v, 1);
	cr_assert_eq(parse_rate("250000", &v), 0);
	cr_assert_eq(v, 250000);
}

Test(parse_rate, rejects_bad)
{
	static const struct {
		const char *s;
		int want;
	} bad[] = {
		{ "", -EINVAL }, { "MAX", -EINVAL }, { "max ", -EINVAL }, { "maxx", -EINVAL },
		{ "-1", -EINVAL }, { "1k", -EINVAL }, { "1.5", -EINVAL }, { "10/s", -EINVAL },
		/* 0 would mean "max" internally; it has to be spelled out. */
		{ "0", -ERANGE },
		{ "18446744073709551616", -ERANGE },
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		uint64_t v = POISON;
		int r = parse_rate(bad[i].s, &v);

		cr_assert_eq(r, bad[i].want, "parse_rate(\"%s\") = %d, want %d",
			     bad[i].s, r, bad[i].want);
		cr_assert_eq(v, POISON);
	}
}

/* ---- parse_duration_ms ---- */

Test(parse_duration, units_and_default)
{
	static const struct {
		const char *s;
		uint64_t unit, want;
	} good[] = {
		{ "300ms", 1000, 300 },
		{ "0ms", 1000, 0 },
		{ "5s", 1000, 5000 },
		{ "5s", 1, 5000 },
		{ "2m", 1000, 120000 },
		{ "1h", 1000, 3600000 },
		{ "5", 1000, 5000 },
		{ "5", 1, 5 },
		{ "3", 60000, 180000 },
		{ "0", 1000, 0 },
		{ "18446744073709551615ms", 1000, UINT64_MAX },
		{ "307445734561825m", 1000, 307445734561825ULL * 60000 },
	};

	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		uint64_t v = POISON;
		int r = parse_duration_ms(good[i].s, good[i].unit, &v);

		cr_assert_eq(r, 0, "parse_duration_ms(\"%s\") = %d", good[i].s, r);
		cr_assert_eq(v, good[i].want, "parse_duration_ms(\"%s\", %llu) = %llu, want %llu",
			     good[i].s, (unsigned long long)good[i].unit,
			     (unsigned long long)v, (unsigned long long)good[i].want);
	}
}

Test(parse_duration, rejects_bad)
{
	static const struct {
		const char *s;
		int want;
	} bad[] = {
		{ "", -EINVAL }, { "s", -EINVAL }, { "ms", -EINVAL }, { "-5s", -EINVAL },
		{ "+5s", -EINVAL }, { "5 s", -EINVAL }, { " 5s", -EINVAL }, { "5sec", -EINVAL },
		{ "5S", -EINVAL }, { "1.5s", -EINVAL }, { "5x", -EINVAL }, { "5ms ", -EINVAL },
		{ "5us", -EINVAL }, { "5mss", -EINVAL },
		{ "18446744073709551616", -ERANGE },
		{ "18446744073709551615s", -ERANGE },
		{ "307445734561826m", -ERANGE },
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		uint64_t v = POISON;
		int r = parse_duration_ms(bad[i].s, 1000, &v);

		cr_assert_eq(r, bad[i].want, "parse_duration_ms(\"%s\") = %d, want %d",
			     bad[i].s, r, bad[i].want);
		cr_assert_eq(v, POISON);
	}
	/* The bare number overflows only once scaled by the default unit. */
	cr_assert_eq(parse_duration_ms("18446744073709551615", 1000, &(uint64_t){0}), -ERANGE);
	cr_assert_eq(parse_duration_ms("5", 0, &(uint64_t){0}), -EINVAL);
	cr_assert_eq(parse_duration_ms(NULL, 1000, &(uint64_t){0}), -EINVAL);
}

/* ---- name tables ---- */

Test(lab_tables, pattern_walks_every_value)
{
	for (int p = 0; p < _LAB_PATTERN_MAX; p++) {
		const char *name = lab_pattern_to_string((enum lab_pattern)p);

		cr_assert_not_null(name, "pattern %d has no name", p);
		cr_assert_gt(strlen(name), 0);
		cr_assert_eq(lab_pattern_from_string(name), p, "pattern '%s' does not round-trip", name);
		for (int q = 0; q < p; q++)
			cr_assert_str_neq(name, lab_pattern_to_string((enum lab_pattern)q));
	}
	cr_assert_str_eq(lab_pattern_to_string(LAB_PATTERN_SEQ), "seq");
	cr_assert_str_eq(lab_pattern_to_string(LAB_PATTERN_RANDOM), "random");
	cr_assert_null(lab_pattern_to_string(_LAB_PATTERN_MAX));
	cr_assert_null(lab_pattern_to_string((enum lab_pattern)(_LAB_PATTERN_MAX + 1)));
	cr_assert_null(lab_pattern_to_string((enum lab_pattern)-1));
	cr_assert_eq(lab_pattern_from_string("SEQ"), -EINVAL);
	cr_assert_eq(lab_pattern_from_string(""), -EINVAL);
	cr_assert_eq(lab_pattern_from_string("bitmap"), -EINVAL);
	cr_assert_eq(lab_pattern_from_string(NULL), -EINVAL);
}

Test(lab_tables, dirty_log_walks_every_value)
{
	for (int d = 0; d < _LAB_DIRTY_LOG_MAX; d++) {
		const char *name = lab_dirty_log_to_string((enum lab_dirty_log)d);

		cr_assert_not_null(name, "dirty-log mode %d has no name", d);
		cr_assert_gt(strlen(name), 0);
		cr_assert_eq(lab_dirty_log_from_string(name), d, "mode '%s' does not round-trip", name);
		for (int q = 0; q < d; q++)
			cr_assert_str_neq(name, lab_dirty_log_to_string((enum lab_dirty_log)q));
	}
	cr_assert_str_eq(lab_dirty_log_to_string(LAB_DIRTY_LOG_BITMAP), "bitmap");
	cr_assert_str_eq(lab_dirty_log_to_string(LAB_DIRTY_LOG_RING), "ring");
	cr_assert_null(lab_dirty_log_to_string(_LAB_DIRTY_LOG_MAX));
	cr_assert_null(lab_dirty_log_to_string((enum lab_dirty_log)(_LAB_DIRTY_LOG_MAX + 1)));
	cr_assert_null(lab_dirty_log_to_string((enum lab_dirty_log)-1));
	cr_assert_eq(lab_dirty_log_from_string("Ring"), -EINVAL);
	cr_assert_eq(lab_dirty_log_from_string(""), -EINVAL);
	cr_assert_eq(lab_dirty_log_from_string("seq"), -EINVAL);
	cr_assert_eq(lab_dirty_log_from_string(NULL), -EINVAL);
}

/* ---- lab_config_default / lab_config_check ---- */

Test(lab_config, defaults)
{
	struct lab_config cfg;
	struct mig_error err = { 0 };

	memset(&cfg, 0xa5, sizeof(cfg));
	lab_config_default(&cfg);
	cr_assert_eq(cfg.mem_bytes, GiB);
	cr_assert_eq(cfg.mem_bytes, LAB_DEFAULT_MEM);
	cr_assert_eq(cfg.vcpus, 2);
	cr_assert_eq(cfg.vcpus, LAB_DEFAULT_VCPUS);
	cr_assert_eq(cfg.wss_bytes, 64 * MiB);
	cr_assert_eq(cfg.wss_bytes, LAB_DEFAULT_WSS);
	cr_assert_eq(cfg.pattern, LAB_PATTERN_SEQ);
	cr_assert_eq(cfg.rate, 0);
	cr_assert_eq(cfg.dirty_log, LAB_DIRTY_LOG_BITMAP);
	cr_assert_neq(cfg.seed, 0);
	cr_assert_eq(cfg.force_classic, false);
	cr_assert_eq(cfg.ring_entries, 0);
	cr_assert_eq(lab_config_check(&cfg, &err), 0, "defaults rejected: %s", err.msg);

	/* The seed is a constant, so two runs fill RAM the same way. */
	struct lab_config again;

	lab_config_default(&again);
	cr_assert_eq(again.seed, cfg.seed);
}

static void expect_ok(const struct lab_config *cfg)
{
	struct mig_error err = { 0 };
	int r = lab_config_check(cfg, &err);

	cr_assert_eq(r, 0, "mem=%llu vcpus=%u wss=%llu rejected: %s",
		     (unsigned long long)cfg->mem_bytes, cfg->vcpus,
		     (unsigned long long)cfg->wss_bytes, err.msg);
	cr_assert_eq(err.code, 0);
}

/* Rejected with -EINVAL and a message holding each of the needles. */
static void expect_bad(const struct lab_config *cfg, const char *const *needles)
{
	struct mig_error err = { 0 };
	int r = lab_config_check(cfg, &err);

	cr_assert_eq(r, -EINVAL, "mem=%llu vcpus=%u wss=%llu accepted",
		     (unsigned long long)cfg->mem_bytes, cfg->vcpus,
		     (unsigned long long)cfg->wss_bytes);
	cr_assert_eq(err.code, -EINVAL);
	for (; *needles; needles++)
		cr_assert_not_null(strstr(err.msg, *needles),
				   "message lacks '%s': %s", *needles, err.msg);
	/* A NULL error object is allowed and gives the same verdict. */
	cr_assert_eq(lab_config_check(cfg, NULL), -EINVAL);
}

Test(lab_config, mem_boundaries)
{
	struct lab_config cfg;

	lab_config_default(&cfg);
	cfg.wss_bytes = 0;
	cfg.vcpus = 1;

	cfg.mem_bytes = 4 * MiB;
	expect_ok(&cfg);
	cfg.mem_bytes = 6 * MiB;
	expect_ok(&cfg);
	cfg.mem_bytes = 64 * GiB;
	expect_ok(&cfg);

	cfg.mem_bytes = 2 * MiB;
	expect_bad(&cfg, (const char *const[]){ "mem", "2 MiB", "4 MiB", "64 GiB", "2 MiB", NULL });
	cfg.mem_bytes = 0;
	expect_bad(&cfg, (const char *const[]){ "mem", "0 bytes", NULL });
	cfg.mem_bytes = 5 * MiB;
	expect_bad(&cfg, (const char *const[]){ "mem", "5 MiB", "multiple of 2 MiB", NULL });
	cfg.mem_bytes = 4 * MiB + 4096;
	expect_bad(&cfg, (const char *const[]){ "mem", "4100 KiB", NULL });
	cfg.mem_bytes = 64 * GiB + 2 * MiB;
	expect_bad(&cfg, (const char *const[]){ "mem", "65538 MiB", "64 GiB", NULL });
	cfg.mem_bytes = 128 * GiB;
	expect_bad(&cfg, (const char *const[]){ "mem", "128 GiB", NULL });
}

Test(lab_config, vcpus_boundaries)
{
	struct lab_config cfg;

	lab_config_default(&cfg);
	cfg.vcpus = 1;
	expect_ok(&cfg);
	cfg.vcpus = 64;
	expect_ok(&cfg);
	cfg.vcpus = 0;
	expect_bad(&cfg, (const char *const[]){ "vcpus", "is 0", "1 to 64", NULL });
	cfg.vcpus = 65;
	expect_bad(&cfg, (const char *const[]){ "vcpus", "is 65", "1 to 64", NULL });
	cfg.vcpus = UINT32_MAX;
	expect_bad(&cfg, (const char *const[]){ "vcpus", "4294967295", NULL });
}

Test(lab_config, wss_boundaries)
{
	struct lab_config cfg;

	lab_config_default(&cfg);
	cfg.mem_bytes = 64 * MiB;
	cfg.wss_bytes = 62 * MiB;       /* everything above the 2 MiB system area */
	expect_ok(&cfg);
	cfg.wss_bytes = 0;
	expect_ok(&cfg);
	cfg.wss_bytes = 4096;
	expect_ok(&cfg);
	cfg.wss_bytes = 62 * MiB - 4096;
	expect_ok(&cfg);

	cfg.wss_bytes = 62 * MiB + 4096;
	expect_bad(&cfg, (const char *const[]){ "wss", "63492 KiB", "62 MiB", "64 MiB", NULL });
	cfg.wss_bytes = 64 * MiB;
	expect_bad(&cfg, (const char *const[]){ "wss", "64 MiB", "62 MiB", NULL });
	cfg.wss_bytes = 4095;
	expect_bad(&cfg, (const char *const[]){ "wss", "4095 bytes", "multiple of 4 KiB", "to 4 KiB", NULL });
	cfg.wss_bytes = 4096 + 512;
	expect_bad(&cfg, (const char *const[]){ "wss", "4608 bytes", "to 8 KiB", NULL });

	/* The limit follows mem: the smallest guest has 2 MiB of working set. */
	cfg.mem_bytes = 4 * MiB;
	cfg.wss_bytes = 2 * MiB;
	expect_ok(&cfg);
	cfg.wss_bytes = 2 * MiB + 4096;
	expect_bad(&cfg, (const char *const[]){ "wss", "2 MiB", NULL });
}

Test(lab_config, enums_and_ring)
{
	struct lab_config cfg;

	lab_config_default(&cfg);
	cfg.pattern = _LAB_PATTERN_MAX;
	expect_bad(&cfg, (const char *const[]){ "pattern", "seq", "random", NULL });
	lab_config_default(&cfg);
	cfg.dirty_log = _LAB_DIRTY_LOG_MAX;
	expect_bad(&cfg, (const char *const[]){ "dirty-log", "bitmap", "ring", NULL });

	lab_config_default(&cfg);
	cfg.dirty_log = LAB_DIRTY_LOG_RING;
	cfg.ring_entries = 256;
	expect_ok(&cfg);
	cfg.ring_entries = 65536;
	expect_ok(&cfg);
	cfg.ring_entries = 128;
	expect_bad(&cfg, (const char *const[]){ "ring", "128", NULL });
	cfg.ring_entries = 131072;
	expect_bad(&cfg, (const char *const[]){ "ring", "131072", NULL });
	cfg.ring_entries = 1000;
	expect_bad(&cfg, (const char *const[]){ "ring", "1000", "power of two", NULL });
}

Test(lab_config, first_error_is_kept)
{
	struct lab_config cfg;
	struct mig_error err = { 0 };

	lab_config_default(&cfg);
	cfg.mem_bytes = 3 * MiB;
	cfg.vcpus = 0;
	cr_assert_eq(lab_config_check(&cfg, &err), -EINVAL);
	cr_assert_not_null(strstr(err.msg, "mem"), "%s", err.msg);
	cr_assert_null(strstr(err.msg, "vcpus"), "%s", err.msg);
}

/* ---- lab_spec_parse ---- */

Test(lab_spec, full_spec)
{
	struct lab_config cfg;
	struct mig_error err = { 0 };

	lab_config_default(&cfg);
	cr_assert_eq(lab_spec_parse("mem=2G,vcpus=4,wss=128M,pattern=random,rate=5000,"
				    "dirty-log=ring", &cfg, &err), 0, "%s", err.msg);
	cr_assert_eq(cfg.mem_bytes, 2 * GiB);
	cr_assert_eq(cfg.vcpus, 4);
	cr_assert_eq(cfg.wss_bytes, 128 * MiB);
	cr_assert_eq(cfg.pattern, LAB_PATTERN_RANDOM);
	cr_assert_eq(cfg.rate, 5000);
	cr_assert_eq(cfg.dirty_log, LAB_DIRTY_LOG_RING);
	cr_assert_eq(err.code, 0);
	cr_assert_eq(lab_config_check(&cfg, &err), 0, "%s", err.msg);
}

Test(lab_spec, untouched_keys_keep_their_values)
{
	struct lab_config cfg, before;
	struct mig_error err = { 0 };

	lab_config_default(&cfg);
	cfg.mem_bytes = 256 * MiB;
	cfg.vcpus = 3;
	cfg.wss_bytes = 8 * MiB;
	cfg.pattern = LAB_PATTERN_RANDOM;
	cfg.rate = 77;
	cfg.dirty_log = LAB_DIRTY_LOG_RING;
	cfg.seed = 1234;
	cfg.force_classic = true;
	cfg.ring_entries = 1024;
	before = cfg;

	cr_assert_eq(lab_spec_parse("wss=16M", &cfg, &err), 0, "%s", err.msg);
	cr_assert_eq(cfg.wss_bytes, 16 * MiB);
	before.wss_bytes = 16 * MiB;
	cr_assert_eq(memcmp(&cfg, &before, sizeof(cfg)), 0, "a key not in the spec changed");

	cr_assert_eq(lab_spec_parse("rate=max,pattern=seq", &cfg, &err), 0, "%s", err.msg);
	cr_assert_eq(cfg.rate, 0);
	cr_assert_eq(cfg.pattern, LAB_PATTERN_SEQ);
	before.rate = 0;
	before.pattern = LAB_PATTERN_SEQ;
	cr_assert_eq(memcmp(&cfg, &before, sizeof(cfg)), 0, "a key not in the spec changed");

	cr_assert_eq(lab_spec_parse("dirty-log=bitmap,mem=1GiB,vcpus=1", &cfg, &err), 0,
		     "%s", err.msg);
	before.dirty_log = LAB_DIRTY_LOG_BITMAP;
	before.mem_bytes = GiB;
	before.vcpus = 1;
	cr_assert_eq(memcmp(&cfg, &before, sizeof(cfg)), 0, "a key not in the spec changed");
}

/* Fails with -EINVAL, leaves cfg exactly as it was, and explains itself. */
static void expect_spec_bad(const char *spec, const char *const *needles)
{
	struct lab_config cfg, before;
	struct mig_error err = { 0 };
	int r;

	lab_config_default(&cfg);
	cfg.vcpus = 3;
	before = cfg;
	r = lab_spec_parse(spec, &cfg, &err);
	cr_assert_eq(r, -EINVAL, "lab_spec_parse(\"%s\") = %d, want -EINVAL", spec ? spec : "(null)", r);
	cr_assert_eq(err.code, -EINVAL);
	cr_assert_eq(memcmp(&cfg, &before, sizeof(cfg)), 0,
		     "failed spec \"%s\" changed the config", spec ? spec : "(null)");
	for (; *needles; needles++)
		cr_assert_not_null(strstr(err.msg, *needles),
				   "spec \"%s\": message lacks '%s': %s", spec ? spec : "(null)",
				   *needles, err.msg);
	/* Without an error object the verdict is the same. */
	cr_assert_eq(lab_spec_parse(spec, &cfg, NULL), -EINVAL);
	cr_assert_eq(memcmp(&cfg, &before, sizeof(cfg)), 0);
}

#define NEEDLES(...) ((const char *const[]){ __VA_ARGS__, NULL })

Test(lab_spec, rejects_structure_errors)
{
	expect_spec_bad("", NEEDLES("empty"));
	expect_spec_bad(NULL, NEEDLES("empty"));
	expect_spec_bad("mem", NEEDLES("'mem'", "="));
	expect_spec_bad("mem=1G,vcpus", NEEDLES("'vcpus'", "="));
	expect_spec_bad("mem=1G,", NEEDLES("empty item"));
	expect_spec_bad(",mem=1G", NEEDLES("empty item"));
	expect_spec_bad("mem=1G,,vcpus=2", NEEDLES("empty item"));
	expect_spec_bad("=1G", NEEDLES("unknown key ''"));
	expect_spec_bad("memory=1G", NEEDLES("unknown key 'memory'", "mem, vcpus, wss"));
	expect_spec_bad("mem=1G, vcpus=2", NEEDLES("unknown key ' vcpus'"));
	expect_spec_bad("MEM=1G", NEEDLES("unknown key 'MEM'"));
	expect_spec_bad("dirty_log=ring", NEEDLES("unknown key 'dirty_log'", "dirty-log"));
	expect_spec_bad("mem=1G,mem=2G", NEEDLES("'mem'", "more than once"));
	expect_spec_bad("vcpus=2,wss=8M,vcpus=2", NEEDLES("'vcpus'", "more than once"));
}

Test(lab_spec, rejects_bad_values)
{
	expect_spec_bad("mem=", NEEDLES("mem=", "not a size"));
	expect_spec_bad("mem=1Gx", NEEDLES("mem=1Gx", "not a size", "1G"));
	expect_spec_bad("mem=1.5G", NEEDLES("mem=1.5G"));
	expect_spec_bad("mem=-1G", NEEDLES("mem=-1G"));
	expect_spec_bad("mem=99999999999T", NEEDLES("mem=99999999999T", "too large"));
	expect_spec_bad("wss=12 M", NEEDLES("wss=12 M", "not a size"));
	expect_spec_bad("vcpus=0", NEEDLES("vcpus=0", "1 to 64"));
	expect_spec_bad("vcpus=65", NEEDLES("vcpus=65", "1 to 64"));
	expect_spec_bad("vcpus=two", NEEDLES("vcpus=two"));
	expect_spec_bad("vcpus=2=3", NEEDLES("vcpus=2=3"));
	expect_spec_bad("pattern=zigzag", NEEDLES("pattern=zigzag", "seq", "random"));
	expect_spec_bad("pattern=", NEEDLES("pattern="));
	expect_spec_bad("rate=0", NEEDLES("rate=0", "max"));
	expect_spec_bad("rate=fast", NEEDLES("rate=fast", "max"));
	expect_spec_bad("dirty-log=pml", NEEDLES("dirty-log=pml", "bitmap", "ring"));
	expect_spec_bad("msi=9", NEEDLES("msi=9", "0 to 8", "4 LPIs"));
	expect_spec_bad("msi=some", NEEDLES("msi=some"));
	/* A later bad item must not leave the earlier good ones applied. */
	expect_spec_bad("mem=2G,vcpus=8,wss=1M,pattern=nope", NEEDLES("pattern=nope"));
}

Test(lab_spec, error_keeps_earlier_error)
{
	struct lab_config cfg;
	struct mig_error err = { 0 };

	lab_config_default(&cfg);
	cr_assert_eq(lab_spec_parse("mem=1G,bogus=1", &cfg, &err), -EINVAL);
	cr_assert_not_null(strstr(err.msg, "bogus"), "%s", err.msg);
	mig_error_clear(&err);
	cr_assert_eq(lab_spec_parse("mem=1G", &cfg, &err), 0);
	cr_assert_eq(err.code, 0);
}
