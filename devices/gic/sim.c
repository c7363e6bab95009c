// SPDX-License-Identifier: MIT
/*
 * The GIC class's sim backend (sim.h): Linux 6.12's vGICv3, ITS and GICv4
 * rules, on tables in guest RAM.  Where a rule is the kernel's, the
 * function it comes from is named.
 */
#include <endian.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gic/sim.h"
#include "util.h"

#define PAGE 4096ULL
#define GENMASK64(h, l) ((~0ULL >> (63 - (h))) & ~((1ULL << (l)) - 1))
#define LPI_IDX(intid) ((intid) - GIC_LPI_BASE)

/* KVM's ITS table entries, ABI revision 0 (vgic-its.c): 8 bytes, LE */
#define DTE_VALID       (1ULL << 63)
#define DTE_NEXT_SHIFT  49
#define DTE_NEXT_MASK   GENMASK64(62, 49)
#define DTE_ITT_SHIFT   5
#define DTE_ITT_MASK    GENMASK64(48, 5)
#define DTE_SIZE_MASK   0x1fULL
#define ITE_NEXT_SHIFT  48
#define ITE_PINTID_SHIFT 16
#define ITE_PINTID_MASK GENMASK64(47, 16)
#define CTE_VALID       (1ULL << 63)
#define CTE_RDBASE_SHIFT 16
#define CTE_RDBASE_MASK GENMASK64(51, 16)

/* KVM's IIDRs: implementer ARM, product 'K' */
#define GICD_IIDR_KVM   (0x4bU << 24 | 3U << 12 | 0x43bU)
#define GITS_IIDR_KVM   (0x4bULL << 24 | 0x43bULL)

enum { ICC_I_SRE, ICC_I_CTLR, ICC_I_IGRPEN0, ICC_I_IGRPEN1, ICC_I_PMR, ICC_I_BPR0, ICC_I_BPR1,
       ICC_I_AP0R0, ICC_I_AP1R0, ICC_I_N };

/* ---- guest RAM ---- */

static uint8_t *gpa_ptr(struct gic_sim *s, uint64_t gpa, uint64_t n)
{
	if (gpa < s->o.ram_gpa || gpa - s->o.ram_gpa > s->o.ram_bytes ||
	    n > s->o.ram_bytes - (gpa - s->o.ram_gpa))
		return NULL;
	return s->o.ram + (gpa - s->o.ram_gpa);
}

static void mark(struct gic_sim *s, uint64_t gpa, uint64_t n)
{
	for (uint64_t p = (gpa - s->o.ram_gpa) / PAGE; p <= (gpa - s->o.ram_gpa + n - 1) / PAGE; p++)
		s->dirty[p / 64] |= 1ULL << (p % 64);
}

static int rd64(struct gic_sim *s, uint64_t gpa, uint64_t *v)
{
	uint8_t *p = gpa_ptr(s, gpa, 8);

	if (!p)
		return -EFAULT;
	memcpy(v, p, 8);
	*v = le64toh(*v);
	return 0;
}

static int wr64(struct gic_sim *s, uint64_t gpa, uint64_t v)
{
	uint8_t *p = gpa_ptr(s, gpa, 8);

	if (!p)
		return -EFAULT;
	v = htole64(v);
	memcpy(p, &v, 8);
	mark(s, gpa, 8);
	return 0;
}

/* ---- LPIs ---- */

static struct gic_sim_lpi *lpi_of(struct gic_sim *s, uint32_t intid)
{
	return intid >= GIC_LPI_BASE && LPI_IDX(intid) < GIC_SIM_LPIS ? &s->lpi[LPI_IDX(intid)]
								    : NULL;
}

static uint64_t prop_gpa(struct gic_sim *s)
{
	/* KVM keeps one PROPBASER for the VM (dist->propbaser) */
	return s->rd[0].propbaser & GENMASK64(51, 12);
}

static uint64_t pend_gpa(struct gic_sim *s, unsigned vcpu)
{
	return s->rd[vcpu].pendbaser & GENMASK64(51, 16);
}

/* The guest's CPU interface takes it: its count in guest RAM goes up. */
static void take(struct gic_sim *s, uint32_t intid)
{
	uint64_t gpa = s->o.area_gpa + GIC_SIM_COUNT_OFF + 4ULL * LPI_IDX(intid);
	uint8_t *p = gpa_ptr(s, gpa, 4);
	uint32_t n;

	if (!p)
		return;
	memcpy(&n, p, 4);
	n++;
	memcpy(p, &n, 4);
	mark(s, gpa, 4);
	s->delivered++;
}

/* update_lpi_config(): the LPI's byte in the configuration table, read
 * when it is mapped, invalidated or restored (the kernel caches it). */
static int read_config(struct gic_sim *s, struct gic_sim_lpi *l, uint32_t intid)
{
	uint8_t *cfg = gpa_ptr(s, prop_gpa(s) + LPI_IDX(intid), 1);

	if (!cfg)
		return -EFAULT;
	l->enabled = *cfg & 1;
	return 0;
}

static bool lpi_enabled(struct gic_sim *s, uint32_t intid, unsigned vcpu)
{
	return s->lpi[LPI_IDX(intid)].enabled && (s->rd[vcpu].ctlr & GICR_CTLR_ENABLE_LPIS) &&
	       (s->rd[vcpu].icc[ICC_I_IGRPEN1] & 1);
}

