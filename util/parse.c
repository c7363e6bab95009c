// SPDX-License-Identifier: MIT
/*
 * Strict parsers for command-line values.  strtoull() is not used on purpose:
 * it skips leading blanks, accepts a sign (and silently negates "-1" into a
 * huge value) and understands 0x/0 prefixes only when asked.  A value typed
 * by an operator either means exactly one number or is rejected.
 */
#include <migrate/parse.h>

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <string.h>
#include <strings.h>

/*
 * Reads one or more decimal digits at *p and advances *p past them.
 * -EINVAL when there is no digit (*p unchanged), -ERANGE when the value does
 * not fit (*p advanced, *ret untouched).
 */
static int scan_digits(const char **p, uint64_t *ret)
{
	const char *s = *p;
	bool overflow = false;
	uint64_t v = 0;

	if (*s < '0' || *s > '9')
		return -EINVAL;
	for (; *s >= '0' && *s <= '9'; s++) {
		unsigned d = (unsigned)(*s - '0');

		if (v > (UINT64_MAX - d) / 10)
			overflow = true;
		v = v * 10 + d;
	}
	/* Past the digits even on overflow, so the caller can still judge the suffix. */
	*p = s;
	if (overflow)
		return -ERANGE;
	*ret = v;
	return 0;
}

static int mul_check(uint64_t a, uint64_t b, uint64_t *ret)
{
	if (b && a > UINT64_MAX / b)
		return -ERANGE;
	*ret = a * b;
	return 0;
}

int parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *ret)
{
	uint64_t v;
	int r;

	if (!s || !ret)
		return -EINVAL;
	r = scan_digits(&s, &v);
	if (r == -EINVAL || *s)
		return -EINVAL;
	if (r < 0)
		return r;
	if (v < min || v > max)
		return -ERANGE;
	*ret = v;
	return 0;
}

/* The unit of a size: "", "B", or K/M/G/T followed by "", "B" or "iB". */
static int size_unit(const char *u, uint64_t *ret)
{
	static const char units[] = "KMGT";
	unsigned shift = 0;

	if (!*u || !strcasecmp(u, "B")) {
		*ret = 1;
		return 0;
	}
	for (unsigned i = 0; units[i]; i++) {
		if ((*u & ~0x20) == units[i]) {
			shift = 10 * (i + 1);
			break;
		}
	}
	if (!shift)
		return -EINVAL;
	u++;
	if (*u && strcasecmp(u, "B") && strcasecmp(u, "iB"))
		return -EINVAL;
	*ret = 1ULL << shift;
	return 0;
}

int parse_size(const char *s, uint64_t *ret)
{
	uint64_t v, mult, bytes;
	int r;

	if (!s || !ret)
		return -EINVAL;
	r = scan_digits(&s, &v);
	/* A malformed unit is reported as such even when the digits overflow. */
	if (r == -EINVAL || size_unit(s, &mult) < 0)
		return -EINVAL;
	if (r < 0)
		return r;
	r = mul_check(v, mult, &bytes);
	if (r < 0)
		return r;
	*ret = bytes;
	return 0;
}

int parse_rate(const char *s, uint64_t *ret)
{
	if (!s || !ret)
		return -EINVAL;
	if (!strcmp(s, "max")) {
		*ret = 0;
		return 0;
	}
	/* 0 would silently mean "max"; the operator has to say so. */
	return parse_u64(s, 1, UINT64_MAX, ret);
}

int parse_duration_ms(const char *s, uint64_t default_unit_ms, uint64_t *ret)
{
	static const struct {
		const char *suffix;
		uint64_t ms;
	} units[] = {
		{ "ms", 1 },
		{ "s", 1000 },
		{ "m", 60 * 1000 },
		{ "h", 60 * 60 * 1000 },
	};
	uint64_t v, mult = 0, ms;
	int r;

	if (!s || !ret || !default_unit_ms)
		return -EINVAL;
	r = scan_digits(&s, &v);
	if (r == -EINVAL)
		return r;
	if (!*s) {
		mult = default_unit_ms;
	} else {
		for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++)
			if (!strcmp(s, units[i].suffix))
				mult = units[i].ms;
		if (!mult)
			return -EINVAL;
	}
	if (r < 0)
		return r;
	r = mul_check(v, mult, &ms);
	if (r < 0)
		return r;
	*ret = ms;
	return 0;
}
