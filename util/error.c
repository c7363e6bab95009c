// SPDX-License-Identifier: MIT
#include <migrate/control.h>
#include <migrate/error.h>

#include <endian.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "util.h"

int mig_error_set(struct mig_error *err, int code, const char *fmt, ...)
{
	va_list ap;

	if (!err || err->code)
		return code;
	err->code = code;
	va_start(ap, fmt);
	vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
	va_end(ap);
	return code;
}

int mig_error_prefix(struct mig_error *err, const char *fmt, ...)
{
	char head[256], old[sizeof(err->msg)];
	va_list ap;

	if (!err || !err->code)
		return err ? err->code : 0;
	va_start(ap, fmt);
	vsnprintf(head, sizeof(head), fmt, ap);
	va_end(ap);
	memcpy(old, err->msg, sizeof(old));
	/* "head: old", cut to fit (built by hand: the bound is intended) */
	{
		size_t hl = strnlen(head, sizeof(head) - 1), ol, room;

		memcpy(err->msg, head, hl);
		room = sizeof(err->msg) - 1 - hl;
		if (room >= 2) {
			memcpy(err->msg + hl, ": ", 2);
			room -= 2;
			ol = strnlen(old, room);
			memcpy(err->msg + hl + 2, old, ol);
			err->msg[hl + 2 + ol] = '\0';
		} else {
			err->msg[hl] = '\0';
		}
	}
	return err->code;
}

void mig_error_clear(struct mig_error *err)
{
	err->code = 0;
	err->msg[0] = '\0';
}

void mig_error_msg_fill(struct mig_error_msg *m, int code, const char *text)
{
	memset(m, 0, sizeof(*m));
	m->code = (int32_t)htole32((uint32_t)code);   /* as it travels */
	str_copy(m->msg, sizeof(m->msg), text);
}

int mig_error_msg_parse(const void *p, size_t n, struct mig_error_msg *m, int fallback)
{
	memset(m, 0, sizeof(*m));
	memcpy(m, p, n < sizeof(*m) ? n : sizeof(*m));
	m->code = (int32_t)le32toh((uint32_t)m->code);
	m->msg[sizeof(m->msg) - 1] = '\0';
	return m->code < 0 ? m->code : fallback;
}
