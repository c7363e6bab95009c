// SPDX-License-Identifier: MIT
/*
 * The GIC device class (gic.h, KERNEL-UAPI.md §6): its states and stage
 * steps, the save and restore orders of §6.3 and §6.4 as attribute calls
 * on its backend, the state blob, VLPI forwarding and what a destination
 * must have.
 */
#include <endian.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gic/gic.h"
#include "gic/gic-uapi.h"
#include "util.h"

static const char *const state_names[GIC_ST_N] = {
	[GIC_CREATED] = "created",
	[GIC_RUNNING] = "running",
	[GIC_QUIESCED] = "quiesced",
	[GIC_FLUSHED] = "flushed",
	[GIC_SAVED] = "saved",
	[GIC_RESTORING] = "restoring",
	[GIC_RESTORED] = "restored",
	[GIC_FAILED] = "failed",
	[GIC_DEAD] = "dead",
};

#define A(from, to) [(from) * GIC_ST_N + (to)] = true
static const bool arcs[GIC_ST_N * GIC_ST_N] = {
	A(GIC_CREATED, GIC_RUNNING),     /* a VM that boots with it */
	A(GIC_CREATED, GIC_RESTORING),   /* destination */
	A(GIC_CREATED, GIC_DEAD),
	A(GIC_RUNNING, GIC_QUIESCED),
	A(GIC_QUIESCED, GIC_FLUSHED),
	A(GIC_FLUSHED, GIC_SAVED),
	/* a rollback: the saves changed no device state (§6.2) */
	A(GIC_QUIESCED, GIC_RUNNING), A(GIC_FLUSHED, GIC_RUNNING), A(GIC_SAVED, GIC_RUNNING),
	A(GIC_SAVED, GIC_DEAD),          /* the destination owns the VM */
	A(GIC_RESTORING, GIC_RESTORED),
	A(GIC_RESTORING, GIC_FAILED),
	A(GIC_RESTORED, GIC_RUNNING),
	A(GIC_RESTORED, GIC_DEAD),
	A(GIC_FAILED, GIC_DEAD),
};
#undef A

uint64_t gic_vcpu_affinity(unsigned i)
{
	/* KVM's reset_mpidr(): Aff0 = id[3:0], Aff1 = id[11:4], Aff2 = id[19:12] */
	return (i & 0xfU) | (((i >> 4) & 0xffU) << 8) | (((uint64_t)(i >> 12) & 0xffU) << 16);
}

static uint64_t elapsed_ns(const struct timespec *t0)
{
	struct timespec t1;

	clock_gettime(CLOCK_MONOTONIC, &t1);
	return (uint64_t)(t1.tv_sec - t0->tv_sec) * 1000000000ULL + (uint64_t)t1.tv_nsec -
	       (uint64_t)t0->tv_nsec;
}

/* ---- attribute access ---- */

static int dist(struct gic_dev *g, bool set, uint32_t off, uint32_t *v, struct mig_error *err)
{
	int r = g->be->attr(g, -1, set, GIC_GRP_DIST_REGS, off, v);

	if (r < 0)
		return mig_error_set(err, r, "gic: %s GICD+%#x: %s", set ? "setting" : "reading",
				     off, strerror(-r));
	return 0;
}

static int redist(struct gic_dev *g, unsigned cpu, bool set, uint32_t off, uint32_t *v,
		  struct mig_error *err)
{
	uint64_t attr = gic_vcpu_affinity(cpu) << GIC_ATTR_MPIDR_SHIFT | off;
	int r = g->be->attr(g, -1, set, GIC_GRP_REDIST_REGS, attr, v);

	if (r < 0)
		return mig_error_set(err, r, "gic: %s GICR%u+%#x: %s", set ? "setting" : "reading",
				     cpu, off, strerror(-r));
	return 0;
}

/* A 64-bit redistributor register, as the kernel has it: two halves. */
static int redist64(struct gic_dev *g, unsigned cpu, bool set, uint32_t off, uint64_t *v,
		    struct mig_error *err)
{
	uint32_t lo = (uint32_t)*v, hi = (uint32_t)(*v >> 32);
	int r = redist(g, cpu, set, off, &lo, err);

	if (r >= 0)
		r = redist(g, cpu, set, off + 4, &hi, err);
	if (r >= 0 && !set)
		*v = (uint64_t)hi << 32 | lo;
	return r;
}

static int sysreg(struct gic_dev *g, unsigned cpu, bool set, uint32_t enc, uint64_t *v,
		  struct mig_error *err)
{
	uint64_t attr = gic_vcpu_affinity(cpu) << GIC_ATTR_MPIDR_SHIFT | enc;
	int r = g->be->attr(g, -1, set, GIC_GRP_CPU_SYSREGS, attr, v);

	if (r < 0)
		return mig_error_set(err, r, "gic: %s ICC register %#x of vCPU %u: %s",
				     set ? "setting" : "reading", enc, cpu, strerror(-r));
	return 0;
}

static int level(struct gic_dev *g, bool set, uint32_t intid, uint32_t *v, struct mig_error *err)
{
	uint64_t attr = (uint64_t)GIC_LEVEL_INFO_LINE_LEVEL << GIC_LEVEL_INFO_SHIFT | intid;
	int r = g->be->attr(g, -1, set, GIC_GRP_LEVEL_INFO, attr, v);

	if (r < 0)
		return mig_error_set(err, r, "gic: %s the line levels of INTIDs %u+: %s",
				     set ? "setting" : "reading", intid, strerror(-r));
	return 0;
}

static int its_reg(struct gic_dev *g, unsigned its, bool set, uint32_t off, uint64_t *v,
		   struct mig_error *err)
{
	int r = g->be->attr(g, (int)its, set, GIC_GRP_ITS_REGS, off, v);