static unsigned deliver_locked(struct gic_sim *s)
{
	unsigned n = 0;

	if (!s->running || s->masked)
		return 0;
	for (unsigned i = 0; i < GIC_SIM_LPIS; i++) {
		struct gic_sim_lpi *l = &s->lpi[i];
		uint32_t intid = GIC_LPI_BASE + i;

		if (l->hw && l->vpt) {          /* a resident vPE takes its VLPIs */
			l->vpt = false;
			take(s, intid);
			n++;
		}
		if (l->mapped && l->pending && lpi_enabled(s, intid, l->vcpu)) {
			l->pending = false;
			take(s, intid);
			n++;
		}
	}
	return n;
}

/* ---- the ITS: translation and commands ---- */

static struct gic_sim_ite *ite_of(struct gic_sim *s, unsigned its, uint32_t devid, uint32_t event)
{
	struct gic_sim_its *t = &s->its[its];

	if (its >= s->o.nr_its || devid >= GIC_SIM_DEVICES || !t->dev[devid].valid ||
	    event >= GIC_SIM_EVENTS || !t->dev[devid].ite[event].valid)
		return NULL;
	return &t->dev[devid].ite[event];
}

static void unmap_ite(struct gic_sim *s, struct gic_sim_ite *e)
{
	struct gic_sim_lpi *l = lpi_of(s, e->lpi);

	/* its_free_ite(): a forwarded LPI is unmapped first, losing its VPT */
	if (l) {
		if (l->hw && l->vpt)
			s->vlpis_discarded++;
		*l = (struct gic_sim_lpi){ 0 };
	}
	e->valid = false;
}

static void map_ite(struct gic_sim *s, unsigned its, uint32_t devid, uint32_t event,
		    uint32_t intid, uint16_t icid)
{
	struct gic_sim_its *t = &s->its[its];
	struct gic_sim_lpi *l = lpi_of(s, intid);

	if (devid >= GIC_SIM_DEVICES || !t->dev[devid].valid || event >= GIC_SIM_EVENTS ||
	    event >= 1U << t->dev[devid].bits || !l || icid >= GIC_SIM_DEVICES ||
	    !t->coll[icid].valid) {
		t->cmd_errors++;
		return;
	}
	t->dev[devid].ite[event] = (struct gic_sim_ite){ .valid = true, .lpi = intid, .icid = icid };
	l->mapped = true;
	l->vcpu = t->coll[icid].vcpu;
	if (read_config(s, l, intid) < 0)
		t->cmd_errors++;
}

static void run_cmd(struct gic_sim *s, unsigned its, const uint64_t c[4])
{
	struct gic_sim_its *t = &s->its[its];
	uint32_t devid = (uint32_t)(c[0] >> 32), event = (uint32_t)c[1];
	struct gic_sim_ite *e = ite_of(s, its, devid, event);
	struct gic_sim_lpi *l = e ? lpi_of(s, e->lpi) : NULL;

	switch (c[0] & 0xff) {
	case GITS_CMD_MAPD:
		if (devid >= GIC_SIM_DEVICES) {
			t->cmd_errors++;
			break;
		}
		for (unsigned k = 0; k < GIC_SIM_EVENTS; k++)
			if (t->dev[devid].ite[k].valid)
				unmap_ite(s, &t->dev[devid].ite[k]);
		t->dev[devid].valid = c[2] >> 63;
		t->dev[devid].itt = c[2] & GENMASK64(51, 8);
		t->dev[devid].bits = (uint32_t)(c[1] & 0x1f) + 1;
		break;
	case GITS_CMD_MAPC: {
		uint32_t icid = (uint32_t)(c[2] & 0xffff), rd = (uint32_t)((c[2] >> 16) & 0xffffffff);

		if (icid >= GIC_SIM_DEVICES || rd >= s->o.nr_vcpus) {
			t->cmd_errors++;
			break;
		}
		t->coll[icid].valid = c[2] >> 63;
		t->coll[icid].vcpu = rd;
		break;
	}
	case GITS_CMD_MAPTI:
		map_ite(s, its, devid, event, (uint32_t)(c[1] >> 32), (uint16_t)c[2]);
		break;
	case GITS_CMD_MAPI:
		map_ite(s, its, devid, event, event, (uint16_t)c[2]);
		break;
	case GITS_CMD_DISCARD:
		if (e)
			unmap_ite(s, e);
		else
			t->cmd_errors++;
		break;
	case GITS_CMD_INT:
		if (l && l->hw)
			l->vpt = true;     /* process() delivers it to a resident vPE */
		else if (l)
			l->pending = true;
		else
			t->cmd_errors++;
		break;
	case GITS_CMD_CLEAR:
		if (l)
			l->pending = false;
		break;
	case GITS_CMD_INV:
		if (l)
			read_config(s, l, e->lpi);
		break;
	default:   /* INVALL, SYNC, MOVI...: nothing the sim keeps */
		break;
	}
}

static uint64_t cmdq_size(const struct gic_sim_its *t)
{
	return ((t->cbaser & 0xff) + 1) * PAGE;
}

