// SPDX-License-Identifier: MIT
/*
 * Streaming JSON writer.  The writer, not the caller, decides where commas,
 * newlines and indentation go: every value first calls value_begin(), which
 * emits the separator owed to the previous sibling, the indentation and the
 * key.  need_comma[d] is true once the container at depth d holds a value.
 *
 * Nesting deeper than JSON_MAX_DEPTH or closing more containers than were
 * opened is a programming error with no well-formed output left to produce,
 * so it aborts rather than writing past need_comma[] or emitting broken JSON.
 */
#include <migrate/json.h>

#include <locale.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

void json_init(struct json_writer *w, FILE *f, bool pretty)
{
	memset(w, 0, sizeof(*w));
	w->f = f;
	w->pretty = pretty;
}

static void newline_indent(struct json_writer *w, int depth)
{
	fputc('\n', w->f);
	for (int i = 0; i < depth; i++)
		fputs("  ", w->f);
}

/* Length of the valid UTF-8 sequence at s (1-4), or 0 if it is malformed. */
static size_t utf8_seq_len(const unsigned char *s)
{
	unsigned char c = s[0];
	size_t n;
	unsigned min;
	unsigned cp;

	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf) {
		n = 2, cp = c & 0x1f, min = 0x80;
	} else if (c >= 0xe0 && c <= 0xef) {
		n = 3, cp = c & 0x0f, min = 0x800;
	} else if (c >= 0xf0 && c <= 0xf4) {
		n = 4, cp = c & 0x07, min = 0x10000;
	} else {
		return 0;
	}
	for (size_t i = 1; i < n; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;   /* also stops at the terminating NUL */
		cp = (cp << 6) | (s[i] & 0x3f);
	}
	if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return n;
}

/*
 * Quotes and escapes s.  Control characters become \u00XX (with the short
 * forms JSON defines for \b \f \n \r \t); bytes that are not valid UTF-8 (a
 * path or a kernel message can hold any byte) become U+FFFD so the document
 * stays valid JSON.
 */
static void write_string(struct json_writer *w, const char *str)
{
	const unsigned char *s = (const unsigned char *)str;

	fputc('"', w->f);
	while (*s) {
		size_t n;

		switch (*s) {
		case '"':  fputs("\\\"", w->f); s++; continue;
		case '\\': fputs("\\\\", w->f); s++; continue;
		case '\b': fputs("\\b", w->f); s++; continue;
		case '\f': fputs("\\f", w->f); s++; continue;
		case '\n': fputs("\\n", w->f); s++; continue;
		case '\r': fputs("\\r", w->f); s++; continue;
		case '\t': fputs("\\t", w->f); s++; continue;
		default:
			break;
		}
		if (*s < 0x20 || *s == 0x7f) {
			fprintf(w->f, "\\u%04x", *s);
			s++;
			continue;
		}
		n = utf8_seq_len(s);
		if (!n) {
			fputs("\\ufffd", w->f);
			s++;
			continue;
		}
		fwrite(s, 1, n, w->f);
		s += n;
	}
	fputc('"', w->f);
}

/* Separator, indentation and key owed before any value at the current depth. */
static void value_begin(struct json_writer *w, const char *key)
{
	if (w->need_comma[w->depth])
		fputc(',', w->f);
	if (w->pretty && w->depth > 0)
		newline_indent(w, w->depth);
	if (key) {
		write_string(w, key);
		fputs(w->pretty ? ": " : ":", w->f);
	}
	w->need_comma[w->depth] = true;
}

static void container_begin(struct json_writer *w, const char *key, char open)
{
	if (w->depth >= JSON_MAX_DEPTH - 1)
		abort();
	value_begin(w, key);
	fputc(open, w->f);
	w->depth++;
	w->need_comma[w->depth] = false;
}

static void container_end(struct json_writer *w, char close)
{
	bool had_values;

	if (w->depth <= 0)
		abort();
	had_values = w->need_comma[w->depth];
	w->need_comma[w->depth] = false;
	w->depth--;
	/* An empty container stays "{}" / "[]" in both modes. */
	if (w->pretty && had_values)
		newline_indent(w, w->depth);
	fputc(close, w->f);
}

void json_obj_begin(struct json_writer *w, const char *key)
{
	container_begin(w, key, '{');
}

void json_obj_end(struct json_writer *w)
{
	container_end(w, '}');
}

void json_arr_begin(struct json_writer *w, const char *key)
{
	container_begin(w, key, '[');
}

void json_arr_end(struct json_writer *w)
{
	container_end(w, ']');
}

void json_str(struct json_writer *w, const char *key, const char *val)
{
	value_begin(w, key);
	if (val)
		write_string(w, val);
	else
		fputs("null", w->f);
}

void json_u64(struct json_writer *w, const char *key, uint64_t val)
{
	value_begin(w, key);
	fprintf(w->f, "%llu", (unsigned long long)val);
}

void json_i64(struct json_writer *w, const char *key, int64_t val)
{
	value_begin(w, key);
	fprintf(w->f, "%lld", (long long)val);
}

/*
 * The shortest "%.*g" that reads back as the same double (at most 17
 * digits always does), formatted in the C locale: a program that called
 * setlocale() must not turn 0.5 into "0,5".  JSON has no NaN or infinity.
 */
void json_f64(struct json_writer *w, const char *key, double val)
{
	locale_t c_loc, old = (locale_t)0;
	int prec, dec_exp;
	char buf[64];

	value_begin(w, key);
	if (!isfinite(val)) {
		fputs("null", w->f);
		return;
	}
	c_loc = newlocale(LC_NUMERIC_MASK, "C", (locale_t)0);
	if (c_loc)
		old = uselocale(c_loc);
	for (prec = 1; prec < 17; prec++) {
		snprintf(buf, sizeof(buf), "%.*g", prec, val);
		if (strtod(buf, NULL) == val)
			break;
	}
	/* Whole numbers below 1e17 in full ("100", not "1e+02"): %g switches to
	 * an exponent once the decimal exponent reaches the precision. */
	snprintf(buf, sizeof(buf), "%.*e", prec - 1, val);
	dec_exp = atoi(strchr(buf, 'e') + 1);
	if (dec_exp >= prec && dec_exp < 17)
		prec = dec_exp + 1;
	snprintf(buf, sizeof(buf), "%.*g", prec, val);
	if (c_loc) {
		uselocale(old);
		freelocale(c_loc);
	}
	fputs(buf, w->f);
}

void json_bool(struct json_writer *w, const char *key, bool val)
{
	value_begin(w, key);
	fputs(val ? "true" : "false", w->f);
}

void json_null(struct json_writer *w, const char *key)
{
	value_begin(w, key);
	fputs("null", w->f);
}

/*
 * Ends the document so that another one can follow on the next line.  A
 * container still open is a caller bug; closing it here would need to know
 * whether it is an object or an array, so it aborts like an unbalanced end.
 */
void json_finish(struct json_writer *w)
{
	if (w->depth != 0)
		abort();
	fputc('\n', w->f);
	fflush(w->f);
	w->need_comma[0] = false;
}
