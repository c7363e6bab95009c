// SPDX-License-Identifier: MIT
#include <migrate/buf.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int mig_buf_reserve(struct mig_buf *b, size_t extra)
{
	size_t want = b->len + extra, cap = b->cap ? b->cap : 256;
	uint8_t *p;

	if (want < b->len)
		return -EOVERFLOW;
	if (want <= b->cap)
		return 0;
	while (cap < want)
		cap *= 2;
	p = realloc(b->data, cap);
	if (!p)
		return -ENOMEM;
	b->data = p;
	b->cap = cap;
	return 0;
}

int mig_buf_append(struct mig_buf *b, const void *p, size_t n)
{
	int r = mig_buf_reserve(b, n);

	if (r < 0)
		return r;
	memcpy(b->data + b->len, p, n);
	b->len += n;
	return 0;
}

void mig_buf_free(struct mig_buf *b)
{
	free(b->data);
	b->data = NULL;
	b->len = b->cap = 0;
}