	if (r < 0)
		return mig_error_set(err, r, "gic: %s GITS%u+%#x: %s", set ? "setting" : "reading",
				     its, off, strerror(-r));
	return 0;
}

static int ctrl(struct gic_dev *g, int its, uint64_t attr)
{
	return g->be->attr(g, its, true, GIC_GRP_CTRL, attr, NULL);
}

/* ---- the state image ---- */

struct redist_img {
	uint32_t ctlr;
	uint64_t propbaser, pendbaser;
	uint32_t igroupr0, isenabler0, ispendr0, isactiver0, ipriorityr[8], icfgr[2];
};

struct cpuif_img {
	uint64_t sre, ctlr, igrpen0, igrpen1, pmr, bpr0, bpr1, ap0r[4], ap1r[4];
};

struct its_img {
	uint64_t iidr, cbaser, creadr, cwriter, baser[GITS_BASER_NR], ctlr;
};

struct gic_img {
	uint32_t nr_vcpus, nr_irqs, nr_its, nr_vlpis;
	uint32_t gicd_ctlr, gicd_iidr;
	/* the SPIs' registers, indexed as the kernel's offsets are (words for
	 * INTIDs 0-31 stay 0: with affinity routing they live in the
	 * redistributors) */
	uint32_t igroupr[GIC_IRQS_MAX / 32], isenabler[GIC_IRQS_MAX / 32];
	uint32_t ispendr[GIC_IRQS_MAX / 32], isactiver[GIC_IRQS_MAX / 32];
	uint32_t levels[GIC_IRQS_MAX / 32];
	uint32_t ipriorityr[GIC_IRQS_MAX / 4], icfgr[GIC_IRQS_MAX / 16];
	uint64_t irouter[GIC_IRQS_MAX];
	struct redist_img rd[GIC_VCPUS_MAX];
	struct cpuif_img cpu[GIC_VCPUS_MAX];
	struct its_img its[GIC_ITS_MAX];
	/* the LPIs the source forwarded (its, devid, event) */
	uint32_t vlpi[GIC_VLPIS_MAX][3];
};

#define GIC_BLOB_MAGIC 0x3143494754474d4dULL   /* "MMGTGIC1" */

/* ICC_AP{0,1}R<n>_EL1 the vCPU has: one per 32 preemption levels beyond the
 * first 32 (5 priority bits: 1, 6: 2, 7: 4). */
static unsigned nr_apr(uint64_t icc_ctlr)
{
	unsigned bits = (unsigned)((icc_ctlr >> ICC_CTLR_PRIBITS_SHIFT) & ICC_CTLR_PRIBITS_MASK) + 1;

	return bits <= 5 ? 1 : bits == 6 ? 2 : 4;
}

/* Every word of the blob, in one order for writing and reading: `set`
 * false copies img out to the cursor, true in.  So the format is written
 * once.  Words are little-endian in the blob, whatever the host. */
struct cursor {
	uint8_t *p;
	size_t len, off;
	bool in;
	bool short_;
};

static void word(struct cursor *c, void *v, size_t size)
{
	if (c->off + size > c->len) {
		c->short_ = true;
		c->off += size;
		return;
	}
	if (c->p && size == 4) {
		uint32_t t;

		memcpy(&t, c->in ? c->p + c->off : v, 4);
		t = c->in ? le32toh(t) : htole32(t);
		memcpy(c->in ? v : c->p + c->off, &t, 4);
	} else if (c->p) {
		uint64_t t;

		memcpy(&t, c->in ? c->p + c->off : v, 8);
		t = c->in ? le64toh(t) : htole64(t);
		memcpy(c->in ? v : c->p + c->off, &t, 8);
	}
	c->off += size;
}
#define W32(c, x) word((c), &(x), 4)
#define W64(c, x) word((c), &(x), 8)

/* The header: read first on its own, to size the rest. */
static void walk_head(struct cursor *c, struct gic_img *m)
{
	uint64_t magic = GIC_BLOB_MAGIC;

	W64(c, magic);
	if (c->in && magic != GIC_BLOB_MAGIC)
		c->short_ = true;
	W32(c, m->nr_vcpus);
	W32(c, m->nr_irqs);
	W32(c, m->nr_its);
	W32(c, m->nr_vlpis);
}

static void walk_body(struct cursor *c, struct gic_img *m)
{
	W32(c, m->gicd_ctlr);
	W32(c, m->gicd_iidr);
	for (uint32_t n = 1; n < m->nr_irqs / 32; n++) {
		W32(c, m->igroupr[n]);
		W32(c, m->isenabler[n]);
		W32(c, m->ispendr[n]);
		W32(c, m->isactiver[n]);
		W32(c, m->levels[n]);
	}
	for (uint32_t n = 32 / 4; n < m->nr_irqs / 4; n++)
		W32(c, m->ipriorityr[n]);
	for (uint32_t n = 32 / 16; n < m->nr_irqs / 16; n++)
		W32(c, m->icfgr[n]);
	for (uint32_t n = 32; n < m->nr_irqs; n++)
		W64(c, m->irouter[n]);
	for (uint32_t i = 0; i < m->nr_vcpus; i++) {
		struct redist_img *r = &m->rd[i];
		struct cpuif_img *k = &m->cpu[i];

		W32(c, r->ctlr);
		W64(c, r->propbaser);
		W64(c, r->pendbaser);
		W32(c, r->igroupr0);
		W32(c, r->isenabler0);
		W32(c, r->ispendr0);
		W32(c, r->isactiver0);
		for (unsigned n = 0; n < 8; n++)
			W32(c, r->ipriorityr[n]);
		W32(c, r->icfgr[0]);
		W32(c, r->icfgr[1]);
		W64(c, k->sre);
		W64(c, k->ctlr);
		W64(c, k->igrpen0);
		W64(c, k->igrpen1);
		W64(c, k->pmr);
		W64(c, k->bpr0);
		W64(c, k->bpr1);
		for (unsigned n = 0; n < 4; n++) {
			W64(c, k->ap0r[n]);
			W64(c, k->ap1r[n]);
		}
	}
	for (uint32_t i = 0; i < m->nr_its; i++) {
		struct its_img *t = &m->its[i];

		W64(c, t->iidr);
		W64(c, t->cbaser);
		W64(c, t->creadr);
		W64(c, t->cwriter);
		for (unsigned n = 0; n < GITS_BASER_NR; n++)
			W64(c, t->baser[n]);
		W64(c, t->ctlr);
	}
	for (uint32_t i = 0; i < m->nr_vlpis; i++)
		for (unsigned n = 0; n < 3; n++)
			W32(c, m->vlpi[i][n]);
}

