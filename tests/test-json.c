// SPDX-License-Identifier: MIT
/* The JSON writer, compared byte for byte with the documents it must produce. */
#include <criterion/criterion.h>
#include <locale.h>
#include <math.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <migrate/json.h>

struct capture {
	char *buf;
	size_t len;
	FILE *f;
	struct json_writer w;
};

static void cap_open(struct capture *c, bool pretty)
{
	c->buf = NULL;
	c->len = 0;
	c->f = open_memstream(&c->buf, &c->len);
	cr_assert_not_null(c->f);
	json_init(&c->w, c->f, pretty);
}

/* Closes the stream, compares with want, frees. */
static void cap_expect(struct capture *c, const char *want)
{
	cr_assert_eq(fclose(c->f), 0);
	cr_assert_str_eq(c->buf, want, "\n got: %s\nwant: %s", c->buf, want);
	cr_assert_eq(c->len, strlen(want));
	free(c->buf);
}

/* One document with every kind of value, nesting and empty containers. */
static void write_sample(struct json_writer *w)
{
	json_obj_begin(w, NULL);
	json_u64(w, "a", 1);
	json_arr_begin(w, "b");
	json_u64(w, NULL, 1);
	json_i64(w, NULL, -2);
	json_obj_begin(w, NULL);
	json_null(w, "c");
	json_obj_end(w);
	json_arr_end(w);
	json_obj_begin(w, "d");
	json_obj_end(w);
	json_arr_begin(w, "e");
	json_arr_end(w);
	json_bool(w, "t", true);
	json_bool(w, "f", false);
	json_str(w, "s", "x");
	json_str(w, "n", NULL);
	json_f64(w, "x", 0.5);
	json_obj_end(w);
	json_finish(w);
}

Test(json, compact_document)
{
	struct capture c;

	cap_open(&c, false);
	write_sample(&c.w);
	cap_expect(&c, "{\"a\":1,\"b\":[1,-2,{\"c\":null}],\"d\":{},\"e\":[],\"t\":true,"
		       "\"f\":false,\"s\":\"x\",\"n\":null,\"x\":0.5}\n");
}

Test(json, pretty_document)
{
	struct capture c;

	cap_open(&c, true);
	write_sample(&c.w);
	cap_expect(&c,
		   "{\n"
		   "  \"a\": 1,\n"
		   "  \"b\": [\n"
		   "    1,\n"
		   "    -2,\n"
		   "    {\n"
		   "      \"c\": null\n"
		   "    }\n"
		   "  ],\n"
		   "  \"d\": {},\n"
		   "  \"e\": [],\n"
		   "  \"t\": true,\n"
		   "  \"f\": false,\n"
		   "  \"s\": \"x\",\n"
		   "  \"n\": null,\n"
		   "  \"x\": 0.5\n"
		   "}\n");
}

Test(json, empty_containers_at_top)
{
	struct capture c;

	cap_open(&c, false);
	json_obj_begin(&c.w, NULL);
	json_obj_end(&c.w);
	json_finish(&c.w);
	json_arr_begin(&c.w, NULL);
	json_arr_end(&c.w);
	json_finish(&c.w);
	cap_expect(&c, "{}\n[]\n");

	cap_open(&c, true);
	json_obj_begin(&c.w, NULL);
	json_obj_end(&c.w);
	json_finish(&c.w);
	json_arr_begin(&c.w, NULL);
	json_arr_end(&c.w);
	json_finish(&c.w);
	cap_expect(&c, "{}\n[]\n");
}

Test(json, nested_empty_and_arrays_of_arrays)
{
	struct capture c;

	cap_open(&c, false);
	json_arr_begin(&c.w, NULL);
	json_arr_begin(&c.w, NULL);
	json_arr_end(&c.w);
	json_arr_begin(&c.w, NULL);
	json_obj_begin(&c.w, NULL);
	json_obj_end(&c.w);
	json_obj_begin(&c.w, NULL);
	json_arr_begin(&c.w, "k");
	json_null(&c.w, NULL);
	json_arr_end(&c.w);
	json_obj_end(&c.w);
	json_arr_end(&c.w);
	json_arr_end(&c.w);
	json_finish(&c.w);
	cap_expect(&c, "[[],[{},{\"k\":[null]}]]\n");

	cap_open(&c, true);
	json_arr_begin(&c.w, NULL);
	json_arr_begin(&c.w, NULL);
	json_arr_end(&c.w);
	json_obj_begin(&c.w, NULL);
	json_arr_begin(&c.w, "k");
	json_null(&c.w, NULL);
	json_arr_end(&c.w);
	json_obj_end(&c.w);
	json_arr_end(&c.w);
	json_finish(&c.w);
	cap_expect(&c,
		   "[\n"
		   "  [],\n"
		   "  {\n"
		   "    \"k\": [\n"
		   "      null\n"
		   "    ]\n"
		   "  }\n"
		   "]\n");
}

