// SPDX-License-Identifier: MIT
/*
 * The GIC class (devices/gic/) on its sim backend: a source and a
 * destination GIC on their own guest RAM, the class's steps taken by hand
 * in the order the engines take them, and what the guest saw checked from
 * its own counts in guest RAM.
 *
 *   - LPIs raised while the vCPUs were stopped are taken on the
 *     destination exactly once, and the ITS translates there;
 *   - the destination's calls follow KERNEL-UAPI §6.4 (read back from the
 *     sim's journal);
 *   - what the kernel refuses is refused with a message: a running vCPU,
 *     a corrupted ITS table, a malformed state (before anything is set),
 *     a destination that cannot take the GIC;
 *   - GICv4: on 4.1 a VLPI pending in its VPT moves in the tables and is
 *     forwarded again after the restore; on 4.0 a declared VLPI is taken
 *     off direct injection and raised once in software (never lost), an
 *     undeclared one makes the ITS save fail with EACCES.
 *
 * No KVM needed.  The engine-level order (the save before the final dirty
 * sync) is in test-engine.c.
 */
#include <criterion/criterion.h>
#include <endian.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <migrate/device.h>

#include "gic/gic.h"
#include "gic/sim.h"
#include "util.h"

#define RAM_BYTES (8ULL << 20)
#define RAM_GPA 0x40000000ULL
#define AREA_GPA (RAM_GPA + (4ULL << 20))
#define DEVS 2
#define EVENTS 4
#define LPIS (DEVS * EVENTS)

struct side {
	uint8_t *ram;
	struct gic_sim sim;
	struct gic_dev dev;
};

static void side_init_its(struct side *x, enum gic_v4 v4, int state, const struct gic_vlpi *vlpi,
			  unsigned nr_its)
{
	struct gic_sim_opts o = {
		.nr_vcpus = 2, .nr_irqs = 128, .nr_its = nr_its, .v4 = v4, .ram_gpa = RAM_GPA,
		.ram_bytes = RAM_BYTES, .its_base = { 0x08080000, 0x080a0000 },
		.area_gpa = AREA_GPA,
	};
	struct gic_config cfg = { .nr_vcpus = 2, .nr_irqs = 128, .nr_its = nr_its, .v4 = v4 };
	struct mig_error err = { 0 };

	x->ram = calloc(1, RAM_BYTES);
	cr_assert_not_null(x->ram);
	o.ram = x->ram;
	if (vlpi) {
		cfg.vlpis[0] = *vlpi;
		cfg.nr_vlpis = 1;
	}
	cr_assert_eq(gic_sim_init(&x->sim, &o, &err), 0, "%s", err.msg);
	cr_assert_eq(gic_sim_create(&x->sim), 0);
	cr_assert_eq(gic_dev_init(&x->dev, &cfg, &gic_sim_backend, &x->sim, state, &err), 0,
		     "%s", err.msg);
}

static void side_init(struct side *x, enum gic_v4 v4, int state, const struct gic_vlpi *vlpi)
{
	side_init_its(x, v4, state, vlpi, 1);
}

static void side_fini(struct side *x)
{
	gic_dev_fini(&x->dev);
	gic_sim_fini(&x->sim);
	free(x->ram);
}

static uint32_t lpi(unsigned dev, unsigned ev)
{
	return GIC_LPI_BASE + dev * EVENTS + ev;
}

/* A booted guest, running, that took one of each LPI. */
static void source_up(struct side *s, enum gic_v4 v4, const struct gic_vlpi *vlpi)
{
	struct mig_error err = { 0 };

	side_init(s, v4, GIC_CREATED, vlpi);
	cr_assert_eq(gic_sim_guest_boot(&s->sim, DEVS, EVENTS, &err), 0, "%s", err.msg);
	gic_sim_set_running(&s->sim, true);
	cr_assert_eq(mig_device_step(&s->dev.core, GIC_RUNNING, &err), 0, "%s", err.msg);
	if (vlpi) {
		/* a boot forwards nothing before the guest enables it */
		cr_assert(!gic_sim_lpi_forwarded(&s->sim, GIC_LPI_BASE + vlpi->devid * EVENTS +
						 vlpi->event));
		cr_assert_eq(gic_vlpi_enable(&s->dev, 0, &err), 0, "%s", err.msg);
	}
	for (unsigned d = 0; d < DEVS; d++)
		for (unsigned e = 0; e < EVENTS; e++)
			cr_assert_eq(gic_sim_msi(&s->sim, 0, d, e), 1);
	for (unsigned i = 0; i < LPIS; i++)
		cr_assert_eq(gic_sim_delivered(&s->sim, GIC_LPI_BASE + i), 1, "LPI %u taken", i);
}