/* ---- source: the save (§6.3) ---- */

static int read_regs(struct gic_dev *g, struct gic_img *m, struct mig_error *err)
{
	int r = 0;

	m->nr_vcpus = g->cfg.nr_vcpus;
	m->nr_irqs = g->cfg.nr_irqs;
	m->nr_its = g->cfg.nr_its;
	r = dist(g, false, GICD_CTLR, &m->gicd_ctlr, err);
	if (r >= 0)
		r = dist(g, false, GICD_IIDR, &m->gicd_iidr, err);
	for (uint32_t n = 1; r >= 0 && n < m->nr_irqs / 32; n++) {
		r = dist(g, false, GICD_IGROUPR + 4 * n, &m->igroupr[n], err);
		if (r >= 0)
			r = dist(g, false, GICD_ISENABLER + 4 * n, &m->isenabler[n], err);
		if (r >= 0)
			r = dist(g, false, GICD_ISPENDR + 4 * n, &m->ispendr[n], err);
		if (r >= 0)
			r = dist(g, false, GICD_ISACTIVER + 4 * n, &m->isactiver[n], err);
		if (r >= 0)
			r = level(g, false, 32 * n, &m->levels[n], err);
	}
	for (uint32_t n = 32 / 4; r >= 0 && n < m->nr_irqs / 4; n++)
		r = dist(g, false, GICD_IPRIORITYR + 4 * n, &m->ipriorityr[n], err);
	for (uint32_t n = 32 / 16; r >= 0 && n < m->nr_irqs / 16; n++)
		r = dist(g, false, GICD_ICFGR + 4 * n, &m->icfgr[n], err);
	for (uint32_t n = 32; r >= 0 && n < m->nr_irqs; n++) {
		uint32_t lo = 0, hi = 0;

		r = dist(g, false, GICD_IROUTER + 8 * n, &lo, err);
		if (r >= 0)
			r = dist(g, false, GICD_IROUTER + 8 * n + 4, &hi, err);
		m->irouter[n] = (uint64_t)hi << 32 | lo;
	}
	for (unsigned i = 0; r >= 0 && i < m->nr_vcpus; i++) {
		struct redist_img *d = &m->rd[i];
		struct cpuif_img *k = &m->cpu[i];

		r = redist(g, i, false, GICR_CTLR, &d->ctlr, err);
		if (r >= 0)
			r = redist64(g, i, false, GICR_PROPBASER, &d->propbaser, err);
		if (r >= 0)
			r = redist64(g, i, false, GICR_PENDBASER, &d->pendbaser, err);
		if (r >= 0)
			r = redist(g, i, false, GICR_IGROUPR0, &d->igroupr0, err);
		if (r >= 0)
			r = redist(g, i, false, GICR_ISENABLER0, &d->isenabler0, err);
		if (r >= 0)
			r = redist(g, i, false, GICR_ISPENDR0, &d->ispendr0, err);
		if (r >= 0)
			r = redist(g, i, false, GICR_ISACTIVER0, &d->isactiver0, err);
		for (unsigned n = 0; r >= 0 && n < 8; n++)
			r = redist(g, i, false, GICR_IPRIORITYR0 + 4 * n, &d->ipriorityr[n], err);
		if (r >= 0)
			r = redist(g, i, false, GICR_ICFGR0, &d->icfgr[0], err);
		if (r >= 0)
			r = redist(g, i, false, GICR_ICFGR1, &d->icfgr[1], err);
		if (r >= 0)
			r = sysreg(g, i, false, ICC_SRE_EL1, &k->sre, err);
		if (r >= 0)
			r = sysreg(g, i, false, ICC_CTLR_EL1, &k->ctlr, err);
		if (r >= 0)
			r = sysreg(g, i, false, ICC_IGRPEN0_EL1, &k->igrpen0, err);
		if (r >= 0)
			r = sysreg(g, i, false, ICC_IGRPEN1_EL1, &k->igrpen1, err);
		if (r >= 0)
			r = sysreg(g, i, false, ICC_PMR_EL1, &k->pmr, err);
		if (r >= 0)
			r = sysreg(g, i, false, ICC_BPR0_EL1, &k->bpr0, err);
		if (r >= 0)
			r = sysreg(g, i, false, ICC_BPR1_EL1, &k->bpr1, err);
		for (unsigned n = 0; r >= 0 && n < nr_apr(k->ctlr); n++) {
			r = sysreg(g, i, false, ICC_AP0R_EL1(n), &k->ap0r[n], err);
			if (r >= 0)
				r = sysreg(g, i, false, ICC_AP1R_EL1(n), &k->ap1r[n], err);
		}
	}
	/* ITS: GITS_BASER0..7, CTLR, CBASER, CREADR, CWRITER, IIDR */
	for (unsigned i = 0; r >= 0 && i < m->nr_its; i++) {
		struct its_img *t = &m->its[i];

		for (unsigned n = 0; r >= 0 && n < GITS_BASER_NR; n++)
			r = its_reg(g, i, false, GITS_BASER(n), &t->baser[n], err);
		if (r >= 0)
			r = its_reg(g, i, false, GITS_CTLR, &t->ctlr, err);
		if (r >= 0)
			r = its_reg(g, i, false, GITS_CBASER, &t->cbaser, err);
		if (r >= 0)
			r = its_reg(g, i, false, GITS_CREADR, &t->creadr, err);
		if (r >= 0)
			r = its_reg(g, i, false, GITS_CWRITER, &t->cwriter, err);
		if (r >= 0)
			r = its_reg(g, i, false, GITS_IIDR, &t->iidr, err);
	}
	for (unsigned i = 0; i < g->cfg.nr_vlpis; i++) {
		const struct gic_vlpi *l = &g->cfg.vlpis[i];

		if (!l->wanted)
			continue;
		m->vlpi[m->nr_vlpis][0] = l->its;
		m->vlpi[m->nr_vlpis][1] = l->devid;
		m->vlpi[m->nr_vlpis][2] = l->event;
		m->nr_vlpis++;
	}
	return r;
}

