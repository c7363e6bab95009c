// SPDX-License-Identifier: MIT
/*
 * KVM's binary statistics (kvm-stats.h).  The file's layout is the
 * kernel's, but its offsets and counts are read from the file itself, so
 * each is checked against the file's size before it is trusted.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <linux/kvm.h>

#include "kvm-stats.h"
#include "util.h"

/* Far beyond any kernel's (x86 6.18: 45 per vCPU): a bound, not a limit
 * anyone meets. */
#define STATS_MAX 4096

static int read_at(int fd, void *p, size_t n, uint64_t off)
{
	ssize_t r = pread(fd, p, n, (off_t)off);

	if (r < 0)
		return -errno;
	return (size_t)r == n ? 0 : -EIO;
}

int kvm_stats_open_fd(int stats_fd, struct kvm_stats *s, struct mig_error *err)
{
	struct kvm_stats_header h;
	_cleanup_free_ uint8_t *desc = NULL;
	uint64_t stride, end = 0;
	struct stat st;
	int r;

	memset(s, 0, sizeof(*s));
	s->fd = stats_fd;
	if (fstat(stats_fd, &st) < 0)
		return mig_error_set(err, -errno, "KVM statistics: fstat: %s", strerror(errno));
	r = read_at(stats_fd, &h, sizeof(h), 0);
	if (r < 0)
		return mig_error_set(err, r, "KVM statistics: reading the header: %s", strerror(-r));
	stride = sizeof(struct kvm_stats_desc) + (uint64_t)h.name_size;
	/* a stats fd reports size 0: then nothing bounds the offsets but the
	 * reads themselves */
	if (h.flags || !h.num_desc || h.num_desc > STATS_MAX || h.name_size < 2 ||
	    h.name_size > 4096 || h.id_offset % 8 || h.desc_offset % 8 || h.data_offset % 8 ||
	    (st.st_size && ((uint64_t)h.desc_offset + stride * h.num_desc > (uint64_t)st.st_size ||
			    (uint64_t)h.id_offset + h.name_size > (uint64_t)st.st_size)))
		return mig_error_set(err, -EPROTO, "KVM statistics: a header this build cannot read "
				     "(flags %#x, %u descriptors, names of %u bytes, offsets %u/%u/%u)",
				     h.flags, h.num_desc, h.name_size, h.id_offset, h.desc_offset,
				     h.data_offset);
	r = read_at(stats_fd, s->id, sizeof(s->id) - 1 < h.name_size ? sizeof(s->id) - 1 :
		    h.name_size, h.id_offset);
	if (r < 0)
		return mig_error_set(err, r, "KVM statistics: reading the id: %s", strerror(-r));
	desc = malloc(stride * h.num_desc);
	s->stats = calloc(h.num_desc, sizeof(*s->stats));
	if (!desc || !s->stats)
		return mig_error_set(err, -ENOMEM, "out of memory");
	r = read_at(stats_fd, desc, stride * h.num_desc, h.desc_offset);
	if (r < 0)
		return mig_error_set(err, r, "KVM statistics of %s: reading %u descriptors: %s",
				     s->id, h.num_desc, strerror(-r));
	for (uint32_t i = 0; i < h.num_desc; i++) {
		const struct kvm_stats_desc *d = (const void *)(desc + stride * i);
		struct kvm_stat *o = &s->stats[i];
		uint64_t last = (uint64_t)d->offset + 8ULL * d->size;

		if (!d->size || d->offset % 8 || !memchr(d->name, 0, h.name_size))
			return mig_error_set(err, -EPROTO, "KVM statistics of %s: descriptor %u is "
					     "malformed (size %u, offset %u, or a name with no end)",
					     s->id, i, d->size, d->offset);
		str_copy(o->name, sizeof(o->name), d->name);
		o->flags = d->flags;
		o->exponent = d->exponent;
		o->size = d->size;
		o->offset = d->offset;
		if (last > end)
			end = last;
	}
	if (end > 1U << 20)
		return mig_error_set(err, -EPROTO, "KVM statistics of %s: a data block of %llu "
				     "bytes", s->id, (unsigned long long)end);
	s->nr = h.num_desc;
	s->data_offset = h.data_offset;
	s->data_bytes = (uint32_t)end;
	return 0;
}

int kvm_stats_open(int fd, struct kvm_stats *s, struct mig_error *err)
{
	int sfd = ioctl(fd, KVM_GET_STATS_FD, NULL);
	int r;

	if (sfd < 0) {
		memset(s, 0, sizeof(*s));
		s->fd = -1;
		if (errno == ENOTTY || errno == EINVAL)
			return mig_error_set(err, -ENOTSUP, "this kernel has no KVM binary statistics "
					     "(KVM_GET_STATS_FD: %s; Linux 5.14 and later have them)",
					     strerror(errno));
		return mig_error_set(err, -errno, "KVM_GET_STATS_FD: %s", strerror(errno));
	}
	r = kvm_stats_open_fd(sfd, s, err);
	if (r < 0)
		kvm_stats_close(s);
	return r;
}

void kvm_stats_close(struct kvm_stats *s)
{
	if (s->fd >= 0)
		close(s->fd);
	free(s->stats);
	s->stats = NULL;
	s->fd = -1;
	s->nr = 0;
}

int kvm_stats_find(const struct kvm_stats *s, const char *name)
{
	for (uint32_t i = 0; i < s->nr; i++)
		if (!strcmp(s->stats[i].name, name))
			return (int)i;
	return -1;
}

int kvm_stats_sample(const struct kvm_stats *s, uint64_t *buf, struct mig_error *err)
{
	int r = read_at(s->fd, buf, s->data_bytes, s->data_offset);

	if (r < 0)
		return mig_error_set(err, r, "KVM statistics of %s: reading %u bytes of values: %s",
				     s->id, s->data_bytes, strerror(-r));
	return 0;
}

uint64_t kvm_stats_value(const struct kvm_stats *s, const uint64_t *sample, int i)
{
	if (i < 0 || (uint32_t)i >= s->nr)
		return 0;
	return sample[s->stats[i].offset / 8];
}
