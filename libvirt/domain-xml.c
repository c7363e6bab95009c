// SPDX-License-Identifier: MIT
/*
 * A libvirt domain XML as the qemu hook gets it (include/migrate/lv-hook.h):
 * what it asks of a host, and the site's rewrites of its host-local names.
 * libxml2 reads and writes it; XPath finds the parts, so that an element
 * in an unexpected place is simply not seen rather than misread.
 */
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <libxml/parser.h>
#include <libxml/xmlsave.h>
#include <libxml/xpath.h>

#include <migrate/lv-hook.h>

#include "util.h"

/*
 * libxml2 is loaded when the first domain XML is read (dlopen): an agent
 * that never serves the hook, and every other command, pays nothing for
 * it and its ICU libraries (some 2.5 MB of an agent's memory).
 */
#define LX_API(X) \
	X(xmlXPathFreeObject) \
	X(xmlFreeDoc) \
	X(xmlGetProp) \
	X(xmlXPathNewContext) \
	X(xmlXPathFreeContext) \
	X(xmlXPathEvalExpression) \
	X(xmlSetProp) \
	X(xmlXPathCastToString) \
	X(xmlSaveToBuffer) \
	X(xmlSaveDoc) \
	X(xmlSaveClose) \
	X(xmlReadMemory) \
	X(xmlNodeSetContent) \
	X(xmlNodeGetContent) \
	X(xmlHasProp) \
	X(xmlGetLastError) \
	X(xmlDocGetRootElement) \
	X(xmlBufferLength) \
	X(xmlBufferFree) \
	X(xmlBufferCreate) \
	X(xmlBufferContent)
#define LX_API_FIELD(f) __typeof__(f) *f;
static struct {
	LX_API(LX_API_FIELD)
} lx;
static xmlFreeFunc *lx_free_fn;       /* the variable xmlFree */
static pthread_once_t lx_once = PTHREAD_ONCE_INIT;
static char lx_error[256];