/* SAVE_PENDING_TABLES, then each ITS's tables: both write guest RAM. */
static int flush(struct gic_dev *g, struct mig_error *err)
{
	struct timespec t0;
	int r;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	r = ctrl(g, -1, GIC_CTRL_SAVE_PENDING_TABLES);
	g->save_pending_ns = elapsed_ns(&t0);
	if (r < 0)
		return mig_error_set(err, r, "gic: KVM_DEV_ARM_VGIC_SAVE_PENDING_TABLES: %s%s",
				     strerror(-r), r == -EBUSY ? " (a vCPU is still running)" : "");
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (unsigned i = 0; i < g->cfg.nr_its; i++) {
		r = ctrl(g, (int)i, GIC_CTRL_ITS_SAVE_TABLES);
		if (r == -EACCES)
			return mig_error_set(err, r, "gic: ITS %u refused to save its tables (EACCES): "
					     "an LPI is forwarded to a GICv4.0 vLPI whose pending state "
					     "the kernel cannot read, and this VM did not declare it, or "
					     "declared it on a host it did not say is GICv4.0 (only "
					     "declared VLPIs on GICv4.0 are taken off direct injection "
					     "before the save); the VM keeps running here", i);
		if (r < 0)
			return mig_error_set(err, r, "gic: ITS %u: KVM_DEV_ARM_ITS_SAVE_TABLES: %s", i,
					     strerror(-r));
	}
	g->its_save_ns = elapsed_ns(&t0);
	return 0;
}

static int save_regs(struct gic_dev *g, struct mig_error *err)
{
	struct gic_img *m = calloc(1, sizeof(*m));
	struct cursor c = { 0 };
	int r;

	if (!m)
		return mig_error_set(err, -ENOMEM, "out of memory");
	r = read_regs(g, m, err);
	if (r >= 0) {
		walk_head(&c, m);
		walk_body(&c, m);
		g->saved.len = 0;
		r = mig_buf_reserve(&g->saved, c.off);
		if (r < 0)
			r = mig_error_set(err, r, "out of memory");
	}
	if (r >= 0) {
		c = (struct cursor){ .p = g->saved.data, .len = c.off };
		walk_head(&c, m);
		walk_body(&c, m);
		g->saved.len = c.off;
	}
	free(m);
	return r;
}

/* ---- destination: the restore (§6.4) ---- */

/* This VM's declared VLPI of a source's (ITS, device, event), or -1. */
static int find_vlpi(const struct gic_dev *g, const uint32_t v[3])
{
	for (unsigned k = 0; k < g->cfg.nr_vlpis; k++)
		if (g->cfg.vlpis[k].its == v[0] && g->cfg.vlpis[k].devid == v[1] &&
		    g->cfg.vlpis[k].event == v[2])
			return (int)k;
	return -1;
}

static int parse(struct gic_dev *g, const uint8_t *p, size_t n, struct gic_img *m,
		 struct mig_error *err)
{
	struct cursor c = { .p = (uint8_t *)p, .len = n, .in = true };

	walk_head(&c, m);
	if (c.short_)
		return mig_error_set(err, -EINVAL, "gic: the state is not a GIC state (%zu bytes, "
				     "bad header)", n);
	if (m->nr_vcpus != g->cfg.nr_vcpus || m->nr_irqs != g->cfg.nr_irqs ||
	    m->nr_its != g->cfg.nr_its)
		return mig_error_set(err, -EINVAL, "gic: the state is of a GIC with %u vCPUs, %u "
				     "interrupts and %u ITSes; this one has %u, %u and %u",
				     m->nr_vcpus, m->nr_irqs, m->nr_its, g->cfg.nr_vcpus,
				     g->cfg.nr_irqs, g->cfg.nr_its);
	if (m->nr_vlpis > GIC_VLPIS_MAX)
		return mig_error_set(err, -EINVAL, "gic: the state names %u forwarded LPIs (at most "
				     "%u)", m->nr_vlpis, GIC_VLPIS_MAX);
	walk_body(&c, m);
	if (c.short_ || c.off != n)
		return mig_error_set(err, -EINVAL, "gic: the state is %zu bytes; a GIC of this shape "
				     "has %zu", n, c.off);
	/* what the source injected directly, this VM must be able to */
	for (unsigned i = 0; i < m->nr_vlpis; i++)
		if (find_vlpi(g, m->vlpi[i]) < 0)
			return mig_error_set(err, -EINVAL, "gic: the source forwarded ITS %u device "
					     "%#x event %u to the guest; this VM has no such "
					     "passthrough interrupt", m->vlpi[i][0], m->vlpi[i][1],
					     m->vlpi[i][2]);
	for (unsigned i = 0; i < m->nr_its; i++)
		if (m->its[i].ctlr & GITS_CTLR_ENABLE && !(m->its[i].cbaser & GITS_CBASER_VALID))
			return mig_error_set(err, -EINVAL, "gic: ITS %u is enabled with no valid "
					     "command queue", i);
	return 0;
}

