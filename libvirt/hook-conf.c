// SPDX-License-Identifier: MIT
/* The qemu hook's configuration file (include/migrate/lv-hook.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <migrate/lv-hook.h>
#include <migrate/parse.h>
#include <migrate/transport.h>

#include "util.h"

void lvh_conf_init(struct lvh_conf *ret)
{
	memset(ret, 0, sizeof(*ret));
	str_copy(ret->agent, sizeof(ret->agent), LVH_AGENT_DEFAULT);
	ret->timeout_ms = LVH_TIMEOUT_DEFAULT_MS;
}

static char *trim(char *s)
{
	char *e;

	while (*s == ' ' || *s == '\t')
		s++;
	e = s + strlen(s);
	while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r'))
		*--e = '\0';
	return s;
}

/* A rule line: "rewrite-path FROM TO" or "cpuset LIST". */
static int conf_rule(char *line, const char *where, struct lvh_conf *c, struct mig_error *err)
{
	char *save = NULL, *kw = strtok_r(line, " \t", &save);
	char *a = strtok_r(NULL, " \t", &save), *b = strtok_r(NULL, " \t", &save);
	uint64_t bits[LVH_LIST_BITS / 64];

	if (!strcmp(kw, "rewrite-path")) {
		if (!a || !b || strtok_r(NULL, " \t", &save))
			return mig_error_set(err, -EINVAL, "%s: rewrite-path takes FROM and TO, two "
					     "absolute paths", where);
		if (a[0] != '/' || b[0] != '/')
			return mig_error_set(err, -EINVAL, "%s: rewrite-path %s %s: both must be "
					     "absolute paths", where, a, b);
		if (c->rules.nr_rewrites == LVH_MAX_REWRITES)
			return mig_error_set(err, -EINVAL, "%s: more than %u rewrite-path rules",
					     where, LVH_MAX_REWRITES);
		if (strlen(a) >= LVH_PATH_MAX || strlen(b) >= LVH_PATH_MAX)
			return mig_error_set(err, -EINVAL, "%s: a path over %u characters", where,
					     LVH_PATH_MAX - 1);
		str_copy(c->rules.rewrite[c->rules.nr_rewrites].from, LVH_PATH_MAX, a);
		str_copy(c->rules.rewrite[c->rules.nr_rewrites++].to, LVH_PATH_MAX, b);
		return 0;
	}
	if (!strcmp(kw, "cpuset")) {
		if (!a || b || lvh_list_parse(a, bits) < 0 || strlen(a) >= sizeof(c->rules.cpuset))
			return mig_error_set(err, -EINVAL, "%s: cpuset takes one CPU list such as "
					     "0-3,8 (CPUs below %u)", where, LVH_LIST_BITS);
		str_copy(c->rules.cpuset, sizeof(c->rules.cpuset), a);
		return 0;
	}
	return mig_error_set(err, -EINVAL, "%s: unknown line '%s' (agent, key-file, timeout, "
			     "strict, rewrite-path, cpuset)", where, kw);
}

static int conf_key(const char *k, const char *v, const char *where, struct lvh_conf *c,
		    struct mig_error *err)
{
	struct xport_endpoint ep;
	struct mig_error e2 = { 0 };

	if (!strcmp(k, "agent")) {
		if (strlen(v) >= sizeof(c->agent) || xport_endpoint_parse(v, &ep, &e2) < 0)
			return mig_error_set(err, -EINVAL, "%s: agent = %s: %s", where, v,
					     e2.msg[0] ? e2.msg : "too long");
		str_copy(c->agent, sizeof(c->agent), v);
	} else if (!strcmp(k, "key-file")) {
		if (v[0] != '/' || strlen(v) >= sizeof(c->key_file))
			return mig_error_set(err, -EINVAL, "%s: key-file = %s: an absolute path",
					     where, v);
		str_copy(c->key_file, sizeof(c->key_file), v);
	} else if (!strcmp(k, "timeout")) {
		if (parse_duration_ms(v, 1000, &c->timeout_ms) < 0 || !c->timeout_ms ||
		    c->timeout_ms > 3600 * 1000)
			return mig_error_set(err, -EINVAL, "%s: timeout = %s: a duration from 1ms "
					     "to 1h (10s, 500ms)", where, v);
	} else if (!strcmp(k, "strict")) {
		if (strcmp(v, "yes") && strcmp(v, "no"))
			return mig_error_set(err, -EINVAL, "%s: strict = %s: yes or no", where, v);
		c->strict = v[0] == 'y';
	} else {
		return mig_error_set(err, -EINVAL, "%s: unknown key '%s' (agent, key-file, "
				     "timeout, strict)", where, k);
	}
	return 0;
}

int lvh_conf_parse(const char *text, const char *name, struct lvh_conf *conf,
		   struct mig_error *err)
{
	char *copy = strdup(text), *save = NULL, *line;
	unsigned no = 0;
	int r = 0;

	if (!copy)
		return mig_error_set(err, -ENOMEM, "out of memory reading %s", name);
	/* strtok_r would skip empty lines and so miscount: split by hand */
	for (line = copy; r == 0 && line; line = save) {
		char where[300], *eq, *l;

		save = strchr(line, '\n');
		if (save)
			*save++ = '\0';
		no++;
		*strchrnul(line, '#') = '\0';
		l = trim(line);
		if (!*l)
			continue;
		snprintf(where, sizeof(where), "%s:%u", name, no);
		eq = strchr(l, '=');
		/* a rule's paths may hold '=': its keyword decides */
		if (!eq || !strncmp(l, "rewrite-path", 12) || !strncmp(l, "cpuset", 6)) {
			r = conf_rule(l, where, conf, err);
			continue;
		}
		*eq = '\0';
		if (!*trim(eq + 1))
			r = mig_error_set(err, -EINVAL, "%s: %s has no value", where, trim(l));
		else
			r = conf_key(trim(l), trim(eq + 1), where, conf, err);
	}
	free(copy);
	return r;
}

int lvh_conf_load(const char *path, bool must_exist, struct lvh_conf *conf,
		  struct mig_error *err)
{
	FILE *f = fopen(path, "re");
	char *text;
	size_t n;
	int r;

	if (!f && errno == ENOENT && !must_exist)
		return 0;
	if (!f)
		return mig_error_set(err, -errno, "cannot read %s: %s", path, strerror(errno));
	text = calloc(1, 65537);
	n = text ? fread(text, 1, 65536, f) : 0;
	fclose(f);
	if (!text)
		return mig_error_set(err, -ENOMEM, "out of memory reading %s", path);
	if (n == 65536) {
		free(text);
		return mig_error_set(err, -EFBIG, "%s: over 64 KiB: not a hook.conf", path);
	}
	r = lvh_conf_parse(text, path, conf, err);
	free(text);
	return r;
}