Test(json, summary_shape)
{
	struct capture c;

	/* The shape `migratectl vm run --json` prints. */
	cap_open(&c, false);
	json_obj_begin(&c.w, NULL);
	json_u64(&c.w, "vcpus", 2);
	json_u64(&c.w, "mem_bytes", 1ULL << 30);
	json_u64(&c.w, "wss_bytes", 64ULL << 20);
	json_str(&c.w, "dirty_log", "bitmap");
	json_u64(&c.w, "passes", 12);
	json_f64(&c.w, "dirty_pages_per_s", 16384.25);
	json_u64(&c.w, "selfcheck_errors", 0);
	json_obj_end(&c.w);
	json_finish(&c.w);
	cap_expect(&c, "{\"vcpus\":2,\"mem_bytes\":1073741824,\"wss_bytes\":67108864,"
		       "\"dirty_log\":\"bitmap\",\"passes\":12,\"dirty_pages_per_s\":16384.25,"
		       "\"selfcheck_errors\":0}\n");
}

static void expect_string(const char *in, const char *want_json)
{
	struct capture c;

	cap_open(&c, false);
	json_str(&c.w, NULL, in);
	json_finish(&c.w);
	char *want = NULL;

	cr_assert_geq(asprintf(&want, "%s\n", want_json), 0);
	cap_expect(&c, want);
	free(want);
}

Test(json, string_escaping)
{
	expect_string("", "\"\"");
	expect_string("plain text", "\"plain text\"");
	expect_string("say \"hi\"", "\"say \\\"hi\\\"\"");
	expect_string("C:\\dir\\", "\"C:\\\\dir\\\\\"");
	expect_string("a/b", "\"a/b\"");
	expect_string("\b\f\n\r\t", "\"\\b\\f\\n\\r\\t\"");
	expect_string("\x01\x02\x1b\x1f", "\"\\u0001\\u0002\\u001b\\u001f\"");
	expect_string("del\x7f", "\"del\\u007f\"");
	expect_string(" ~", "\" ~\"");
	expect_string("line1\nline2\t\"q\"\\", "\"line1\\nline2\\t\\\"q\\\"\\\\\"");
}

Test(json, utf8_passes_through_and_invalid_bytes_are_replaced)
{
	/* Valid UTF-8 of every length is kept as is. */
	expect_string("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80",
		      "\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\"");
	expect_string("\xef\xbf\xbf\xf4\x8f\xbf\xbf", "\"\xef\xbf\xbf\xf4\x8f\xbf\xbf\"");
	/* Anything else would make the document invalid JSON. */
	expect_string("\xff", "\"\\ufffd\"");
	expect_string("a\x80z", "\"a\\ufffdz\"");
	expect_string("trunc\xc3", "\"trunc\\ufffd\"");
	expect_string("\xe2\x82", "\"\\ufffd\\ufffd\"");
	expect_string("\xc0\xaf", "\"\\ufffd\\ufffd\"");              /* overlong '/' */
	expect_string("\xe0\x80\xaf", "\"\\ufffd\\ufffd\\ufffd\"");   /* overlong */
	expect_string("\xed\xa0\x80", "\"\\ufffd\\ufffd\\ufffd\"");   /* surrogate */
	expect_string("\xf4\x90\x80\x80", "\"\\ufffd\\ufffd\\ufffd\\ufffd\""); /* > U+10FFFF */
	expect_string("\xc3(", "\"\\ufffd(\"");
}

Test(json, keys_are_escaped)
{
	struct capture c;

	cap_open(&c, false);
	json_obj_begin(&c.w, NULL);
	json_u64(&c.w, "we\"ird\\key\n", 1);
	json_obj_begin(&c.w, "\x01");
	json_obj_end(&c.w);
	json_obj_end(&c.w);
	json_finish(&c.w);
	cap_expect(&c, "{\"we\\\"ird\\\\key\\n\":1,\"\\u0001\":{}}\n");
}

Test(json, integers_full_range)
{
	struct capture c;

	cap_open(&c, false);
	json_arr_begin(&c.w, NULL);
	json_u64(&c.w, NULL, 0);
	json_u64(&c.w, NULL, UINT64_MAX);
	json_i64(&c.w, NULL, INT64_MIN);
	json_i64(&c.w, NULL, INT64_MAX);
	json_i64(&c.w, NULL, -1);
	json_arr_end(&c.w);
	json_finish(&c.w);
	cap_expect(&c, "[0,18446744073709551615,-9223372036854775808,9223372036854775807,-1]\n");
}

