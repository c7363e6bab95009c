// SPDX-License-Identifier: MIT
/* Page codec selection: the --compress option and its names. */
#include <migrate/transport.h>

#include "util.h"

#include <errno.h>
#include <string.h>

#define ZSTD_LEVEL_MIN 1
/* 20..22 are zstd's "ultra" levels: far too slow to keep up with a live
 * guest's dirty rate, so they are not offered. */
#define ZSTD_LEVEL_MAX 19
#define ZSTD_LEVEL_DEFAULT 1

#define COMPRESS_FORMS "none, zstd, zstd:LEVEL (1-19) or auto"

static const char *const codec_names[_XPORT_CODEC_MAX] = {
	[XPORT_CODEC_INVALID] = NULL,
	[XPORT_CODEC_NONE] = "none",
	[XPORT_CODEC_ZSTD] = "zstd",
	[XPORT_CODEC_AUTO] = "auto",
};

MIG_STRING_TABLE_TO(xport_codec, enum xport_codec, codec_names)

int xport_compress_parse(const char *s, struct xport_compress *ret, struct mig_error *err)
{
	struct xport_compress c = { .codec = XPORT_CODEC_NONE, .level = ZSTD_LEVEL_DEFAULT };

	if (!s || !*s)
		return mig_error_set(err, -EINVAL, "empty compression; expected " COMPRESS_FORMS);
	if (strcmp(s, "none") == 0) {
		c.codec = XPORT_CODEC_NONE;
	} else if (strcmp(s, "auto") == 0) {
		c.codec = XPORT_CODEC_AUTO;
	} else if (strcmp(s, "zstd") == 0 || strncmp(s, "zstd:", 5) == 0) {
		c.codec = XPORT_CODEC_ZSTD;
		if (s[4] == ':') {
			const char *l = s + 5;
			int v = 0;

			if (!*l)
				return mig_error_set(err, -EINVAL, "compression \"%s\": missing "
						     "level after ':' (expected zstd:1 to "
						     "zstd:19)", s);
			for (const char *p = l; *p; p++) {
				if (*p < '0' || *p > '9')
					return mig_error_set(err, -EINVAL, "compression \"%s\": "
							     "level \"%s\" is not a number "
							     "(expected 1 to 19)", s, l);
				if (v < 1000)
					v = v * 10 + (*p - '0');
			}
			if (v < ZSTD_LEVEL_MIN || v > ZSTD_LEVEL_MAX)
				return mig_error_set(err, -ERANGE, "compression \"%s\": zstd "
						     "level %s is out of range; use 1 (fastest) "
						     "to 19 (smallest)", s, l);
			c.level = v;
		}
	} else {
		return mig_error_set(err, -EINVAL, "unknown compression \"%s\"; expected "
				     COMPRESS_FORMS, s);
	}
#if !HAVE_ZSTD
	/* "auto" may pick none at run time; an explicit zstd cannot be honoured. */
	if (c.codec == XPORT_CODEC_ZSTD)
		return mig_error_set(err, -EOPNOTSUPP, "compression \"%s\": this build of "
				     "migratectl has no zstd support (use none or auto)", s);
#endif
	*ret = c;
	return 0;
}
