/* SPDX-License-Identifier: MIT */
/* Parsers for command-line values. All return 0 or -EINVAL / -ERANGE. */
#ifndef MIGRATE_PARSE_H
#define MIGRATE_PARSE_H

#include <stdint.h>

/* "4096", "64K", "64M", "1G", "2T", with optional "B"/"iB" ("1GiB"); binary units. */
int parse_size(const char *s, uint64_t *ret);
/* Decimal integer in [min, max]. */
int parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *ret);
/* "max" -> 0, or a positive integer (pages per second). */
int parse_rate(const char *s, uint64_t *ret);
/* Duration: "300ms", "5s", "2m", or a bare number of `default_unit_ms` units; result in ms. */
int parse_duration_ms(const char *s, uint64_t default_unit_ms, uint64_t *ret);

#endif
