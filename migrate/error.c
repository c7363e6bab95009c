// SPDX-License-Identifier: MIT
#include <migrate/error.h>

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

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
	snprintf(err->msg, sizeof(err->msg), "%s: %s", head, old);
	return err->code;
}

void mig_error_clear(struct mig_error *err)
{
	err->code = 0;
	err->msg[0] = '\0';
}