/* The source's QUIESCE and SAVE steps, as the engine takes them: the GIC's
 * quiesce while the vCPUs run, then the vCPUs stop, then the save. */
static int source_save(struct side *s, void (*while_stopped)(struct side *),
		       struct mig_error *err)
{
	int r = mig_device_step(&s->dev.core, GIC_QUIESCED, err);

	if (r < 0)
		return r;
	gic_sim_set_running(&s->sim, false);
	if (while_stopped)
		while_stopped(s);
	r = mig_device_step(&s->dev.core, GIC_FLUSHED, err);
	if (r >= 0)
		r = mig_device_step(&s->dev.core, GIC_SAVED, err);
	return r;
}

/* RAM goes over, then the state; the destination loads and starts. */
static int dest_restore(struct side *s, struct side *d, struct mig_error *err)
{
	struct mig_mem_reader rd;
	int r;

	memcpy(d->ram, s->ram, RAM_BYTES);
	r = mig_device_step(&d->dev.core, GIC_RESTORING, err);
	if (r < 0)
		return r;
	mig_mem_reader_init(&rd, s->dev.saved.data, s->dev.saved.len);
	r = mig_device_load(&d->dev.core, &rd.r, err);
	if (r < 0)
		return r;
	r = mig_device_step(&d->dev.core, GIC_RESTORED, err);
	if (r >= 0)
		r = mig_device_step(&d->dev.core, GIC_RUNNING, err);
	if (r >= 0)
		gic_sim_set_running(&d->sim, true);
	return r;
}

static void raise_all(struct side *s)
{
	for (unsigned d = 0; d < DEVS; d++)
		for (unsigned e = 0; e < EVENTS; e++)
			cr_assert_eq(gic_sim_msi(&s->sim, 0, d, e), 1, "pending while stopped");
}

Test(gic, lpis_pending_at_the_switchover_are_taken_once_on_the_destination)
{
	struct side s, d;
	struct mig_error err = { 0 };

	source_up(&s, GIC_V4_NONE, NULL);
	side_init(&d, GIC_V4_NONE, GIC_CREATED, NULL);
	cr_assert_eq(source_save(&s, raise_all, &err), 0, "%s", err.msg);
	for (unsigned i = 0; i < LPIS; i++)
		cr_assert_eq(gic_sim_delivered(&s.sim, GIC_LPI_BASE + i), 1, "not taken while "
			     "stopped");
	cr_assert_gt(s.dev.saved.len, 0);
	/* little-endian whatever the host: the magic, then nr_vcpus */
	cr_assert_eq(memcmp(s.dev.saved.data, "MMGTGIC1", 8), 0, "the state is not little-endian");
	cr_assert_eq(s.dev.saved.data[8], 2);
	cr_assert_eq(dest_restore(&s, &d, &err), 0, "%s", err.msg);
	for (unsigned i = 0; i < LPIS; i++)
		cr_assert_eq(gic_sim_delivered(&d.sim, GIC_LPI_BASE + i), 2, "LPI %u: taken once "
			     "before and once after the migration (%u)", i,
			     gic_sim_delivered(&d.sim, GIC_LPI_BASE + i));
	/* the destination's ITS translates, and its pending bits were consumed */
	for (unsigned dv = 0; dv < DEVS; dv++)
		for (unsigned e = 0; e < EVENTS; e++) {
			cr_assert_eq(gic_sim_translate(&d.sim, 0, dv, e), lpi(dv, e));
			cr_assert_eq(gic_sim_msi(&d.sim, 0, dv, e), 1);
			cr_assert_eq(gic_sim_delivered(&d.sim, lpi(dv, e)), 3);
		}
	cr_assert_eq(d.sim.msis_dropped, 0);
	side_fini(&s);
	side_fini(&d);
}

