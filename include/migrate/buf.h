/* SPDX-License-Identifier: MIT */
/* A growable byte buffer for serialised state (vCPU blobs, frames). */
#ifndef MIGRATE_BUF_H
#define MIGRATE_BUF_H

#include <stddef.h>
#include <stdint.h>

struct mig_buf {
	uint8_t *data;
	size_t len;
	size_t cap;
};

int mig_buf_reserve(struct mig_buf *b, size_t extra);
int mig_buf_append(struct mig_buf *b, const void *p, size_t n);
void mig_buf_free(struct mig_buf *b);

#endif