static void lx_load_once(void)
{
	void *h = dlopen("libxml2.so.2", RTLD_NOW | RTLD_LOCAL);

	if (!h) {
		snprintf(lx_error, sizeof(lx_error), "cannot load libxml2 (%s): install libxml2",
			 dlerror());
		return;
	}
#define LX_API_SYM(f)								\
	if (!lx_error[0] && !(*(void **)&lx.f = dlsym(h, #f)))			\
		snprintf(lx_error, sizeof(lx_error), "libxml2.so.2 has no %s", #f);
	LX_API(LX_API_SYM)
#undef LX_API_SYM
	if (!lx_error[0] && !(lx_free_fn = dlsym(h, "xmlFree")))
		snprintf(lx_error, sizeof(lx_error), "libxml2.so.2 has no xmlFree");
}

/* 0 once libxml2's calls are in the table. */
static int lx_load(struct mig_error *err)
{
	pthread_once(&lx_once, lx_load_once);
	if (lx_error[0])
		return mig_error_set(err, -ENOTSUP, "%s", lx_error);
	return 0;
}

/* xmlFree(): libxml2's allocator's free, a variable of the library. */
static void lx_free(void *p)
{
	(*lx_free_fn)(p);
}

/* No network, no entities, no DTDs; errors into our message, not stderr. */
#define XML_OPTS (XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING)

static int doc_read(const char *xml, size_t len, xmlDocPtr *ret, struct mig_error *err)
{
	xmlDocPtr doc;
	xmlNodePtr root;

	if (lx_load(err) < 0)
		return -ENOTSUP;
	if (len > (size_t)INT32_MAX)
		return mig_error_set(err, -E2BIG, "domain XML too large");
	doc = lx.xmlReadMemory(xml, (int)len, "domain.xml", NULL, XML_OPTS);
	if (!doc) {
		const xmlError *e = lx.xmlGetLastError();

		return mig_error_set(err, -EINVAL, "the domain XML does not parse: %s",
				     e && e->message ? e->message : "no reason given");
	}
	root = lx.xmlDocGetRootElement(doc);
	if (!root || strcmp((const char *)root->name, "domain")) {
		lx.xmlFreeDoc(doc);
		return mig_error_set(err, -EINVAL, "the XML is not a libvirt domain (its root "
				     "element is not <domain>)");
	}
	*ret = doc;
	return 0;
}

/* The nodes expr selects (NULL for none); free with xmlXPathFreeObject. */
static xmlXPathObjectPtr xp(xmlXPathContextPtr ctx, const char *expr)
{
	xmlXPathObjectPtr o = lx.xmlXPathEvalExpression((const xmlChar *)expr, ctx);

	if (o && (!o->nodesetval || !o->nodesetval->nodeNr)) {
		lx.xmlXPathFreeObject(o);
		return NULL;
	}
	return o;
}

/* The string value of expr into buf ("" for none). */
static void xp_str(xmlXPathContextPtr ctx, const char *expr, char *buf, size_t n)
{
	xmlXPathObjectPtr o = lx.xmlXPathEvalExpression((const xmlChar *)expr, ctx);

	buf[0] = '\0';
	if (o) {
		xmlChar *s = lx.xmlXPathCastToString(o);

		if (s)
			str_copy(buf, n, (const char *)s);
		lx_free(s);
		lx.xmlXPathFreeObject(o);
	}
}

static void node_prop(xmlNodePtr nd, const char *name, char *buf, size_t n)
{
	xmlChar *v = lx.xmlGetProp(nd, (const xmlChar *)name);

	buf[0] = '\0';
	if (v)
		str_copy(buf, n, (const char *)v);
	lx_free(v);
}

/* libvirt's memory units (docs/formatdomain: "unit") as KiB multipliers;
 * 0 for none known.  Bytes round up. */
static uint64_t unit_kib(const char *u, uint64_t v)
{
	static const struct { const char *unit; uint64_t num, den; } units[] = {
		{ "", 1, 1 }, { "k", 1, 1 }, { "KiB", 1, 1 }, { "b", 1, 1024 },
		{ "bytes", 1, 1024 }, { "KB", 1000, 1024 }, { "M", 1024, 1 },
		{ "MiB", 1024, 1 }, { "MB", 1000000, 1024 }, { "G", 1 << 20, 1 },
		{ "GiB", 1 << 20, 1 }, { "GB", 1000000000, 1024 }, { "T", 1 << 30, 1 },
		{ "TiB", 1 << 30, 1 }, { "TB", 1000000000000ULL, 1024 },
	};

	for (size_t i = 0; i < ARRAY_SIZE(units); i++)
		if (!strcmp(units[i].unit, u))
			return DIV_ROUND_UP(v * units[i].num, units[i].den);
	return 0;
}

static uint64_t xp_kib(xmlXPathContextPtr ctx, const char *value, const char *unit)
{
	char v[32], u[16];

	xp_str(ctx, value, v, sizeof(v));
	xp_str(ctx, unit, u, sizeof(u));
	return v[0] ? unit_kib(u, strtoull(v, NULL, 10)) : 0;
}

static void add_cpuset(struct lvh_domain *d, const char *where, const char *list)
{
	if (d->nr_cpusets == LVH_MAX_ITEMS) {
		d->dropped++;
		return;
	}
	str_copy(d->cpusets[d->nr_cpusets].where, sizeof(d->cpusets[0].where), where);
	str_copy(d->cpusets[d->nr_cpusets++].list, sizeof(d->cpusets[0].list), list);
}

static void read_cpu(xmlXPathContextPtr ctx, struct lvh_domain *d)
{
	xmlXPathObjectPtr o = xp(ctx, "/domain/cpu/feature[@policy='require' or "
				 "@policy='force']");

	xp_str(ctx, "string(/domain/cpu/model)", d->cpu_model, sizeof(d->cpu_model));
	for (int i = 0; o && i < o->nodesetval->nodeNr; i++) {
		if (d->nr_features == LVH_MAX_ITEMS) {
			d->dropped++;
			continue;
		}
		node_prop(o->nodesetval->nodeTab[i], "name", d->features[d->nr_features],
			  LVH_NAME_LEN);
		if (d->features[d->nr_features][0])
			d->nr_features++;
	}
	lx.xmlXPathFreeObject(o);
}

static void read_pinning(xmlXPathContextPtr ctx, struct lvh_domain *d)
{
	xmlXPathObjectPtr o = xp(ctx, "/domain/vcpu[@cpuset] | /domain/cputune/*[@cpuset]");

	for (int i = 0; o && i < o->nodesetval->nodeNr; i++) {
		xmlNodePtr nd = o->nodesetval->nodeTab[i];
		char list[128], where[32], id[8] = "";

		node_prop(nd, "cpuset", list, sizeof(list));
		if (!strcmp((const char *)nd->name, "vcpupin"))
			node_prop(nd, "vcpu", id, sizeof(id));
		else if (!strcmp((const char *)nd->name, "iothreadpin"))
			node_prop(nd, "iothread", id, sizeof(id));
		if (id[0])
			snprintf(where, sizeof(where), "<%s %s='%s'>", (const char *)nd->name,
				 nd->name[0] == 'v' ? "vcpu" : "iothread", id);
		else
			snprintf(where, sizeof(where), "<%s>", (const char *)nd->name);
		add_cpuset(d, where, list);
	}
	lx.xmlXPathFreeObject(o);
}

static void read_numa(xmlXPathContextPtr ctx, struct lvh_domain *d)
{
	xmlXPathObjectPtr o = xp(ctx, "/domain/numatune/memory[@nodeset] | "
				 "/domain/numatune/memnode[@nodeset]");

	for (int i = 0; o && i < o->nodesetval->nodeNr; i++) {
		xmlNodePtr nd = o->nodesetval->nodeTab[i];
		struct lvh_cpuset *n;
		char cell[8];

		if (d->nr_nodesets == LVH_MAX_ITEMS) {
			d->dropped++;
			continue;
		}
		n = &d->nodesets[d->nr_nodesets++];
		node_prop(nd, "nodeset", n->list, sizeof(n->list));
		node_prop(nd, "cellid", cell, sizeof(cell));
		if (cell[0])
			snprintf(n->where, sizeof(n->where), "<memnode cellid='%s'>", cell);
		else
			snprintf(n->where, sizeof(n->where), "<numatune><memory>");
	}
	lx.xmlXPathFreeObject(o);
}

static void read_hugepages(xmlXPathContextPtr ctx, struct lvh_domain *d)
{
	xmlXPathObjectPtr o = xp(ctx, "/domain/memoryBacking/hugepages");
	char v[32], u[16];

	d->hugepages = o != NULL;
	lx.xmlXPathFreeObject(o);
	o = xp(ctx, "/domain/memoryBacking/hugepages/page[@size]");
	for (int i = 0; o && i < o->nodesetval->nodeNr && i < 8; i++) {
		node_prop(o->nodesetval->nodeTab[i], "size", v, sizeof(v));
		node_prop(o->nodesetval->nodeTab[i], "unit", u, sizeof(u));
		d->hugepage_kib[d->nr_hugepage_sizes++] = unit_kib(u, strtoull(v, NULL, 10));
	}
	if (d->hugepages && !d->nr_hugepage_sizes)
		d->hugepage_kib[d->nr_hugepage_sizes++] = 0;
	lx.xmlXPathFreeObject(o);
}

/* Disks that name a file or a block device on this host: a cdrom or
 * floppy without a medium has no source, a network disk no local path. */
static void read_disks(xmlXPathContextPtr ctx, struct lvh_domain *d)
{
	xmlXPathObjectPtr o = xp(ctx, "/domain/devices/disk[@type='file']/source[@file] | "
				 "/domain/devices/disk[@type='block']/source[@dev]");

	for (int i = 0; o && i < o->nodesetval->nodeNr; i++) {
		xmlNodePtr src = o->nodesetval->nodeTab[i], tgt;
		struct lvh_disk *k;

		if (d->nr_disks == LVH_MAX_ITEMS) {
			d->dropped++;
			continue;
		}
		k = &d->disks[d->nr_disks++];
		k->block = lx.xmlHasProp(src, (const xmlChar *)"dev") != NULL;
		node_prop(src, k->block ? "dev" : "file", k->path, sizeof(k->path));
		k->target[0] = '\0';
		for (tgt = src->parent->children; tgt; tgt = tgt->next)
			if (tgt->type == XML_ELEMENT_NODE && !strcmp((const char *)tgt->name, "target"))
				node_prop(tgt, "dev", k->target, sizeof(k->target));
	}
	lx.xmlXPathFreeObject(o);
}

static void read_bridges(xmlXPathContextPtr ctx, struct lvh_domain *d)
{
	xmlXPathObjectPtr o = xp(ctx, "/domain/devices/interface[@type='bridge']/source[@bridge]");

	for (int i = 0; o && i < o->nodesetval->nodeNr; i++) {
		if (d->nr_bridges == LVH_MAX_ITEMS) {
			d->dropped++;
			continue;
		}
		node_prop(o->nodesetval->nodeTab[i], "bridge", d->bridges[d->nr_bridges++],
			  LVH_NAME_LEN);
	}
	lx.xmlXPathFreeObject(o);
}

int lvh_domain_parse(const char *xml, size_t len, struct lvh_domain *ret, struct mig_error *err)
{
	xmlXPathContextPtr ctx;
	xmlXPathObjectPtr o;
	xmlDocPtr doc;
	char slots[16];
	int r = doc_read(xml, len, &doc, err);

	if (r < 0)
		return r;
	memset(ret, 0, sizeof(*ret));
	ctx = lx.xmlXPathNewContext(doc);
	if (!ctx) {
		lx.xmlFreeDoc(doc);
		return mig_error_set(err, -ENOMEM, "out of memory reading the domain XML");
	}
	xp_str(ctx, "string(/domain/name)", ret->name, sizeof(ret->name));
	xp_str(ctx, "string(/domain/uuid)", ret->uuid, sizeof(ret->uuid));
	for (char *c = ret->uuid; *c; c++)
		if (*c >= 'A' && *c <= 'F')
			*c = (char)(*c - 'A' + 'a');
	ret->mem_kib = xp_kib(ctx, "string(/domain/memory)", "string(/domain/memory/@unit)");
	read_cpu(ctx, ret);
	o = xp(ctx, "/domain/features/pmu[@state='on']");
	ret->pmu = o != NULL;
	lx.xmlXPathFreeObject(o);
	o = xp(ctx, "/domain/devices/memory");
	ret->mem_devices = o ? (unsigned)o->nodesetval->nodeNr : 0;
	lx.xmlXPathFreeObject(o);
	xp_str(ctx, "string(/domain/maxMemory/@slots)", slots, sizeof(slots));
	ret->max_mem_slots = (unsigned)strtoul(slots, NULL, 10);
	read_numa(ctx, ret);
	read_hugepages(ctx, ret);
	read_pinning(ctx, ret);
	read_disks(ctx, ret);
	read_bridges(ctx, ret);
	lx.xmlXPathFreeContext(ctx);
	lx.xmlFreeDoc(doc);
	return 0;
}

/* ---- the site's rewrites ---- */

/* The rule whose FROM starts path as whole components, or NULL. */
static const char *path_rule(const struct lvh_rules *rules, const char *path, size_t *ret_from)
{
	for (unsigned i = 0; i < rules->nr_rewrites; i++) {
		const char *from = rules->rewrite[i].from;
		size_t n = strlen(from);

		if (!n || strncmp(path, from, n))
			continue;
		if (path[n] == '\0' || path[n] == '/' || from[n - 1] == '/') {
			*ret_from = n;
			return rules->rewrite[i].to;
		}
	}
	return NULL;
}

static bool rewrite_path(const struct lvh_rules *rules, const char *path, char *out, size_t n)
{
	size_t from;
	const char *to = path_rule(rules, path, &from);

	if (!to)
		return false;
	snprintf(out, n, "%s%s", to, path + from);
	return true;
}

/* Each attribute attr of the nodes expr selects (attr NULL: the text). */
static unsigned rewrite_nodes(xmlXPathContextPtr ctx, const char *expr, const char *attr,
			      const struct lvh_rules *rules)
{
	xmlXPathObjectPtr o = xp(ctx, expr);
	unsigned changed = 0;

	for (int i = 0; o && i < o->nodesetval->nodeNr; i++) {
		xmlNodePtr nd = o->nodesetval->nodeTab[i];
		xmlChar *v = attr ? lx.xmlGetProp(nd, (const xmlChar *)attr) : lx.xmlNodeGetContent(nd);
		char out[2 * LVH_PATH_MAX];

		if (v && rewrite_path(rules, (const char *)v, out, sizeof(out))) {
			if (attr)
				lx.xmlSetProp(nd, (const xmlChar *)attr, (const xmlChar *)out);
			else
				lx.xmlNodeSetContent(nd, (const xmlChar *)out);
			changed++;
		}
		lx_free(v);
	}
	lx.xmlXPathFreeObject(o);
	return changed;
}

static unsigned rewrite_cpusets(xmlXPathContextPtr ctx, const char *cpuset)
{
	xmlXPathObjectPtr o = xp(ctx, "/domain/vcpu[@cpuset] | /domain/cputune/*[@cpuset]");
	unsigned changed = 0;

	for (int i = 0; o && i < o->nodesetval->nodeNr; i++) {
		xmlNodePtr nd = o->nodesetval->nodeTab[i];
		xmlChar *v = lx.xmlGetProp(nd, (const xmlChar *)"cpuset");

		if (!v || strcmp((const char *)v, cpuset)) {
			lx.xmlSetProp(nd, (const xmlChar *)"cpuset", (const xmlChar *)cpuset);
			changed++;
		}
		lx_free(v);
	}
	lx.xmlXPathFreeObject(o);
	return changed;
}

/* The host-local paths of a domain, by element and attribute. */
static const struct { const char *expr, *attr; } local_paths[] = {
	{ "/domain/devices/disk/source[@file]", "file" },
	{ "/domain/devices/disk/source[@dev]", "dev" },
	{ "/domain/devices/*[self::serial or self::console or self::channel or self::parallel]"
	  "/source[@path]", "path" },
	{ "/domain/devices/*[self::serial or self::console or self::channel or self::parallel]"
	  "/log[@file]", "file" },
	{ "/domain/os/loader", NULL },
	{ "/domain/os/nvram", NULL },
	{ "/domain/os/nvram[@template]", "template" },
};

int lvh_rewrite(const char *xml, size_t len, const struct lvh_rules *rules, char **ret_out,
		size_t *ret_len, bool *ret_changed, struct mig_error *err)
{
	xmlXPathContextPtr ctx;
	xmlSaveCtxtPtr save;
	xmlBufferPtr buf;
	xmlDocPtr doc;
	unsigned changed = 0;
	int r = doc_read(xml, len, &doc, err);

	if (r < 0)
		return r;
	ctx = lx.xmlXPathNewContext(doc);
	buf = lx.xmlBufferCreate();
	if (!ctx || !buf) {
		r = mig_error_set(err, -ENOMEM, "out of memory rewriting the domain XML");
		goto out;
	}
	for (size_t i = 0; rules->nr_rewrites && i < ARRAY_SIZE(local_paths); i++)
		changed += rewrite_nodes(ctx, local_paths[i].expr, local_paths[i].attr, rules);
	if (rules->cpuset[0])
		changed += rewrite_cpusets(ctx, rules->cpuset);
	*ret_changed = changed > 0;
	if (!changed) {
		*ret_out = strndup(xml, len);
		*ret_len = len;
	} else {
		save = lx.xmlSaveToBuffer(buf, "UTF-8", XML_SAVE_NO_DECL);
		if (save) {
			lx.xmlSaveDoc(save, doc);
			lx.xmlSaveClose(save);
		}
		*ret_len = (size_t)lx.xmlBufferLength(buf);
		*ret_out = strndup((const char *)lx.xmlBufferContent(buf), *ret_len);
	}
	if (!*ret_out)
		r = mig_error_set(err, -ENOMEM, "out of memory rewriting the domain XML");
out:
	if (buf)
		lx.xmlBufferFree(buf);
	lx.xmlXPathFreeContext(ctx);
	lx.xmlFreeDoc(doc);
	return r;
}