/* vgic_its_process_commands(): nothing while the ITS is disabled. */
static void process(struct gic_sim *s, unsigned its)
{
	struct gic_sim_its *t = &s->its[its];
	uint64_t base = t->cbaser & GENMASK64(51, 12);

	if (!t->enabled || !(t->cbaser & GITS_CBASER_VALID))
		return;
	while (t->creadr != t->cwriter) {
		uint64_t c[4];
		bool ok = true;

		for (unsigned k = 0; k < 4; k++)
			ok &= rd64(s, base + t->creadr + 8 * k, &c[k]) == 0;
		if (ok)
			run_cmd(s, its, c);
		else
			t->cmd_errors++;
		t->creadr = (t->creadr + GITS_CMD_SIZE) % cmdq_size(t);
	}
	deliver_locked(s);
}

/* ---- ITS tables: save (vgic_its_save_tables_v0) and restore ---- */

static int save_tables(struct gic_sim *s, unsigned its)
{
	struct gic_sim_its *t = &s->its[its];
	uint64_t dt = t->baser[0] & GENMASK64(47, 16), ct = t->baser[1] & GENMASK64(47, 16);
	int prev = -1, r;

	if (t->baser[0] & GITS_BASER_VALID) {
		for (unsigned d = 0; d < GIC_SIM_DEVICES; d++) {
			int prev_e = -1;

			if (!t->dev[d].valid)
				continue;
			/* the device's ITT, each entry with the offset to the next */
			for (unsigned e = 0; e < GIC_SIM_EVENTS; e++) {
				struct gic_sim_ite *x = &t->dev[d].ite[e];
				struct gic_sim_lpi *l = lpi_of(s, x->lpi);

				if (!x->valid)
					continue;
				if (l && l->hw && s->o.v4 != GIC_V4_1)
					return -EACCES;   /* vgic_its_save_itt() */
				if (prev_e >= 0) {
					struct gic_sim_ite *p = &t->dev[d].ite[prev_e];
					uint64_t v = (uint64_t)(e - (unsigned)prev_e) << ITE_NEXT_SHIFT |
						     (uint64_t)p->lpi << ITE_PINTID_SHIFT | p->icid;

					r = wr64(s, t->dev[d].itt + 8ULL * (unsigned)prev_e, v);
					if (r < 0)
						return r;
				}
				prev_e = (int)e;
			}
			if (prev_e >= 0) {
				struct gic_sim_ite *p = &t->dev[d].ite[prev_e];

				r = wr64(s, t->dev[d].itt + 8ULL * (unsigned)prev_e,
					 (uint64_t)p->lpi << ITE_PINTID_SHIFT | p->icid);
				if (r < 0)
					return r;
			}
			if (prev >= 0) {
				r = wr64(s, dt + 8ULL * (unsigned)prev,
					 DTE_VALID | (uint64_t)(d - (unsigned)prev) << DTE_NEXT_SHIFT |
					 (t->dev[prev].itt >> 8) << DTE_ITT_SHIFT | (t->dev[prev].bits - 1));
				if (r < 0)
					return r;
			}
			prev = (int)d;
		}
		if (prev >= 0) {
			r = wr64(s, dt + 8ULL * (unsigned)prev, DTE_VALID |
				 (t->dev[prev].itt >> 8) << DTE_ITT_SHIFT | (t->dev[prev].bits - 1));
			if (r < 0)
				return r;
		}
	}
	if (t->baser[1] & GITS_BASER_VALID) {
		unsigned n = 0;

		for (unsigned c = 0; c < GIC_SIM_DEVICES; c++) {
			if (!t->coll[c].valid)
				continue;
			r = wr64(s, ct + 8ULL * n++, CTE_VALID |
				 (uint64_t)t->coll[c].vcpu << CTE_RDBASE_SHIFT | c);
			if (r < 0)
				return r;
		}
		/* an invalid entry ends the table */
		r = wr64(s, ct + 8ULL * n, 0);
		if (r < 0)
			return r;
	}
	return 0;
}

static void forget(struct gic_sim *s, unsigned its)
{
	struct gic_sim_its *t = &s->its[its];

	for (unsigned d = 0; d < GIC_SIM_DEVICES; d++)
		for (unsigned e = 0; e < GIC_SIM_EVENTS; e++)
			if (t->dev[d].ite[e].valid)
				unmap_ite(s, &t->dev[d].ite[e]);
	memset(t->dev, 0, sizeof(t->dev));
	memset(t->coll, 0, sizeof(t->coll));
}

/* vgic_v3_lpi_sync_pending_status(): the bit from the target's pending
 * table, which is then cleared in guest RAM ("consumed"). */
static int sync_pending(struct gic_sim *s, uint32_t intid)
{
	struct gic_sim_lpi *l = lpi_of(s, intid);
	uint64_t gpa = pend_gpa(s, l->vcpu) + intid / 8;
	uint8_t *p = gpa_ptr(s, gpa, 1);
	uint8_t bit = (uint8_t)(1U << (intid % 8));

	if (!p)
		return -EFAULT;
	l->pending = *p & bit;
	if (*p & bit) {
		*p &= (uint8_t)~bit;
		mark(s, gpa, 1);
	}
	return 0;
}