static int write_vgic(struct gic_dev *g, struct gic_img *m, struct mig_error *err)
{
	int r;

	/* the IIDR first: its revision selects how the rest behaves */
	r = dist(g, true, GICD_IIDR, &m->gicd_iidr, err);
	if (r >= 0)
		r = dist(g, true, GICD_CTLR, &m->gicd_ctlr, err);
	/* PROPBASER and PENDBASER before the CTLR that may enable LPIs: the
	 * kernel ignores them once LPIs are on */
	for (unsigned i = 0; r >= 0 && i < m->nr_vcpus; i++) {
		r = redist64(g, i, true, GICR_PROPBASER, &m->rd[i].propbaser, err);
		if (r >= 0)
			r = redist64(g, i, true, GICR_PENDBASER, &m->rd[i].pendbaser, err);
	}
	for (unsigned i = 0; r >= 0 && i < m->nr_vcpus; i++) {
		struct redist_img *d = &m->rd[i];

		r = redist(g, i, true, GICR_CTLR, &d->ctlr, err);
		if (r >= 0)
			r = redist(g, i, true, GICR_IGROUPR0, &d->igroupr0, err);
		for (unsigned n = 0; r >= 0 && n < 8; n++)
			r = redist(g, i, true, GICR_IPRIORITYR0 + 4 * n, &d->ipriorityr[n], err);
		if (r >= 0)
			r = redist(g, i, true, GICR_ICFGR0, &d->icfgr[0], err);
		if (r >= 0)
			r = redist(g, i, true, GICR_ICFGR1, &d->icfgr[1], err);
		if (r >= 0)
			r = redist(g, i, true, GICR_ISENABLER0, &d->isenabler0, err);
		if (r >= 0)
			r = redist(g, i, true, GICR_ISPENDR0, &d->ispendr0, err);
		if (r >= 0)
			r = redist(g, i, true, GICR_ISACTIVER0, &d->isactiver0, err);
	}
	/* the distributor's SPIs: configuration before state */
	for (uint32_t n = 1; r >= 0 && n < m->nr_irqs / 32; n++)
		r = dist(g, true, GICD_IGROUPR + 4 * n, &m->igroupr[n], err);
	for (uint32_t n = 32 / 4; r >= 0 && n < m->nr_irqs / 4; n++)
		r = dist(g, true, GICD_IPRIORITYR + 4 * n, &m->ipriorityr[n], err);
	for (uint32_t n = 32 / 16; r >= 0 && n < m->nr_irqs / 16; n++)
		r = dist(g, true, GICD_ICFGR + 4 * n, &m->icfgr[n], err);
	for (uint32_t n = 32; r >= 0 && n < m->nr_irqs; n++) {
		uint32_t lo = (uint32_t)m->irouter[n], hi = (uint32_t)(m->irouter[n] >> 32);

		r = dist(g, true, GICD_IROUTER + 8 * n, &lo, err);
		if (r >= 0)
			r = dist(g, true, GICD_IROUTER + 8 * n + 4, &hi, err);
	}
	for (uint32_t n = 1; r >= 0 && n < m->nr_irqs / 32; n++) {
		r = level(g, true, 32 * n, &m->levels[n], err);
		if (r >= 0)
			r = dist(g, true, GICD_ISENABLER + 4 * n, &m->isenabler[n], err);
		if (r >= 0)
			r = dist(g, true, GICD_ISPENDR + 4 * n, &m->ispendr[n], err);
		if (r >= 0)
			r = dist(g, true, GICD_ISACTIVER + 4 * n, &m->isactiver[n], err);
	}
	/* each vCPU's CPU interface: SRE and CTLR before what they govern */
	for (unsigned i = 0; r >= 0 && i < m->nr_vcpus; i++) {
		struct cpuif_img *k = &m->cpu[i];

		r = sysreg(g, i, true, ICC_SRE_EL1, &k->sre, err);
		if (r >= 0)
			r = sysreg(g, i, true, ICC_CTLR_EL1, &k->ctlr, err);
		if (r >= 0)
			r = sysreg(g, i, true, ICC_IGRPEN0_EL1, &k->igrpen0, err);
		if (r >= 0)
			r = sysreg(g, i, true, ICC_IGRPEN1_EL1, &k->igrpen1, err);
		if (r >= 0)
			r = sysreg(g, i, true, ICC_PMR_EL1, &k->pmr, err);
		if (r >= 0)
			r = sysreg(g, i, true, ICC_BPR0_EL1, &k->bpr0, err);
		if (r >= 0)
			r = sysreg(g, i, true, ICC_BPR1_EL1, &k->bpr1, err);
		for (unsigned n = 0; r >= 0 && n < nr_apr(k->ctlr); n++) {
			r = sysreg(g, i, true, ICC_AP0R_EL1(n), &k->ap0r[n], err);
			if (r >= 0)
				r = sysreg(g, i, true, ICC_AP1R_EL1(n), &k->ap1r[n], err);
		}
	}
	return r;
}

/* Each ITS: IIDR (the table ABI), CBASER (which zeroes CREADR), CREADR and
 * CWRITER (so no queued command runs again), the BASERs, RESTORE_TABLES,
 * and CTLR last: it enables the ITS. */
