// SPDX-License-Identifier: MIT
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "journal.h"
#include "util.h"

struct agent_journal {
	pthread_mutex_t lock;
	struct mig_journal_rec *ring;
	uint32_t cap;
	uint64_t next_seq;        /* from 1; record s sits at ring[(s - 1) % cap] */
	int fd;                   /* -1: no file */
	uint32_t pid;
	uint64_t write_errors;
};

/* What a VM's watcher carries: the names its records get.  Freed when the
 * VM ends or a new tag replaces it. */
struct journal_tag {
	struct agent_journal *j;
	char name[MIG_NAME_MAX];
	uint8_t mig_id[16];
};

int agent_journal_open(const char *path, uint32_t capacity, struct agent_journal **ret,
		       struct mig_error *err)
{
	struct agent_journal *j = calloc(1, sizeof(*j));

	if (!j || !capacity || !(j->ring = calloc(capacity, sizeof(*j->ring)))) {
		free(j);
		return mig_error_set(err, -ENOMEM, "out of memory for the journal");
	}
	pthread_mutex_init(&j->lock, NULL);
	j->cap = capacity;
	j->next_seq = 1;
	j->pid = (uint32_t)getpid();
	j->fd = -1;
	if (path && path[0]) {
		j->fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
		if (j->fd < 0) {
			int r = mig_error_set(err, -errno, "cannot open the journal %s: %s (give "
					      "--journal a file this user may create or append to)",
					      path, strerror(errno));

			free(j->ring);
			free(j);
			return r;
		}
	}
	*ret = j;
	return 0;
}

/* One write() of a whole line: the file gets it or nothing of it, and a
 * SIGKILL after it returns cannot take it back (the kernel has it). */
static void journal_file_append(struct agent_journal *j, const struct mig_journal_rec *rec)
{
	char line[MIG_JOURNAL_LINE_MAX];
	int n = mig_journal_rec_format(rec, line, sizeof(line) - 1);

	line[n++] = '\n';
	if (write(j->fd, line, (size_t)n) != n)
		j->write_errors++;
}

uint64_t agent_journal_add(struct agent_journal *j, const struct mig_journal_rec *r)
{
	struct mig_journal_rec *rec;
	uint64_t seq;

	pthread_mutex_lock(&j->lock);
	rec = &j->ring[(j->next_seq - 1) % j->cap];
	*rec = *r;
	seq = rec->seq = j->next_seq++;
	rec->pid = j->pid;
	if (j->fd >= 0)
		journal_file_append(j, rec);
	pthread_mutex_unlock(&j->lock);
	return seq;
}

static void journal_ran(void *arg, struct mig_vm *vm, const struct mig_vcpu_run *e)
{
	struct journal_tag *t = arg;
	struct mig_journal_rec rec = { 0 };

	(void)vm;
	if (!e) {
		free(t);
		return;
	}
	memcpy(rec.vm, t->name, sizeof(rec.vm));
	memcpy(rec.mig_id, t->mig_id, sizeof(rec.mig_id));
	rec.realtime_ns = e->realtime_ns;
	rec.monotonic_ns = e->monotonic_ns;
	rec.vcpu = e->vcpu;
	rec.event = e->kind;
	agent_journal_add(t->j, &rec);
}

uint64_t agent_journal_hook(struct agent_journal *j, const char *uuid, uint32_t op)
{
	struct mig_journal_rec rec = { 0 };

	str_copy(rec.vm, sizeof(rec.vm), uuid);
	rec.realtime_ns = mig_realtime_ns();
	rec.monotonic_ns = mig_clock_ns(CLOCK_MONOTONIC);
	rec.event = MIG_JOURNAL_HOOK;
	rec.detail = op;
	return agent_journal_add(j, &rec);
}

int agent_journal_watch(struct agent_journal *j, struct mig_vm *vm, const char *name,
			const uint8_t *mig_id)
{
	struct journal_tag *t = calloc(1, sizeof(*t));
	void *old;

	if (!t)
		return -ENOMEM;
	t->j = j;
	str_copy(t->name, sizeof(t->name), name);
	if (mig_id)
		memcpy(t->mig_id, mig_id, sizeof(t->mig_id));
	old = mig_vm_run_watch(vm, journal_ran, t);
	/* the VM calls its watcher under its lock: the old tag is unused now */
	free(old);
	return 0;
}