static int restore_tables(struct gic_sim *s, unsigned its)
{
	struct gic_sim_its *t = &s->its[its];
	uint64_t dt = t->baser[0] & GENMASK64(47, 16), ct = t->baser[1] & GENMASK64(47, 16);
	uint64_t v;
	int r;

	/* collections first: until the first invalid entry */
	for (unsigned n = 0; t->baser[1] & GITS_BASER_VALID && n < 65536 / 8; n++) {
		uint32_t icid, rd;

		r = rd64(s, ct + 8ULL * n, &v);
		if (r < 0)
			goto fail;
		if (!(v & CTE_VALID))
			break;
		icid = (uint32_t)(v & 0xffff);
		rd = (uint32_t)((v & CTE_RDBASE_MASK) >> CTE_RDBASE_SHIFT);
		r = -EINVAL;
		if (rd >= s->o.nr_vcpus || icid >= GIC_SIM_DEVICES)
			goto fail;
		r = -EEXIST;
		if (t->coll[icid].valid)
			goto fail;
		t->coll[icid].valid = true;
		t->coll[icid].vcpu = rd;
	}
	/* devices: a zero entry is skipped, a valid one says how far the next is */
	for (uint64_t d = 0; t->baser[0] & GITS_BASER_VALID && d < 65536 / 8;) {
		uint64_t next;

		r = rd64(s, dt + 8 * d, &v);
		if (r < 0)
			goto fail;
		if (!(v & DTE_VALID)) {
			d++;
			continue;
		}
		r = -EINVAL;
		if (d >= GIC_SIM_DEVICES)
			goto fail;
		t->dev[d].valid = true;
		t->dev[d].itt = ((v & DTE_ITT_MASK) >> DTE_ITT_SHIFT) << 8;
		t->dev[d].bits = (uint32_t)(v & DTE_SIZE_MASK) + 1;
		next = (v & DTE_NEXT_MASK) >> DTE_NEXT_SHIFT;
		for (uint64_t e = 0; e < (1ULL << t->dev[d].bits);) {
			uint64_t ev, en;
			uint32_t intid;
			uint16_t icid;

			r = rd64(s, t->dev[d].itt + 8 * e, &ev);
			if (r < 0)
				goto fail;
			intid = (uint32_t)((ev & ITE_PINTID_MASK) >> ITE_PINTID_SHIFT);
			if (!intid) {
				e++;
				continue;
			}
			icid = (uint16_t)ev;
			en = ev >> ITE_NEXT_SHIFT;
			r = -EINVAL;
			if (intid < GIC_LPI_BASE || !lpi_of(s, intid) || e >= GIC_SIM_EVENTS ||
			    icid >= GIC_SIM_DEVICES || !t->coll[icid].valid ||
			    e + en >= (1ULL << t->dev[d].bits))
				goto fail;
			map_ite(s, its, (uint32_t)d, (uint32_t)e, intid, icid);
			r = read_config(s, lpi_of(s, intid), intid);
			if (r >= 0)
				r = sync_pending(s, intid);
			if (r < 0)
				goto fail;
			if (!en)
				break;
			e += en;
		}
		if (!next)
			break;
		d += next;
	}
	return 0;
fail:
	/* all or nothing (what was consumed in guest RAM stays consumed) */
	forget(s, its);
	return r;
}

/* ---- attributes ---- */

static int vcpu_of(struct gic_sim *s, uint64_t attr)
{
	uint64_t aff = attr >> GIC_ATTR_MPIDR_SHIFT;

	for (unsigned i = 0; i < s->o.nr_vcpus; i++)
		if (gic_vcpu_affinity(i) == aff)
			return (int)i;
	return -EINVAL;
}

static int icc_slot(uint32_t enc, uint64_t ctlr)
{
	unsigned apr = ((ctlr >> ICC_CTLR_PRIBITS_SHIFT) & ICC_CTLR_PRIBITS_MASK) + 1 <= 5 ? 1 : 4;

	switch (enc) {
	case ICC_SRE_EL1: return ICC_I_SRE;
	case ICC_CTLR_EL1: return ICC_I_CTLR;
	case ICC_IGRPEN0_EL1: return ICC_I_IGRPEN0;
	case ICC_IGRPEN1_EL1: return ICC_I_IGRPEN1;
	case ICC_PMR_EL1: return ICC_I_PMR;
	case ICC_BPR0_EL1: return ICC_I_BPR0;
	case ICC_BPR1_EL1: return ICC_I_BPR1;
	}
	for (unsigned n = 0; n < 4; n++) {
		if (enc == ICC_AP0R_EL1(n))
			return n < apr ? ICC_I_AP0R0 : -EINVAL;
		if (enc == ICC_AP1R_EL1(n))
			return n < apr ? ICC_I_AP1R0 : -EINVAL;
	}
	return -ENXIO;
}

static int dist_attr(struct gic_sim *s, bool set, uint32_t off, uint32_t *v)
{
	switch (off) {
	case GICD_CTLR:
		if (set)
			s->gicd_ctlr = *v;
		else
			*v = s->gicd_ctlr;
		return 0;
	case GICD_IIDR:
		/* 6.12 keeps its revision whatever is written; other fields must match */
		if (set)
			return (*v ^ s->gicd_iidr) & ~(0xfU << 12) ? -EINVAL : 0;
		*v = s->gicd_iidr;
		return 0;
	case GICD_TYPER:
		if (!set)
			*v = (s->o.nr_irqs / 32 - 1) | 1U << 17 | 15U << 19;
		return 0;
	}
	if (off >= sizeof(s->dist))
		return 0;   /* unknown: RAZ/WI */
	if (set)
		s->dist[off / 4] = *v;
	else
		*v = s->dist[off / 4];
	return 0;
}