static int write_its(struct gic_dev *g, struct gic_img *m, struct mig_error *err)
{
	struct timespec t0;
	uint64_t spent = 0;
	int r = 0;

	for (unsigned i = 0; r >= 0 && i < m->nr_its; i++) {
		struct its_img *t = &m->its[i];

		r = its_reg(g, i, true, GITS_IIDR, &t->iidr, err);
		if (r >= 0)
			r = its_reg(g, i, true, GITS_CBASER, &t->cbaser, err);
		if (r >= 0)
			r = its_reg(g, i, true, GITS_CREADR, &t->creadr, err);
		if (r >= 0)
			r = its_reg(g, i, true, GITS_CWRITER, &t->cwriter, err);
		for (unsigned n = 0; r >= 0 && n < GITS_BASER_NR; n++)
			r = its_reg(g, i, true, GITS_BASER(n), &t->baser[n], err);
		if (r < 0)
			break;
		clock_gettime(CLOCK_MONOTONIC, &t0);
		r = ctrl(g, (int)i, GIC_CTRL_ITS_RESTORE_TABLES);
		spent += elapsed_ns(&t0);
		if (r < 0) {
			r = mig_error_set(err, r, "gic: ITS %u: KVM_DEV_ARM_ITS_RESTORE_TABLES: %s%s", i,
					  strerror(-r), r == -EINVAL ? " (its tables in guest RAM "
					  "are inconsistent: corrupted in transit or by the source)" :
					  "");
			break;
		}
		r = its_reg(g, i, true, GITS_CTLR, &t->ctlr, err);
	}
	g->its_restore_ns = spent;
	return r;
}

/* ---- VLPI forwarding ---- */

static int forward(struct gic_dev *g, struct gic_vlpi *l, bool on, struct mig_error *err)
{
	int r;

	if (l->forwarded == on)
		return 0;
	r = g->be->forward(g, l, on);
	if (r < 0)
		return mig_error_set(err, r, "gic: %s direct injection of ITS %u device %#x event %u: "
				     "%s", on ? "turning on" : "turning off", l->its, l->devid,
				     l->event, strerror(-r));
	l->forwarded = on;
	return 0;
}

/* Every wanted VLPI on, or every forwarded one off. */
static int forward_all(struct gic_dev *g, bool on, unsigned *count, struct mig_error *err)
{
	for (unsigned i = 0; i < g->cfg.nr_vlpis; i++) {
		struct gic_vlpi *l = &g->cfg.vlpis[i];
		bool was = l->forwarded;
		int r;

		if (on && !l->wanted)
			continue;
		r = forward(g, l, on, err);
		if (r < 0)
			return r;
		if (was != on)
			(*count)++;
	}
	return 0;
}

int gic_vlpi_enable(struct gic_dev *g, unsigned i, struct mig_error *err)
{
	if (i >= g->cfg.nr_vlpis)
		return mig_error_set(err, -EINVAL, "gic: VLPI %u of %u declared", i,
				     g->cfg.nr_vlpis);
	g->cfg.vlpis[i].wanted = true;
	/* stopped or restoring: it goes on when the VM runs */
	if (g->core.state != GIC_RUNNING)
		return 0;
	return forward(g, &g->cfg.vlpis[i], true, err);
}

/* ---- the class ---- */

static int step(struct mig_device *d, int to, struct mig_error *err)
{
	struct gic_dev *g = container_of(d, struct gic_dev, core);
	unsigned on = 0;
	int r;

	switch (to) {
	case GIC_QUIESCED:
		/* GICv4.0 keeps a VLPI's pending state where the kernel cannot
		 * read it, and its ITS save refuses a forwarded LPI: take them
		 * off direct injection now, while the vCPUs still run and take
		 * what is pending, so what comes later is pending in software. */
		if (g->cfg.v4 != GIC_V4_0 || !g->cfg.nr_vlpis)
			return 0;
		r = forward_all(g, false, &g->vlpis_off, err);
		if (g->vlpis_off)
			d->notes |= GIC_NOTE_VLPI_OFF;
		/* what its VLPI had pending went with the unmapping: raise
		 * each once in software (a driver takes a spurious MSI as
		 * nothing to do; a lost one may hang it) */
		for (unsigned i = 0; r >= 0 && i < g->cfg.nr_vlpis; i++) {
			if (!g->cfg.vlpis[i].wanted)
				continue;
			r = g->be->inject(g, &g->cfg.vlpis[i]);
			if (r < 0)
				r = mig_error_set(err, r, "gic: raising ITS %u device %#x event %u "
						  "in software: %s", g->cfg.vlpis[i].its,
						  g->cfg.vlpis[i].devid, g->cfg.vlpis[i].event,
						  strerror(-r));
		}
		return r;
	case GIC_FLUSHED:
		return flush(g, err);
	case GIC_SAVED:
		r = save_regs(g, err);
		if (r >= 0)
			d->bytes = g->saved.len;
		return r;
	case GIC_RUNNING:
		/* a rollback (what was taken off goes back on) or the
		 * destination's start, after RESTORE_TABLES and GITS_CTLR:
		 * forwarding now pushes the restored pending state to the
		 * VLPIs.  A boot forwards nothing: the guest has mapped no
		 * event yet (gic_vlpi_enable()). */
		r = forward_all(g, true, &on, err);
		if (d->state == GIC_RESTORED)
			g->vlpis_on += on;
		return r;
	default:
		/* RESTORING, RESTORED, FAILED, DEAD: bookkeeping; load() restores */
		return 0;
	}
}

static int save(struct mig_device *d, struct mig_writer *w, struct mig_error *err)
{
	struct gic_dev *g = container_of(d, struct gic_dev, core);

	if (d->state != GIC_SAVED)
		return mig_error_set(err, -EINVAL, "gic: save in state %s (needs saved)",
				     mig_device_state_name(d));
	return w->write(w, g->saved.data, g->saved.len, err);
}

