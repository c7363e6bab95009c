// SPDX-License-Identifier: MIT
/*
 * A stream's worker: a thread with an io_uring of its own, named, its CPU
 * time counted.  Both engines run one per data stream, the source's
 * sending and the destination's receiving.
 */
#include <errno.h>
#include <pthread.h>
#include <string.h>

#include <migrate/transport.h>

#include "util.h"

static void *worker_main(void *arg)
{
	struct xport_worker *w = arg;
	uint64_t cpu0 = mig_cpu_ms();

	pthread_setname_np(pthread_self(), w->name);
	w->fn(w);
	w->cpu_ms = mig_cpu_ms() - cpu0;
	return NULL;
}

int xport_worker_start(struct xport_worker *w, const char *name, unsigned ring_entries,
		       void (*fn)(struct xport_worker *w), struct mig_error *err)
{
	int r;

	str_copy(w->name, sizeof(w->name), name);
	w->fn = fn;
	if (!w->ring.ring) {
		r = xport_ring_init(&w->ring, ring_entries, err);
		if (r < 0)
			return r;
	}
	r = -pthread_create(&w->thread, NULL, worker_main, w);
	if (r < 0)
		return mig_error_set(err, r, "starting %s: %s", name, strerror(-r));
	w->started = true;
	return 0;
}

uint64_t xport_worker_stop(struct xport_worker *w)
{
	uint64_t cpu = 0;

	if (w->started) {
		pthread_join(w->thread, NULL);
		w->started = false;
		cpu = w->cpu_ms;
	}
	/* what it left in flight is cancelled and reaped before its buffers go */
	if (w->ring.ring)
		xport_ring_exit(&w->ring);
	return cpu;
}