static int find(const struct side *x, const char *call, int from)
{
	for (unsigned i = (unsigned)from; i < x->sim.calls && i < ARRAY_SIZE(x->sim.journal); i++)
		if (strcmp(x->sim.journal[i], call) == 0)
			return (int)i;
	return -1;
}

static int find_set(const struct side *x, int its, uint32_t grp, uint64_t attr)
{
	char call[48];

	snprintf(call, sizeof(call), "set%d:%u:%#llx", its, grp, (unsigned long long)attr);
	return find(x, call, 0);
}

Test(gic, the_destination_restores_in_the_kernels_order)
{
	struct side s, d;
	struct mig_error err = { 0 };

	source_up(&s, GIC_V4_NONE, NULL);
	side_init(&d, GIC_V4_NONE, GIC_CREATED, NULL);
	cr_assert_eq(source_save(&s, raise_all, &err), 0, "%s", err.msg);
	cr_assert_eq(dest_restore(&s, &d, &err), 0, "%s", err.msg);
	int iidr = find_set(&d, -1, GIC_GRP_DIST_REGS, GICD_IIDR);
	int dctlr = find_set(&d, -1, GIC_GRP_DIST_REGS, GICD_CTLR);
	int its_iidr = find_set(&d, 0, GIC_GRP_ITS_REGS, GITS_IIDR);
	int cbaser = find_set(&d, 0, GIC_GRP_ITS_REGS, GITS_CBASER);
	int creadr = find_set(&d, 0, GIC_GRP_ITS_REGS, GITS_CREADR);
	int cwriter = find_set(&d, 0, GIC_GRP_ITS_REGS, GITS_CWRITER);
	int baser0 = find_set(&d, 0, GIC_GRP_ITS_REGS, GITS_BASER(0));
	int baser1 = find_set(&d, 0, GIC_GRP_ITS_REGS, GITS_BASER(1));
	int restore = find_set(&d, 0, GIC_GRP_CTRL, GIC_CTRL_ITS_RESTORE_TABLES);
	int ctlr = find_set(&d, 0, GIC_GRP_ITS_REGS, GITS_CTLR);

	int first_set = 0;

	while (strncmp(d.sim.journal[first_set], "set", 3))
		first_set++;
	cr_assert_eq(iidr, first_set, "GICD_IIDR first (%d, not %d)", iidr, first_set);
	cr_assert_lt(iidr, dctlr);
	for (unsigned v = 0; v < 2; v++) {
		uint64_t aff = gic_vcpu_affinity(v) << GIC_ATTR_MPIDR_SHIFT;
		int prop = find_set(&d, -1, GIC_GRP_REDIST_REGS, aff | GICR_PROPBASER);
		int pend = find_set(&d, -1, GIC_GRP_REDIST_REGS, aff | GICR_PENDBASER);
		int rctlr = find_set(&d, -1, GIC_GRP_REDIST_REGS, aff | GICR_CTLR);

		cr_assert(prop >= 0 && pend >= 0 && rctlr >= 0);
		cr_assert_lt(prop, rctlr, "vCPU %u: PROPBASER before GICR_CTLR", v);
		cr_assert_lt(pend, rctlr, "vCPU %u: PENDBASER before GICR_CTLR", v);
		cr_assert_lt(rctlr, its_iidr, "redistributors before the ITS");
	}
	cr_assert(its_iidr < cbaser && cbaser < creadr && creadr < cwriter && cwriter < baser0 &&
		  baser0 < baser1 && baser1 < restore && restore < ctlr,
		  "ITS: IIDR %d, CBASER %d, CREADR %d, CWRITER %d, BASERs %d %d, RESTORE %d, "
		  "CTLR %d", its_iidr, cbaser, creadr, cwriter, baser0, baser1, restore, ctlr);
	side_fini(&s);
	side_fini(&d);
}