/* Validated whole before the first attribute is set. */
static int load(struct mig_device *d, struct mig_reader *rd, struct mig_error *err)
{
	struct gic_dev *g = container_of(d, struct gic_dev, core);
	uint64_t n = rd->remaining(rd);
	_cleanup_free_ uint8_t *p = NULL;
	_cleanup_free_ struct gic_img *m = NULL;
	int r;

	if (d->state != GIC_RESTORING)
		return mig_error_set(err, -EINVAL, "gic: load in state %s (needs restoring)",
				     mig_device_state_name(d));
	if (n > sizeof(struct gic_img) + 64)
		return mig_error_set(err, -EFBIG, "gic: a state of %llu bytes",
				     (unsigned long long)n);
	p = malloc(n ? n : 1);
	m = calloc(1, sizeof(*m));
	if (!p || !m)
		return mig_error_set(err, -ENOMEM, "out of memory");
	r = rd->read(rd, p, (size_t)n, err);
	if (r >= 0)
		r = parse(g, p, (size_t)n, m, err);
	if (r >= 0)
		r = write_vgic(g, m, err);
	if (r >= 0)
		r = write_its(g, m, err);
	if (r >= 0) {
		/* what the source forwarded is forwarded here, at the start */
		for (unsigned i = 0; i < m->nr_vlpis; i++)
			g->cfg.vlpis[find_vlpi(g, m->vlpi[i])].wanted = true;
		d->bytes = n;
	}
	return r;
}

static uint64_t final_size(struct mig_device *d)
{
	struct gic_dev *g = container_of(d, struct gic_dev, core);
	struct gic_img m = { .nr_vcpus = g->cfg.nr_vcpus, .nr_irqs = g->cfg.nr_irqs,
			     .nr_its = g->cfg.nr_its, .nr_vlpis = g->cfg.nr_vlpis };
	struct cursor c = { 0 };

	walk_head(&c, &m);
	walk_body(&c, &m);
	return c.off;
}

/* Pages its save wrote, where the backend knows them (a sim's); the
 * kernel's writes are in KVM's own dirty log. */
static int dirty_sync(struct mig_device *d, uint64_t *bitmap, uint64_t *ret_count,
		      struct mig_error *err)
{
	struct gic_dev *g = container_of(d, struct gic_dev, core);
	int r;

	*ret_count = 0;
	if (!g->be->dirty_sync)
		return 0;
	r = g->be->dirty_sync(g, bitmap, ret_count);
	if (r < 0)
		return mig_error_set(err, r, "gic: reading the pages it wrote: %s", strerror(-r));
	return 0;
}

/* ---- what a destination must have ---- */

struct gic_desc {
	uint32_t version;         /* 3: a vgic-v3 */
	uint32_t nr_vcpus;
	uint32_t nr_irqs;
	uint32_t nr_its;
	uint32_t its_rev[GIC_ITS_MAX];
	uint32_t v4;              /* enum gic_v4 of the source host */
	uint32_t nr_vlpis;        /* LPIs the guest has direct injection of */
};

/* Its words between the host's order and the little-endian it travels in. */
static void desc_le(struct gic_desc *d)
{
	uint32_t *w = (uint32_t *)d;

	_Static_assert(sizeof(*d) % 4 == 0, "gic_desc is u32 words");
	for (size_t i = 0; i < sizeof(*d) / 4; i++)
		w[i] = htole32(w[i]);
}

static int its_rev(struct gic_dev *g, unsigned its, uint32_t *ret, struct mig_error *err)
{
	uint64_t iidr = 0;
	int r = its_reg(g, its, false, GITS_IIDR, &iidr, err);

	*ret = (uint32_t)((iidr >> GITS_IIDR_REV_SHIFT) & GITS_IIDR_REV_MASK);
	return r;
}

static int describe(struct mig_device *d, struct mig_buf *out, struct mig_error *err)
{
	struct gic_dev *g = container_of(d, struct gic_dev, core);
	struct gic_desc desc = {
		.version = 3, .nr_vcpus = g->cfg.nr_vcpus, .nr_irqs = g->cfg.nr_irqs,
		.nr_its = g->cfg.nr_its, .v4 = g->cfg.v4,
	};

	memcpy(desc.its_rev, g->its_rev, sizeof(desc.its_rev));
	for (unsigned i = 0; i < g->cfg.nr_vlpis; i++)
		desc.nr_vlpis += g->cfg.vlpis[i].wanted;
	desc_le(&desc);
	if (mig_buf_append(out, &desc, sizeof(desc)) < 0)
		return mig_error_set(err, -ENOMEM, "out of memory");
	return 0;
}

static const char *v4_name(uint32_t v4)
{
	return v4 == GIC_V4_1 ? "GICv4.1" : v4 == GIC_V4_0 ? "GICv4.0" : "no GICv4";
}

