// SPDX-License-Identifier: MIT
/* A journal record as a JSON line (include/migrate/journal.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uuid/uuid.h>

#include <migrate/agent.h>
#include <migrate/buf.h>
#include <migrate/journal.h>
#include <migrate/vm.h>

#include "util.h"

static bool id_zero(const uint8_t id[16])
{
	for (unsigned i = 0; i < 16; i++)
		if (id[i])
			return false;
	return true;
}

static const char *event_name(uint32_t event)
{
	switch (event) {
	case MIG_VCPU_RUN_START:
		return "start";
	case MIG_VCPU_RUN_STOP:
		return "stop";
	case MIG_JOURNAL_HOOK:
		return "hook";
	}
	return "unknown";
}

int mig_journal_rec_format(const struct mig_journal_rec *r, char *buf, size_t n)
{
	char id[40] = "null", hook[40] = "";
	const char *op;
	int len;

	if (!id_zero(r->mig_id)) {
		id[0] = '"';
		uuid_unparse_lower(r->mig_id, id + 1);
		strcat(id, "\"");
	}
	if (r->event == MIG_JOURNAL_HOOK) {
		op = mig_hook_op_to_string(r->detail);
		snprintf(hook, sizeof(hook), ",\"hook\":\"%s\"", op ? op : "unknown");
	}
	len = snprintf(buf, n, "{\"seq\":%llu,\"vm\":\"%.*s\",\"mig\":%s,\"vcpu\":%u,"
		       "\"event\":\"%s\"%s,\"realtime_ns\":%llu,\"monotonic_ns\":%llu,\"pid\":%u}",
		       (unsigned long long)r->seq, (int)strnlen(r->vm, sizeof(r->vm)), r->vm, id,
		       r->vcpu, event_name(r->event), hook,
		       (unsigned long long)r->realtime_ns, (unsigned long long)r->monotonic_ns,
		       r->pid);
	if (len < 0)
		len = 0;
	return (size_t)len < n ? len : (int)n - 1;
}

/* Where `"key":` is followed by its value, or NULL. */
static const char *value_of(const char *line, const char *key)
{
	char pat[32];
	const char *p;

	snprintf(pat, sizeof(pat), "\"%s\":", key);
	p = strstr(line, pat);
	return p ? p + strlen(pat) : NULL;
}

static int get_u64(const char *line, const char *key, uint64_t max, uint64_t *ret,
		   struct mig_error *err)
{
	const char *p = value_of(line, key);
	char *end;

	if (!p)
		return mig_error_set(err, -EINVAL, "journal line has no \"%s\"", key);
	errno = 0;
	*ret = strtoull(p, &end, 10);
	if (end == p || *p == '-' || errno || *ret > max || (*end != ',' && *end != '}'))
		return mig_error_set(err, -EINVAL, "journal line's \"%s\" is not a number up to %llu",
				     key, (unsigned long long)max);
	return 0;
}

/* A string value into buf (cap bytes with the NUL), or 0 for null. */
static int get_str(const char *line, const char *key, char *buf, size_t cap,
		   struct mig_error *err)
{
	const char *p = value_of(line, key), *q;

	if (!p)
		return mig_error_set(err, -EINVAL, "journal line has no \"%s\"", key);
	if (!strncmp(p, "null", 4)) {
		buf[0] = '\0';
		return 0;
	}
	if (*p != '"' || !(q = strchr(p + 1, '"')) || (size_t)(q - p - 1) >= cap)
		return mig_error_set(err, -EINVAL, "journal line's \"%s\" is not a string of at "
				     "most %zu characters", key, cap - 1);
	memcpy(buf, p + 1, (size_t)(q - p - 1));
	buf[q - p - 1] = '\0';
	return 1;
}

int mig_journal_rec_parse(const char *line, struct mig_journal_rec *ret, struct mig_error *err)
{
	struct mig_journal_rec r = { 0 };
	uint64_t v;
	char s[40];
	int k;

	if (line[0] != '{' || !strchr(line, '}'))
		return mig_error_set(err, -EINVAL, "journal line is not one JSON object (cut short?)");
	if ((k = get_u64(line, "seq", UINT64_MAX, &r.seq, err)) < 0 ||
	    (k = get_u64(line, "realtime_ns", UINT64_MAX, &r.realtime_ns, err)) < 0 ||
	    (k = get_u64(line, "monotonic_ns", UINT64_MAX, &r.monotonic_ns, err)) < 0)
		return k;
	if ((k = get_u64(line, "vcpu", UINT32_MAX, &v, err)) < 0)
		return k;
	r.vcpu = (uint32_t)v;
	if ((k = get_u64(line, "pid", UINT32_MAX, &v, err)) < 0)
		return k;
	r.pid = (uint32_t)v;
	k = get_str(line, "vm", r.vm, sizeof(r.vm), err);
	if (k < 0)
		return k;
	if (!k || !mig_vm_name_ok(r.vm, sizeof(r.vm)))
		return mig_error_set(err, -EINVAL, "journal line's \"vm\" is not a VM name");
	k = get_str(line, "mig", s, sizeof(s), err);
	if (k < 0)
		return k;
	if (k && uuid_parse(s, r.mig_id) < 0)
		return mig_error_set(err, -EINVAL, "journal line's \"mig\" is not a UUID");
	k = get_str(line, "event", s, sizeof(s), err);
	if (k < 0)
		return k;
	if (k && !strcmp(s, "start"))
		r.event = MIG_VCPU_RUN_START;
	else if (k && !strcmp(s, "stop"))
		r.event = MIG_VCPU_RUN_STOP;
	else if (k && !strcmp(s, "hook"))
		r.event = MIG_JOURNAL_HOOK;
	else
		return mig_error_set(err, -EINVAL, "journal line's \"event\" is neither \"start\", "
				     "\"stop\" nor \"hook\"");
	if (r.event == MIG_JOURNAL_HOOK) {
		k = get_str(line, "hook", s, sizeof(s), err);
		if (k < 0)
			return k;
		if (!k || (k = mig_hook_op_from_string(s)) < 0)
			return mig_error_set(err, -EINVAL, "journal line's \"hook\" is not a hook "
					     "operation (migrate, prepare, start, ...)");
		r.detail = (uint32_t)k;
	}
	*ret = r;
	return 0;
}

int mig_journal_file_load(const char *path, struct mig_buf *recs, unsigned *ret_torn,
			  struct mig_error *err)
{
	char line[MIG_JOURNAL_LINE_MAX + 2];
	unsigned no = 0;
	FILE *f = fopen(path, "re");
	int r = 0;

	*ret_torn = 0;
	if (!f)
		return mig_error_set(err, -errno, "cannot read the journal %s: %s", path,
				     strerror(errno));
	while (r == 0 && fgets(line, sizeof(line), f)) {
		struct mig_journal_rec rec;
		size_t len = strlen(line);

		no++;
		if (len && line[len - 1] != '\n' && feof(f)) {
			(*ret_torn)++;
			break;
		}
		r = mig_journal_rec_parse(line, &rec, err);
		if (r < 0)
			r = mig_error_prefix(err, "%s line %u", path, no);
		else if (mig_buf_append(recs, &rec, sizeof(rec)) < 0)
			r = mig_error_set(err, -ENOMEM, "out of memory reading %s", path);
	}
	fclose(f);
	return r;
}