Test(json, doubles_exact_text)
{
	struct capture c;

	cap_open(&c, false);
	json_arr_begin(&c.w, NULL);
	json_f64(&c.w, NULL, 0.0);
	json_f64(&c.w, NULL, -0.0);
	json_f64(&c.w, NULL, 1.0);
	json_f64(&c.w, NULL, 100.0);
	json_f64(&c.w, NULL, 0.1);
	json_f64(&c.w, NULL, -2.5);
	json_f64(&c.w, NULL, 1.0 / 3.0);
	json_f64(&c.w, NULL, 1e300);
	json_f64(&c.w, NULL, 1.5e-7);
	json_f64(&c.w, NULL, 5e-324);
	json_f64(&c.w, NULL, 1.7976931348623157e308);
	json_arr_end(&c.w);
	json_finish(&c.w);
	cap_expect(&c, "[0,-0,1,100,0.1,-2.5,0.3333333333333333,1e+300,1.5e-07,5e-324,"
		       "1.7976931348623157e+308]\n");
}

Test(json, non_finite_doubles_are_null)
{
	struct capture c;

	cap_open(&c, false);
	json_obj_begin(&c.w, NULL);
	json_f64(&c.w, "nan", NAN);
	json_f64(&c.w, "neg_nan", -NAN);
	json_f64(&c.w, "inf", INFINITY);
	json_f64(&c.w, "ninf", -INFINITY);
	json_obj_end(&c.w);
	json_finish(&c.w);
	cap_expect(&c, "{\"nan\":null,\"neg_nan\":null,\"inf\":null,\"ninf\":null}\n");
}

/* Every double printed reads back as the same double. */
Test(json, doubles_round_trip)
{
	uint64_t x = 0x9e3779b97f4a7c15ULL;

	for (int i = 0; i < 20000; i++) {
		struct capture c;
		double d;

		/* xorshift64 bit patterns cover every exponent and denormals. */
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		memcpy(&d, &x, sizeof(d));
		if (!isfinite(d))
			continue;
		cap_open(&c, false);
		json_f64(&c.w, NULL, d);
		cr_assert_eq(fclose(c.f), 0);
		cr_assert_eq(strspn(c.buf, "0123456789-+.e"), strlen(c.buf),
			     "not a JSON number: %s", c.buf);
		cr_assert_eq(strtod(c.buf, NULL), d, "%s does not read back as %.17g", c.buf, d);
		cr_assert_leq(strlen(c.buf), 24);
		free(c.buf);
	}
}

Test(json, doubles_ignore_the_locale)
{
	static const char *const comma_locales[] = {
		"de_DE.UTF-8", "de_DE.utf8", "fr_FR.UTF-8", "fr_FR.utf8", "C.UTF-8@comma",
	};
	const char *got = NULL;
	struct capture c;

	for (size_t i = 0; i < sizeof(comma_locales) / sizeof(comma_locales[0]) && !got; i++)
		got = setlocale(LC_NUMERIC, comma_locales[i]);
	if (!got || strcmp(localeconv()->decimal_point, ","))
		cr_skip_test("no locale with a decimal comma is installed");
	cap_open(&c, false);
	json_f64(&c.w, NULL, 0.5);
	json_finish(&c.w);
	setlocale(LC_NUMERIC, "C");
	cap_expect(&c, "0.5\n");
}

Test(json, documents_follow_each_other)
{
	struct capture c;

	cap_open(&c, false);
	json_u64(&c.w, NULL, 1);
	json_finish(&c.w);
	json_str(&c.w, NULL, "two");
	json_finish(&c.w);
	json_obj_begin(&c.w, NULL);
	json_u64(&c.w, "n", 3);
	json_obj_end(&c.w);
	json_finish(&c.w);
	cap_expect(&c, "1\n\"two\"\n{\"n\":3}\n");
}

Test(json, deepest_nesting_allowed)
{
	struct capture c;
	char want[4 * JSON_MAX_DEPTH];
	size_t n = 0;

	cap_open(&c, false);
	for (int i = 0; i < JSON_MAX_DEPTH - 1; i++) {
		json_arr_begin(&c.w, NULL);
		want[n++] = '[';
	}
	for (int i = 0; i < JSON_MAX_DEPTH - 1; i++) {
		json_arr_end(&c.w);
		want[n++] = ']';
	}
	json_finish(&c.w);
	want[n++] = '\n';
	want[n] = '\0';
	cap_expect(&c, want);
}

/* Nesting past JSON_MAX_DEPTH cannot be written correctly: the writer stops. */
Test(json, too_deep_aborts, .signal = SIGABRT)
{
	struct json_writer w;
	FILE *f = fopen("/dev/null", "w");

	cr_assert_not_null(f);
	json_init(&w, f, false);
	for (int i = 0; i < JSON_MAX_DEPTH; i++)
		json_obj_begin(&w, i ? "k" : NULL);
}

Test(json, unbalanced_end_aborts, .signal = SIGABRT)
{
	struct json_writer w;
	FILE *f = fopen("/dev/null", "w");

	cr_assert_not_null(f);
	json_init(&w, f, false);
	json_arr_end(&w);
}

Test(json, finish_with_open_container_aborts, .signal = SIGABRT)
{
	struct json_writer w;
	FILE *f = fopen("/dev/null", "w");

	cr_assert_not_null(f);
	json_init(&w, f, false);
	json_obj_begin(&w, NULL);
	json_finish(&w);
}