static int check(struct mig_device *d, const void *p, size_t n, struct mig_error *err)
{
	struct gic_dev *g = container_of(d, struct gic_dev, core);
	struct gic_desc s;

	if (n != sizeof(s))
		return mig_error_set(err, -EPROTO, "gic: a description of %zu bytes (%zu expected)",
				     n, sizeof(s));
	memcpy(&s, p, sizeof(s));
	desc_le(&s);
	if (s.version != 3)
		return mig_error_set(err, -ENOTSUP, "gic: the source's GIC is a version %u; this "
				     "host's is a vgic-v3: migrate between hosts with the same GIC "
				     "version", s.version);
	if (s.nr_irqs > g->cfg.nr_irqs)
		return mig_error_set(err, -ENOTSUP, "gic: the source's GIC has %u interrupts, this "
				     "one %u: give the destination VM at least as many", s.nr_irqs,
				     g->cfg.nr_irqs);
	if (s.nr_vcpus != g->cfg.nr_vcpus || s.nr_its != g->cfg.nr_its)
		return mig_error_set(err, -ENOTSUP, "gic: the source has %u redistributors and %u "
				     "ITSes, this VM %u and %u", s.nr_vcpus, s.nr_its,
				     g->cfg.nr_vcpus, g->cfg.nr_its);
	for (unsigned i = 0; i < s.nr_its && i < GIC_ITS_MAX; i++) {
		/* a fresh ITS reads as the newest revision its kernel knows */
		uint32_t rev = g->its_rev[i];

		if (s.its_rev[i] > rev)
			return mig_error_set(err, -ENOTSUP, "gic: ITS %u saves its tables in ABI "
					     "revision %u; this host's kernel reads up to revision %u: "
					     "use a destination kernel at least as new as the source's",
					     i, s.its_rev[i], rev);
	}
	/* a source that forwards LPIs needs at least its own direct injection
	 * here; on GICv4.1 the VLPIs' pending state moves in the tables */
	if (s.nr_vlpis && g->cfg.v4 < s.v4)
		return mig_error_set(err, -ENOTSUP, "gic: the source forwards %u LPIs to the guest "
				     "with %s; this host has %s: choose a destination with %s "
				     "(or take the device's interrupts off direct injection)",
				     s.nr_vlpis, v4_name(s.v4), v4_name(g->cfg.v4), v4_name(s.v4));
	return 0;
}

/*
 * Its place in each stage.  Source: VLPIs go to software while the vCPUs
 * still run (after the devices stopped initiating P2P at 0, before the
 * vCPUs pause at 10); the save, which writes guest RAM, is walked before
 * the final dirty sync, after every vCPU and device stopped; a rollback
 * forwards again before any device or vCPU runs.  Destination: loaded
 * after RAM and before the vCPUs' registers; forwarding starts first at
 * the start, before the devices may raise an interrupt (5) and the vCPUs
 * run (30).
 */
static const struct mig_stage_step steps[] = {
	{ MIG_STAGE_QUIESCE, 5, GIC_QUIESCED },
	{ MIG_STAGE_SAVE, 5, GIC_SAVED },
	{ MIG_STAGE_RELEASE, 25, GIC_DEAD },
	{ MIG_STAGE_ROLLBACK, 10, GIC_RUNNING },
	{ MIG_STAGE_LOAD, 15, GIC_RESTORED },
	{ MIG_STAGE_START, 2, GIC_RUNNING },
	{ MIG_STAGE_DISCARD, 25, GIC_DEAD },
};

static const struct mig_device_ops ops = {
	.step = step, .save = save, .load = load, .final_size = final_size,
};
static const struct mig_dirty_ops dirty_ops = { .sync = dirty_sync };
static const struct mig_compat_ops compat_ops = { .describe = describe, .check = check };
static const char *const note_names[] = { "vlpi-software" };

const struct mig_device_class gic_class = {
	.id = MIG_DEV_GIC, .name = "gic", .version = 1,
	.no_postcopy = "its ITS reads its tables from guest RAM in the kernel as it loads, "
		       "before any page could be asked for",
	.nr_states = GIC_ST_N, .state_names = state_names, .arcs = arcs,
	.steps = steps, .nr_steps = ARRAY_SIZE(steps),
	.load_state = GIC_RESTORING, .fail_state = GIC_FAILED,
	.save_writes_ram = true,
	.ops = &ops, .dirty_ops = &dirty_ops, .compat_ops = &compat_ops,
	.note_names = note_names, .nr_notes = ARRAY_SIZE(note_names),
};

int gic_dev_init(struct gic_dev *g, const struct gic_config *cfg, const struct gic_backend *be,
		 void *be_data, int state, struct mig_error *err)
{
	memset(g, 0, sizeof(*g));
	if (!cfg->nr_vcpus || cfg->nr_vcpus > GIC_VCPUS_MAX)
		return mig_error_set(err, -EINVAL, "gic: %u vCPUs (1 to %u)", cfg->nr_vcpus,
				     GIC_VCPUS_MAX);
	if (cfg->nr_irqs < 64 || cfg->nr_irqs > GIC_IRQS_MAX || cfg->nr_irqs % 32)
		return mig_error_set(err, -EINVAL, "gic: %u interrupts (a multiple of 32 from 64 "
				     "to %u)", cfg->nr_irqs, GIC_IRQS_MAX);
	if (cfg->nr_its > GIC_ITS_MAX || cfg->nr_vlpis > GIC_VLPIS_MAX)
		return mig_error_set(err, -EINVAL, "gic: %u ITSes and %u forwarded LPIs (at most "
				     "%u and %u)", cfg->nr_its, cfg->nr_vlpis, GIC_ITS_MAX,
				     GIC_VLPIS_MAX);
	for (unsigned i = 0; i < cfg->nr_vlpis; i++)
		if (cfg->vlpis[i].its >= cfg->nr_its)
			return mig_error_set(err, -EINVAL, "gic: forwarded LPI %u is on ITS %u, of "
					     "%u", i, cfg->vlpis[i].its, cfg->nr_its);
	g->cfg = *cfg;
	g->be = be;
	g->be_data = be_data;
	for (unsigned i = 0; i < cfg->nr_its; i++) {
		int r = its_rev(g, i, &g->its_rev[i], err);

		if (r < 0)
			return r;
	}
	mig_device_init(&g->core, &gic_class, 0, state);
	return 0;
}

void gic_dev_fini(struct gic_dev *g)
{
	mig_buf_free(&g->saved);
}
