/* SPDX-License-Identifier: MIT */
/*
 * A small streaming JSON writer for summaries: correct escaping, commas and
 * nesting handled by the writer so callers cannot emit malformed output.
 */
#ifndef MIGRATE_JSON_H
#define MIGRATE_JSON_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#define JSON_MAX_DEPTH 16

struct json_writer {
	FILE *f;
	int depth;
	bool need_comma[JSON_MAX_DEPTH];
	bool pretty;
};

void json_init(struct json_writer *w, FILE *f, bool pretty);
void json_obj_begin(struct json_writer *w, const char *key);   /* key NULL inside arrays / at top */
void json_obj_end(struct json_writer *w);
void json_arr_begin(struct json_writer *w, const char *key);
void json_arr_end(struct json_writer *w);
void json_str(struct json_writer *w, const char *key, const char *val);  /* val NULL -> null */
void json_u64(struct json_writer *w, const char *key, uint64_t val);
void json_i64(struct json_writer *w, const char *key, int64_t val);
void json_f64(struct json_writer *w, const char *key, double val);
void json_bool(struct json_writer *w, const char *key, bool val);
void json_null(struct json_writer *w, const char *key);
/* Ends the top-level value with a newline. */
void json_finish(struct json_writer *w);

#endif