uint32_t agent_journal_read(struct agent_journal *j, uint64_t since_ns, uint64_t after_seq,
			    struct mig_journal_rec *out, uint32_t max,
			    struct mig_journal_reply *ret)
{
	uint64_t first, s;
	uint32_t n = 0;

	pthread_mutex_lock(&j->lock);
	first = j->next_seq > j->cap ? j->next_seq - j->cap : 1;
	memset(ret, 0, sizeof(*ret));
	ret->next_seq = j->next_seq;
	ret->dropped = first - 1;
	ret->capacity = j->cap;
	for (s = after_seq + 1 > first ? after_seq + 1 : first; s < j->next_seq && n < max; s++) {
		const struct mig_journal_rec *rec = &j->ring[(s - 1) % j->cap];

		if (rec->realtime_ns >= since_ns)
			out[n++] = *rec;
	}
	pthread_mutex_unlock(&j->lock);
	ret->count = n;
	return n;
}

int agent_journal_preload(struct agent_journal *j, const char *path,
			  bool (*keep)(const struct mig_journal_rec *r), struct mig_error *err)
{
	struct mig_buf recs = { 0 };
	const struct mig_journal_rec *all;
	unsigned torn;
	size_t n, first;
	int r;

	if (access(path, F_OK) < 0 && errno == ENOENT)
		return 0;
	r = mig_journal_file_load(path, &recs, &torn, err);
	if (r < 0) {
		mig_buf_free(&recs);
		return r;
	}
	all = (const struct mig_journal_rec *)recs.data;
	n = recs.len / sizeof(*all);
	/* the newest that fit, oldest first, under this process's seqs */
	first = n;
	for (size_t kept = 0; first > 0 && kept < j->cap; first--)
		kept += keep(&all[first - 1]);
	pthread_mutex_lock(&j->lock);
	for (size_t i = first; i < n; i++) {
		struct mig_journal_rec *rec;

		if (!keep(&all[i]))
			continue;
		rec = &j->ring[(j->next_seq - 1) % j->cap];
		*rec = all[i];
		rec->seq = j->next_seq++;
	}
	pthread_mutex_unlock(&j->lock);
	mig_buf_free(&recs);
	return 0;
}

int agent_journal_running(struct agent_journal *j, const char *vm)
{
	int r = -1;

	pthread_mutex_lock(&j->lock);
	for (uint64_t s = j->next_seq - 1; s >= 1 && s + j->cap >= j->next_seq && r < 0; s--) {
		const struct mig_journal_rec *rec = &j->ring[(s - 1) % j->cap];

		if (!strcmp(rec->vm, vm) && (rec->event == MIG_VCPU_RUN_START ||
					     rec->event == MIG_VCPU_RUN_STOP))
			r = rec->event == MIG_VCPU_RUN_START;
	}
	pthread_mutex_unlock(&j->lock);
	return r;
}

int agent_journal_uuids(struct agent_journal *j, bool (*keep)(const struct mig_journal_rec *r),
			struct mig_buf *out)
{
	int r = 0;

	pthread_mutex_lock(&j->lock);
	for (uint64_t s = j->next_seq > j->cap ? j->next_seq - j->cap : 1;
	     s < j->next_seq && r == 0; s++) {
		const struct mig_journal_rec *rec = &j->ring[(s - 1) % j->cap];
		size_t k;

		if (!keep(rec))
			continue;
		for (k = 0; k < out->len && strcmp((const char *)out->data + k, rec->vm);
		     k += sizeof(rec->vm))
			;
		if (k == out->len)
			r = mig_buf_append(out, rec->vm, sizeof(rec->vm));
	}
	pthread_mutex_unlock(&j->lock);
	return r;
}

uint64_t agent_journal_write_errors(struct agent_journal *j)
{
	uint64_t n;

	pthread_mutex_lock(&j->lock);
	n = j->write_errors;
	pthread_mutex_unlock(&j->lock);
	return n;
}