Test(gic, a_running_vcpu_makes_the_save_fail_and_changes_nothing)
{
	struct side s;
	struct mig_error err = { 0 };

	source_up(&s, GIC_V4_NONE, NULL);
	cr_assert_eq(mig_device_step(&s.dev.core, GIC_QUIESCED, &err), 0, "%s", err.msg);
	cr_assert_eq(mig_device_step(&s.dev.core, GIC_FLUSHED, &err), -EBUSY);
	cr_assert(strstr(err.msg, "SAVE_PENDING_TABLES") && strstr(err.msg, "still running"),
		  "%s", err.msg);
	cr_assert_eq(s.dev.core.state, GIC_QUIESCED);
	cr_assert_eq(mig_device_step(&s.dev.core, GIC_RUNNING, &err), 0, "a rollback");
	side_fini(&s);
}

Test(gic, a_corrupted_its_table_is_refused_by_restore_tables)
{
	struct side s, d;
	struct mig_error err = { 0 };
	uint64_t dt = AREA_GPA + GIC_SIM_ITS_OFF + GIC_SIM_ITS_DT - RAM_GPA;
	uint64_t dte;

	source_up(&s, GIC_V4_NONE, NULL);
	side_init(&d, GIC_V4_NONE, GIC_CREATED, NULL);
	cr_assert_eq(source_save(&s, raise_all, &err), 0, "%s", err.msg);
	/* device 0's entry: its ITT now says 1 event, which its ITEs exceed */
	/* the ITS tables in guest RAM are little-endian (the GIC's format) */
	memcpy(&dte, s.ram + dt, 8);
	dte = le64toh(dte);
	cr_assert(dte >> 63, "device 0 has a valid entry");
	dte = htole64(dte & ~0x1fULL);
	memcpy(s.ram + dt, &dte, 8);
	cr_assert_eq(dest_restore(&s, &d, &err), -EINVAL);
	cr_assert(strstr(err.msg, "RESTORE_TABLES") && strstr(err.msg, "inconsistent"), "%s",
		  err.msg);
	cr_assert_eq(d.dev.core.state, GIC_RESTORING, "the walker moves it to FAILED");
	cr_assert_eq(gic_sim_translate(&d.sim, 0, 1, 0), 0, "nothing half-restored");
	side_fini(&s);
	side_fini(&d);
}

Test(gic, a_malformed_state_is_refused_before_anything_is_set)
{
	struct side s, d;
	struct mig_error err = { 0 };
	struct mig_mem_reader rd;

	source_up(&s, GIC_V4_NONE, NULL);
	side_init(&d, GIC_V4_NONE, GIC_CREATED, NULL);
	cr_assert_eq(source_save(&s, NULL, &err), 0, "%s", err.msg);
	cr_assert_eq(mig_device_step(&d.dev.core, GIC_RESTORING, &err), 0);
	mig_mem_reader_init(&rd, s.dev.saved.data, s.dev.saved.len - 8);
	cr_assert_eq(mig_device_load(&d.dev.core, &rd.r, &err), -EINVAL);
	cr_assert(strstr(err.msg, "bytes"), "%s", err.msg);
	for (unsigned i = 0; i < d.sim.calls; i++)
		cr_assert_neq(strncmp(d.sim.journal[i], "set", 3), 0, "%s", d.sim.journal[i]);
	side_fini(&s);
	side_fini(&d);
}

static int check_against(struct side *s, struct side *d, struct mig_error *err)
{
	struct mig_buf b = { 0 };
	int r = gic_class.compat_ops->describe(&s->dev.core, &b, err);

	if (r >= 0)
		r = gic_class.compat_ops->check(&d->dev.core, b.data, b.len, err);
	mig_buf_free(&b);
	return r;
}