static int redist_attr(struct gic_sim *s, int cpu, bool set, uint32_t off, uint32_t *v)
{
	bool lpis = s->rd[cpu].ctlr & GICR_CTLR_ENABLE_LPIS;
	uint64_t *reg64 = NULL;

	switch (off & ~4U) {
	case GICR_PROPBASER:
		reg64 = &s->rd[0].propbaser;   /* one for the VM */
		break;
	case GICR_PENDBASER:
		reg64 = &s->rd[cpu].pendbaser;
		break;
	}
	if (reg64) {
		unsigned shift = off & 4 ? 32 : 0;

		if (!set) {
			*v = (uint32_t)(*reg64 >> shift);
		} else if (!lpis) {     /* vgic_mmio_write_propbase/pendbase */
			*reg64 &= ~(0xffffffffULL << shift);
			*reg64 |= (uint64_t)*v << shift;
		}
		return 0;
	}
	if (off == GICR_CTLR) {
		if (!set) {
			*v = s->rd[cpu].ctlr;
		} else {
			bool on = *v & GICR_CTLR_ENABLE_LPIS;

			s->rd[cpu].ctlr = *v;
			/* enabling LPIs syncs every LPI's pending bit from its table */
			if (on && !lpis)
				for (unsigned i = 0; i < GIC_SIM_LPIS; i++)
					if (s->lpi[i].mapped && s->lpi[i].vcpu == (unsigned)cpu)
						sync_pending(s, GIC_LPI_BASE + i);
		}
		return 0;
	}
	if (off >= GICR_SGI && off - GICR_SGI < sizeof(s->rd[cpu].sgi)) {
		if (set)
			s->rd[cpu].sgi[(off - GICR_SGI) / 4] = *v;
		else
			*v = s->rd[cpu].sgi[(off - GICR_SGI) / 4];
	}
	return 0;   /* anything else: RAZ/WI */
}

static int its_attr(struct gic_sim *s, unsigned its, bool set, uint32_t off, uint64_t *v)
{
	struct gic_sim_its *t = &s->its[its];

	switch (off) {
	case GITS_CTLR:
		if (!set) {
			*v = (t->enabled ? GITS_CTLR_ENABLE : 0) |
			     (t->creadr == t->cwriter ? GITS_CTLR_QUIESCENT : 0);
			return 0;
		}
		/* vgic_mmio_write_its_ctlr(): no enable without valid tables */
		if (!t->enabled && (*v & GITS_CTLR_ENABLE) &&
		    (!(t->baser[0] & GITS_BASER_VALID) || !(t->baser[1] & GITS_BASER_VALID) ||
		     !(t->cbaser & GITS_CBASER_VALID)))
			return 0;
		t->enabled = *v & GITS_CTLR_ENABLE;
		process(s, its);
		return 0;
	case GITS_IIDR:
		if (!set) {
			*v = GITS_IIDR_KVM | (uint64_t)t->abi_rev << GITS_IIDR_REV_SHIFT;
			return 0;
		}
		if (((*v >> GITS_IIDR_REV_SHIFT) & GITS_IIDR_REV_MASK) >= 1)
			return -EINVAL;
		t->abi_rev = 0;
		return 0;
	case GITS_TYPER:
		if (!set)
			*v = 1ULL | 7ULL << 4 | (uint64_t)(GIC_SIM_ID_BITS - 1) << 8 | 15ULL << 13;
		return 0;
	case GITS_CBASER:
		if (!set) {
			*v = t->cbaser;
		} else if (!t->enabled) {
			t->cbaser = *v & (GITS_CBASER_VALID | GENMASK64(51, 16) | 0xff);
			t->creadr = t->cwriter = 0;
		}
		return 0;
	case GITS_CREADR:
		if (!set) {
			*v = t->creadr;
			return 0;
		}
		if (t->enabled)
			return -EBUSY;
		if ((*v & GENMASK64(19, 5)) >= cmdq_size(t))
			return -EINVAL;
		t->creadr = *v & GENMASK64(19, 5);
		return 0;
	case GITS_CWRITER:
		if (!set) {
			*v = t->cwriter;
		} else if ((*v & GENMASK64(19, 5)) < cmdq_size(t)) {
			t->cwriter = *v & GENMASK64(19, 5);
			process(s, its);
		}
		return 0;
	}
	if (off >= GITS_BASER(0) && off < GITS_BASER(GITS_BASER_NR) && !(off % 8)) {
		unsigned n = (off - GITS_BASER(0)) / 8;
		/* type (device 1, collection 4), 8-byte entries, 64 KiB pages */
		uint64_t fixed = (n == 0 ? 1ULL : 4ULL) << 56 | 7ULL << 48 | 2ULL << 8;

		if (n > 1) {
			if (!set)
				*v = 0;
			return 0;
		}
		if (!set) {
			*v = t->baser[n];
		} else if (!t->enabled) {
			t->baser[n] = (*v & (GITS_BASER_VALID | GENMASK64(47, 16) | 0xff)) | fixed;
			if (!(*v & GITS_BASER_VALID))
				forget(s, its);   /* Valid=0 frees the lists */
		}
		return 0;
	}
	return -ENXIO;
}

