// SPDX-License-Identifier: MIT
/*
 * Digest of guest RAM, used to verify a migration: the destination's RAM at
 * switchover must equal the source's.  XXH3-64 per 2 MiB chunk, then XXH3-128
 * over the chunk hashes: chunks hash in parallel, and two digests that differ
 * can be narrowed down to a chunk.
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <xxhash.h>

#include <migrate/vm.h>

#include "util.h"

#define DIGEST_CHUNK (2ULL << 20)
#define DIGEST_MAX_THREADS 8

struct digest_job {
	const uint8_t *ram;
	uint64_t bytes;
	uint64_t *hashes;
	uint64_t first, end;
	const atomic_bool *stop;
};

static void *digest_worker(void *arg)
{
	struct digest_job *j = arg;

	for (uint64_t c = j->first; c < j->end; c++) {
		if (j->stop && atomic_load_explicit(j->stop, memory_order_relaxed))
			break;
		uint64_t off = c * DIGEST_CHUNK;
		uint64_t len = j->bytes - off < DIGEST_CHUNK ? j->bytes - off : DIGEST_CHUNK;

		j->hashes[c] = XXH3_64bits(j->ram + off, len);
	}
	return NULL;
}

int mig_ram_digest(const uint8_t *ram, uint64_t bytes, const atomic_bool *stop,
		   struct mig_digest *ret)
{
	uint64_t nchunks = DIV_ROUND_UP(bytes, DIGEST_CHUNK);
	_cleanup_free_ uint64_t *hashes = calloc(nchunks ? nchunks : 1, sizeof(uint64_t));
	struct digest_job jobs[DIGEST_MAX_THREADS];
	pthread_t tids[DIGEST_MAX_THREADS];
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	unsigned nthreads = ncpu > 0 ? (unsigned)ncpu : 1;
	bool created[DIGEST_MAX_THREADS] = { false };
	XXH128_hash_t h;

	if (!hashes)
		return -ENOMEM;
	if (nthreads > DIGEST_MAX_THREADS)
		nthreads = DIGEST_MAX_THREADS;
	if (nthreads > nchunks)
		nthreads = nchunks ? (unsigned)nchunks : 1;
	for (unsigned t = 0; t < nthreads; t++) {
		jobs[t] = (struct digest_job){
			.ram = ram, .bytes = bytes, .hashes = hashes,
			.first = nchunks * t / nthreads, .end = nchunks * (t + 1) / nthreads,
			.stop = stop,
		};
		/* The calling thread takes the last share itself. */
		created[t] = t + 1 < nthreads &&
			     pthread_create(&tids[t], NULL, digest_worker, &jobs[t]) == 0;
		if (!created[t])
			digest_worker(&jobs[t]);
	}
	for (unsigned t = 0; t < nthreads; t++)
		if (created[t])
			pthread_join(tids[t], NULL);
	if (stop && atomic_load(stop))
		return -ECANCELED;
	h = XXH3_128bits(hashes, nchunks * sizeof(uint64_t));
	ret->hi = h.high64;
	ret->lo = h.low64;
	return 0;
}

void mig_digest_format(const struct mig_digest *d, char buf[static MIG_DIGEST_HEX])
{
	snprintf(buf, MIG_DIGEST_HEX, "%016llx%016llx", (unsigned long long)d->hi,
		 (unsigned long long)d->lo);
}