Test(gic, a_destination_that_cannot_take_the_gic_is_refused_at_setup)
{
	struct gic_vlpi v = { .its = 0, .devid = 1, .event = 2 };
	struct side s, d, d41;
	struct mig_error err = { 0 };

	source_up(&s, GIC_V4_1, &v);
	side_init(&d, GIC_V4_0, GIC_CREATED, &v);
	cr_assert_eq(check_against(&s, &d, &err), -ENOTSUP);
	cr_assert(strstr(err.msg, "GICv4.1") && strstr(err.msg, "GICv4.0"), "%s", err.msg);
	side_init(&d41, GIC_V4_1, GIC_CREATED, &v);
	mig_error_clear(&err);
	cr_assert_eq(check_against(&s, &d41, &err), 0, "%s", err.msg);
	/* fewer interrupts */
	d41.dev.cfg.nr_irqs = 96;
	cr_assert_eq(check_against(&s, &d41, &err), -ENOTSUP);
	cr_assert(strstr(err.msg, "128") && strstr(err.msg, "96"), "%s", err.msg);
	d41.dev.cfg.nr_irqs = 128;
	/* an ITS table ABI the destination's kernel cannot read */
	s.dev.its_rev[0] = 1;
	mig_error_clear(&err);
	cr_assert_eq(check_against(&s, &d41, &err), -ENOTSUP);
	cr_assert(strstr(err.msg, "revision 1") && strstr(err.msg, "up to revision 0"), "%s",
		  err.msg);
	s.dev.its_rev[0] = 0;
	/* another GIC version (the description's first word) */
	{
		struct mig_buf b = { 0 };
		uint32_t two = htole32(2);   /* as it travels */

		cr_assert_eq(gic_class.compat_ops->describe(&s.dev.core, &b, &err), 0);
		memcpy(b.data, &two, 4);
		mig_error_clear(&err);
		cr_assert_eq(gic_class.compat_ops->check(&d41.dev.core, b.data, b.len, &err),
			     -ENOTSUP);
		cr_assert(strstr(err.msg, "version 2") && strstr(err.msg, "vgic-v3"), "%s", err.msg);
		mig_buf_free(&b);
	}
	side_fini(&s);
	side_fini(&d);
	side_fini(&d41);
}

/* Two ITSes: each one's tables saved and restored, each translating its
 * own devices to its own LPIs afterwards. */
Test(gic, two_itses_each_restored)
{
	struct side s, d;
	struct mig_error err = { 0 };

	side_init_its(&s, GIC_V4_NONE, GIC_CREATED, NULL, 2);
	side_init_its(&d, GIC_V4_NONE, GIC_CREATED, NULL, 2);
	cr_assert_eq(gic_sim_guest_boot(&s.sim, DEVS, EVENTS, &err), 0, "%s", err.msg);
	gic_sim_set_running(&s.sim, true);
	cr_assert_eq(mig_device_step(&s.dev.core, GIC_RUNNING, &err), 0, "%s", err.msg);
	cr_assert_eq(source_save(&s, NULL, &err), 0, "%s", err.msg);
	/* pending while stopped, on the second ITS only */
	cr_assert_eq(gic_sim_msi(&s.sim, 1, 1, 1), 1);
	mig_device_step(&s.dev.core, GIC_RUNNING, &err);
	cr_assert_eq(source_save(&s, NULL, &err), 0, "%s", err.msg);
	cr_assert_eq(dest_restore(&s, &d, &err), 0, "%s", err.msg);
	for (unsigned t = 0; t < 2; t++)
		for (unsigned dv = 0; dv < DEVS; dv++)
			for (unsigned e = 0; e < EVENTS; e++)
				cr_assert_eq(gic_sim_translate(&d.sim, t, dv, e),
					     GIC_LPI_BASE + (t * DEVS + dv) * EVENTS + e);
	cr_assert_eq(gic_sim_delivered(&d.sim, GIC_LPI_BASE + (DEVS + 1) * EVENTS + 1), 1);
	side_fini(&s);
	side_fini(&d);
}

/* The guest has interrupts masked: the device's VLPI waits in its VPT. */
static void device_raises_masked(struct side *s)
{
	gic_sim_set_masked(&s->sim, true);
	cr_assert_eq(gic_sim_msi(&s->sim, 0, 1, 2), 1);
}