static int sim_attr(struct gic_dev *g, int its, bool set, uint32_t group, uint64_t attr, void *val)
{
	struct gic_sim *s = g->be_data;
	int r = 0, cpu;

	pthread_mutex_lock(&s->lock);
	snprintf(s->journal[s->calls++ % ARRAY_SIZE(s->journal)], sizeof(s->journal[0]),
		 "%s%d:%u:%#llx", set ? "set" : "get", its, group, (unsigned long long)attr);
	if (its >= (int)s->o.nr_its) {
		r = -ENODEV;
	} else if (!(its < 0 ? s->init : s->its[its].init)) {
		r = -ENXIO;
	} else if (s->running && group != GIC_GRP_ADDR) {
		r = -EBUSY;   /* lock_all_vcpus() */
	} else if (its >= 0) {
		if (group == GIC_GRP_ITS_REGS)
			r = its_attr(s, (unsigned)its, set, (uint32_t)attr, val);
		else if (group == GIC_GRP_CTRL && attr == GIC_CTRL_ITS_SAVE_TABLES)
			r = save_tables(s, (unsigned)its);
		else if (group == GIC_GRP_CTRL && attr == GIC_CTRL_ITS_RESTORE_TABLES)
			r = restore_tables(s, (unsigned)its);
		else
			r = -ENXIO;
	} else {
		switch (group) {
		case GIC_GRP_DIST_REGS:
			r = dist_attr(s, set, (uint32_t)attr, val);
			break;
		case GIC_GRP_REDIST_REGS:
			cpu = vcpu_of(s, attr);
			r = cpu < 0 ? cpu : redist_attr(s, cpu, set, (uint32_t)attr, val);
			break;
		case GIC_GRP_CPU_SYSREGS:
			cpu = vcpu_of(s, attr);
			r = cpu < 0 ? cpu : icc_slot((uint32_t)attr & 0xffff, s->rd[cpu].icc[ICC_I_CTLR]);
			if (r >= 0 && set)
				s->rd[cpu].icc[r] = *(uint64_t *)val;
			else if (r >= 0)
				*(uint64_t *)val = s->rd[cpu].icc[r];
			r = r < 0 ? r : 0;
			break;
		case GIC_GRP_LEVEL_INFO: {
			uint32_t intid = (uint32_t)attr & 0x3ff;

			if ((attr >> GIC_LEVEL_INFO_SHIFT & 0x3fffff) != GIC_LEVEL_INFO_LINE_LEVEL ||
			    intid % 32)
				r = -EINVAL;
			else if (set)
				s->levels[intid / 32] = *(uint32_t *)val;
			else
				*(uint32_t *)val = s->levels[intid / 32];
			break;
		}
		case GIC_GRP_CTRL:
			if (attr != GIC_CTRL_SAVE_PENDING_TABLES) {
				r = -ENXIO;
				break;
			}
			/* vgic_v3_save_pending_tables(): on GICv4.1 the VPT is
			 * read with the vPEs unmapped; on 4.0 a forwarded LPI's
			 * bit is its software latch */
			for (unsigned i = 0; r >= 0 && i < GIC_SIM_LPIS; i++) {
				struct gic_sim_lpi *l = &s->lpi[i];
				uint32_t intid = GIC_LPI_BASE + i;
				bool pending = l->pending || (l->hw && l->vpt && s->o.v4 == GIC_V4_1);
				uint64_t gpa;
				uint8_t *p;

				if (!l->mapped)
					continue;
				gpa = pend_gpa(s, l->vcpu) + intid / 8;
				p = gpa_ptr(s, gpa, 1);
				if (!p) {
					r = -EFAULT;
					break;
				}
				if (!!(*p & (1U << (intid % 8))) == pending)
					continue;
				*p ^= (uint8_t)(1U << (intid % 8));
				mark(s, gpa, 1);
			}
			break;
		default:
			r = -ENXIO;
		}
	}
	pthread_mutex_unlock(&s->lock);
	return r;
}

/* kvm_vgic_v4_set_forwarding() and _unset_forwarding(). */
static int sim_forward(struct gic_dev *g, struct gic_vlpi *v, bool on)
{
	struct gic_sim *s = g->be_data;
	struct gic_sim_lpi *l;
	uint32_t intid;

	pthread_mutex_lock(&s->lock);
	intid = v->its < s->o.nr_its && s->its[v->its].enabled ?
		gic_sim_translate(s, v->its, v->devid, v->event) : 0;
	l = intid ? lpi_of(s, intid) : NULL;
	if (on && l && s->o.v4 != GIC_V4_NONE && !l->hw &&
	    (s->rd[l->vcpu].ctlr & GICR_CTLR_ENABLE_LPIS)) {
		l->hw = true;
		if (l->pending) {   /* the transfer: an INT on the VLPI */
			l->pending = false;
			l->vpt = true;
		}
		deliver_locked(s);
	} else if (!on && l && l->hw) {
		l->hw = false;
		if (l->vpt) {       /* DISCARD: never read back */
			l->vpt = false;
			s->vlpis_discarded++;
		}
	}
	/* a failed bypass is reported to no one: the irqfd injects in software */
	pthread_mutex_unlock(&s->lock);
	return 0;
}

static int sim_inject(struct gic_dev *g, struct gic_vlpi *v)
{
	return gic_sim_msi(g->be_data, v->its, v->devid, v->event) < 0 ? -EBUSY : 0;
}

static int sim_dirty_sync(struct gic_dev *g, uint64_t *bitmap, uint64_t *ret_count)
{
	struct gic_sim *s = g->be_data;
	uint64_t words = DIV_ROUND_UP(s->o.ram_bytes / PAGE, 64), n = 0;

	pthread_mutex_lock(&s->lock);
	for (uint64_t i = 0; i < words; i++) {
		n += (uint64_t)__builtin_popcountll(s->dirty[i] & ~bitmap[i]);
		bitmap[i] |= s->dirty[i];
		s->dirty[i] = 0;
	}
	pthread_mutex_unlock(&s->lock);
	*ret_count = n;
	return 0;
}

const struct gic_backend gic_sim_backend = {
	.name = "sim", .attr = sim_attr, .forward = sim_forward, .inject = sim_inject,
	.dirty_sync = sim_dirty_sync,
};

/* ---- the sim's own API ---- */

int gic_sim_init(struct gic_sim *s, const struct gic_sim_opts *o, struct mig_error *err)
{
	memset(s, 0, sizeof(*s));
	if (o->nr_vcpus > GIC_SIM_VCPUS_MAX || o->nr_its > GIC_ITS_MAX || !o->ram ||
	    o->area_gpa % 0x10000 || o->area_gpa < o->ram_gpa ||
	    o->area_gpa - o->ram_gpa + GIC_SIM_AREA > o->ram_bytes)
		return mig_error_set(err, -EINVAL, "gic sim: %u vCPUs (at most %u), %u ITSes, its "
				     "area at %#llx in RAM of %llu bytes", o->nr_vcpus,
				     GIC_SIM_VCPUS_MAX, o->nr_its, (unsigned long long)o->area_gpa,
				     (unsigned long long)o->ram_bytes);
	s->o = *o;
	s->dirty = calloc(DIV_ROUND_UP(o->ram_bytes / PAGE, 64), 8);
	if (!s->dirty)
		return mig_error_set(err, -ENOMEM, "out of memory");
	pthread_mutex_init(&s->lock, NULL);
	s->gicd_iidr = GICD_IIDR_KVM;
	for (unsigned i = 0; i < GIC_VCPUS_MAX; i++) {
		s->rd[i].icc[ICC_I_SRE] = 7;
		s->rd[i].icc[ICC_I_CTLR] = 4ULL << ICC_CTLR_PRIBITS_SHIFT;   /* 5 priority bits */
	}
	return 0;
}

void gic_sim_fini(struct gic_sim *s)
{
	if (!s->dirty)
		return;
	free(s->dirty);
	s->dirty = NULL;
	pthread_mutex_destroy(&s->lock);
}

int gic_sim_create(struct gic_sim *s)
{
	pthread_mutex_lock(&s->lock);
	s->init = true;
	for (unsigned i = 0; i < s->o.nr_its; i++)
		s->its[i].init = true;
	pthread_mutex_unlock(&s->lock);
	return 0;
}

void gic_sim_set_running(struct gic_sim *s, bool on)
{
	pthread_mutex_lock(&s->lock);
	s->running = on;
	deliver_locked(s);
	pthread_mutex_unlock(&s->lock);
}

void gic_sim_set_masked(struct gic_sim *s, bool on)
{
	pthread_mutex_lock(&s->lock);
	s->masked = on;
	deliver_locked(s);
	pthread_mutex_unlock(&s->lock);
}

unsigned gic_sim_deliver(struct gic_sim *s)
{
	unsigned n;

	pthread_mutex_lock(&s->lock);
	n = deliver_locked(s);
	pthread_mutex_unlock(&s->lock);
	return n;
}

uint32_t gic_sim_delivered(const struct gic_sim *s, uint32_t intid)
{
	uint32_t n = 0;

	if (intid >= GIC_LPI_BASE && LPI_IDX(intid) < GIC_SIM_LPIS)
		memcpy(&n, s->o.ram + (s->o.area_gpa - s->o.ram_gpa) + GIC_SIM_COUNT_OFF +
		       4ULL * LPI_IDX(intid), 4);
	return n;
}

uint32_t gic_sim_translate(struct gic_sim *s, unsigned its, uint32_t devid, uint32_t event)
{
	struct gic_sim_ite *e = ite_of(s, its, devid, event);

	return e ? e->lpi : 0;
}

bool gic_sim_lpi_forwarded(struct gic_sim *s, uint32_t intid)
{
	struct gic_sim_lpi *l = lpi_of(s, intid);
	bool hw;

	pthread_mutex_lock(&s->lock);
	hw = l && l->hw;
	pthread_mutex_unlock(&s->lock);
	return hw;
}

static int msi_locked(struct gic_sim *s, unsigned its, uint32_t devid, uint32_t event)
{
	uint32_t intid;
	struct gic_sim_lpi *l;

	s->msis++;
	if (its >= s->o.nr_its || !s->its[its].enabled) {
		s->msis_dropped++;
		return -EBUSY;
	}
	intid = gic_sim_translate(s, its, devid, event);
	l = intid ? lpi_of(s, intid) : NULL;
	if (!l) {
		s->msis_dropped++;
		return 0;
	}
	if (!(s->rd[l->vcpu].ctlr & GICR_CTLR_ENABLE_LPIS)) {
		s->msis_dropped++;
		return -EBUSY;
	}
	if (l->hw) {               /* a physical INT: into the VPT */
		l->vpt = true;
		s->vlpis_direct++;
	} else {
		l->pending = true;
	}
	deliver_locked(s);
	return 1;
}