Test(gic, gicv41_a_vlpi_pending_in_its_vpt_moves_in_the_tables_and_is_forwarded_again)
{
	struct gic_vlpi v = { .its = 0, .devid = 1, .event = 2 };
	struct side s, d;
	struct mig_error err = { 0 };

	source_up(&s, GIC_V4_1, &v);
	cr_assert(gic_sim_lpi_forwarded(&s.sim, lpi(1, 2)));
	uint64_t direct = s.sim.vlpis_direct;

	device_raises_masked(&s);
	cr_assert_eq(s.sim.vlpis_direct, direct + 1, "through the bypass");
	side_init(&d, GIC_V4_1, GIC_CREATED, &v);
	cr_assert_eq(source_save(&s, NULL, &err), 0, "%s", err.msg);
	cr_assert_eq(s.dev.vlpis_off, 0, "GICv4.1 saves VLPIs where they are");
	cr_assert_eq(dest_restore(&s, &d, &err), 0, "%s", err.msg);
	cr_assert(gic_sim_lpi_forwarded(&d.sim, lpi(1, 2)), "forwarded again after the restore");
	cr_assert_eq(d.dev.vlpis_on, 1);
	cr_assert_eq(gic_sim_delivered(&d.sim, lpi(1, 2)), 2, "taken once here (%u)",
		     gic_sim_delivered(&d.sim, lpi(1, 2)));
	cr_assert_eq(d.sim.vlpis_discarded + s.sim.vlpis_discarded, 0);
	side_fini(&s);
	side_fini(&d);
}

Test(gic, gicv40_a_declared_vlpi_goes_to_software_first_and_is_never_lost)
{
	struct gic_vlpi v = { .its = 0, .devid = 1, .event = 2 };
	struct side s, d;
	struct mig_error err = { 0 };
	uint32_t n;

	source_up(&s, GIC_V4_0, &v);
	device_raises_masked(&s);
	side_init(&d, GIC_V4_0, GIC_CREATED, &v);
	cr_assert_eq(source_save(&s, NULL, &err), 0, "%s", err.msg);
	cr_assert_eq(s.dev.vlpis_off, 1);
	cr_assert(s.dev.core.notes & GIC_NOTE_VLPI_OFF);
	cr_assert(!gic_sim_lpi_forwarded(&s.sim, lpi(1, 2)));
	cr_assert_eq(dest_restore(&s, &d, &err), 0, "%s", err.msg);
	cr_assert(gic_sim_lpi_forwarded(&d.sim, lpi(1, 2)));
	n = gic_sim_delivered(&d.sim, lpi(1, 2));
	/* 1 before; the one in the VPT was discarded and raised again */
	cr_assert(n == 2, "taken %u times", n);
	side_fini(&s);
	side_fini(&d);
}

Test(gic, gicv40_an_undeclared_forwarded_lpi_makes_the_its_save_fail)
{
	struct gic_vlpi v = { .its = 0, .devid = 1, .event = 2 };
	struct side s;
	struct mig_error err = { 0 };

	source_up(&s, GIC_V4_0, NULL);
	/* forwarded behind the class's back */
	cr_assert_eq(gic_sim_backend.forward(&s.dev, &v, true), 0);
	cr_assert(gic_sim_lpi_forwarded(&s.sim, lpi(1, 2)));
	cr_assert_eq(source_save(&s, NULL, &err), -EACCES);
	cr_assert(strstr(err.msg, "GICv4.0") && strstr(err.msg, "keeps running"), "%s", err.msg);
	cr_assert_eq(mig_device_step(&s.dev.core, GIC_RUNNING, &err), 0, "a rollback");
	side_fini(&s);
}

/* The kernel's contract, as the sim keeps it: forwarding before the ITS is
 * restored and enabled is not made, and no one is told. */
Test(gic, sim_forwarding_before_the_its_is_back_stays_software)
{
	struct gic_vlpi v = { .its = 0, .devid = 1, .event = 2 };
	struct side s, d;
	struct mig_error err = { 0 };

	source_up(&s, GIC_V4_1, NULL);
	side_init(&d, GIC_V4_1, GIC_CREATED, NULL);
	cr_assert_eq(source_save(&s, NULL, &err), 0, "%s", err.msg);
	memcpy(d.ram, s.ram, RAM_BYTES);
	cr_assert_eq(gic_sim_backend.forward(&d.dev, &v, true), 0, "KVM_IRQFD says nothing");
	cr_assert(!gic_sim_lpi_forwarded(&d.sim, lpi(1, 2)));
	cr_assert_eq(dest_restore(&s, &d, &err), 0, "%s", err.msg);
	cr_assert(!gic_sim_lpi_forwarded(&d.sim, lpi(1, 2)), "and it is never made later");
	side_fini(&s);
	side_fini(&d);
}