int gic_sim_msi(struct gic_sim *s, unsigned its, uint32_t devid, uint32_t event)
{
	int r;

	pthread_mutex_lock(&s->lock);
	r = msi_locked(s, its, devid, event);
	pthread_mutex_unlock(&s->lock);
	return r;
}

/* A guest's MMIO write of an ITS or redistributor register: the same
 * rules as the attribute, without the vCPU lock (the vCPU is the writer). */
static void guest_its(struct gic_sim *s, unsigned its, uint32_t off, uint64_t v)
{
	its_attr(s, its, true, off, &v);
}

int gic_sim_guest_cmd(struct gic_sim *s, unsigned its, const uint64_t cmd[4])
{
	struct gic_sim_its *t = &s->its[its];
	uint64_t base = t->cbaser & GENMASK64(51, 12);
	int r = 0;

	pthread_mutex_lock(&s->lock);
	for (unsigned k = 0; r >= 0 && k < 4; k++)
		r = wr64(s, base + t->cwriter + 8 * k, cmd[k]);
	if (r >= 0)
		guest_its(s, its, GITS_CWRITER, (t->cwriter + GITS_CMD_SIZE) % cmdq_size(t));
	pthread_mutex_unlock(&s->lock);
	return r;
}

int gic_sim_guest_boot(struct gic_sim *s, unsigned nr_devices, unsigned nr_events,
		       struct mig_error *err)
{
	uint64_t area = s->o.area_gpa;
	unsigned nr_lpis = s->o.nr_its * nr_devices * nr_events;

	if (nr_lpis > GIC_SIM_LPIS || nr_devices > GIC_SIM_DEVICES || nr_events > GIC_SIM_EVENTS)
		return mig_error_set(err, -EINVAL, "gic sim: %u devices of %u events on %u ITSes: "
				     "more than %u LPIs", nr_devices, nr_events, s->o.nr_its,
				     GIC_SIM_LPIS);
	pthread_mutex_lock(&s->lock);
	memset(gpa_ptr(s, area, GIC_SIM_AREA), 0, GIC_SIM_AREA);
	mark(s, area, GIC_SIM_AREA);
	/* every LPI it uses: priority 0xa0, enabled */
	memset(gpa_ptr(s, area + GIC_SIM_PROP_OFF, nr_lpis), 0xa1, nr_lpis);
	for (unsigned i = 0; i < s->o.nr_vcpus; i++) {
		uint32_t lo;

		lo = (uint32_t)(area + GIC_SIM_PROP_OFF) | (GIC_SIM_ID_BITS - 1);
		redist_attr(s, (int)i, true, GICR_PROPBASER, &lo);
		lo = (uint32_t)(area + GIC_SIM_PEND_OFF + 0x10000ULL * i);
		redist_attr(s, (int)i, true, GICR_PENDBASER, &lo);
		lo = GICR_CTLR_ENABLE_LPIS;
		redist_attr(s, (int)i, true, GICR_CTLR, &lo);
		s->rd[i].icc[ICC_I_IGRPEN1] = 1;
		s->rd[i].icc[ICC_I_PMR] = 0xff;
	}
	for (unsigned t = 0; t < s->o.nr_its; t++) {
		uint64_t base = area + GIC_SIM_ITS_OFF + GIC_SIM_ITS_SIZE * t;

		guest_its(s, t, GITS_CBASER, GITS_CBASER_VALID | (base + GIC_SIM_ITS_CMDQ) | 15);
		guest_its(s, t, GITS_BASER(0), GITS_BASER_VALID | (base + GIC_SIM_ITS_DT));
		guest_its(s, t, GITS_BASER(1), GITS_BASER_VALID | (base + GIC_SIM_ITS_CT));
		guest_its(s, t, GITS_CTLR, GITS_CTLR_ENABLE);
	}
	pthread_mutex_unlock(&s->lock);
	for (unsigned t = 0; t < s->o.nr_its; t++) {
		uint64_t itt = area + GIC_SIM_ITS_OFF + GIC_SIM_ITS_SIZE * t + GIC_SIM_ITS_ITT;

		for (unsigned i = 0; i < s->o.nr_vcpus; i++) {
			const uint64_t mapc[4] = { GITS_CMD_MAPC, 0, 1ULL << 63 | (uint64_t)i << 16 | i };

			gic_sim_guest_cmd(s, t, mapc);
		}
		for (unsigned d = 0; d < nr_devices; d++) {
			const uint64_t mapd[4] = { GITS_CMD_MAPD | (uint64_t)d << 32, 4,
						   1ULL << 63 | (itt + 256ULL * d) };

			gic_sim_guest_cmd(s, t, mapd);
			for (unsigned e = 0; e < nr_events; e++) {
				uint32_t intid = GIC_LPI_BASE + (t * nr_devices + d) * nr_events + e;
				const uint64_t mapti[4] = { GITS_CMD_MAPTI | (uint64_t)d << 32,
							    e | (uint64_t)intid << 32,
							    intid % s->o.nr_vcpus };

				gic_sim_guest_cmd(s, t, mapti);
			}
		}
		const uint64_t sync[4] = { GITS_CMD_SYNC };

		gic_sim_guest_cmd(s, t, sync);
		if (s->its[t].cmd_errors)
			return mig_error_set(err, -EIO, "gic sim: ITS %u: %llu commands failed", t,
					     (unsigned long long)s->its[t].cmd_errors);
	}
	return 0;
}
