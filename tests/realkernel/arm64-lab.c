// SPDX-License-Identifier: MIT
/*
 * The arm64 lab VM migrated on a real arm64 KVM (run inside QEMU by
 * tests/realkernel/run-arm64-kernel.sh): two vCPUs, a vGICv3 and an ITS
 * that the guest programs itself, and MSI devices raising LPIs the guest
 * counts, between two engines in this process over loopback TCP.
 *
 *   1. A migration while LPIs flow, with a last round raised while the
 *      source's vCPUs were stopped (pending at the switchover): it
 *      completes, the RAM digests match, and on the destination every LPI
 *      raised on either side is delivered exactly once (raised == delivered,
 *      both counted in guest RAM), the guest's self-check clean, LPIs
 *      flowing on.
 *   2. That VM migrated on, with its device table damaged in the
 *      destination's RAM before the GIC loads: RESTORE_TABLES refuses it,
 *      the migration fails, the VM stays on its source and runs on, its
 *      LPIs still each delivered exactly once.
 *
 * Prints "RK-PASS name" / "RK-FAIL name: why", "RK-INFO ..." and
 * "RK-DONE passed P failed F".
 */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <migrate/control.h>
#include <migrate/engine.h>
#include <migrate/lab.h>
#include <migrate/transport.h>
#include <migrate/vm.h>

#include "gic/gic.h"
#include "lab/arm64/arm64-setup.h"
#include "lab/lab-abi.h"
#include "lab/lab-internal.h"
#include "msi/msi.h"
#include "util.h"
#include "rk.h"

static struct msi_dev *msi_of(struct lab_vm *vm)
{
	struct mig_device *d = mig_vm_find(lab_vm_mig(vm), MIG_DEV_MSI, 0);

	return d ? container_of(d, struct msi_dev, core) : NULL;
}

struct counts {
	uint64_t raised, delivered, unequal, twice;
};

static struct counts counts(struct lab_vm *vm)
{
	struct msi_dev *m = msi_of(vm);
	struct counts c = { 0 };

	for (unsigned k = 0; m && k < m->nr; k++) {
		uint64_t r = __atomic_load_n(&m->raised[k], __ATOMIC_ACQUIRE);
		uint64_t d = __atomic_load_n(&m->delivered[k], __ATOMIC_ACQUIRE);

		c.raised += r;
		c.delivered += d;
		c.unequal += r != d;
		c.twice += d > r;
	}
	return c;
}

/* Poll (generously: TCG) until every LPI raised was delivered. */
static struct counts settle(struct lab_vm *vm)
{
	struct counts c = counts(vm);

	for (int i = 0; i < 500 && c.unequal; i++) {
		usleep(10000);
		c = counts(vm);
	}
	return c;
}

static bool wait_for(struct lab_vm *vm, uint64_t delivered, int ms)
{
	for (int i = 0; i < ms / 10; i++) {
		struct lab_stats st;

		lab_vm_stats(vm, &st);
		if (st.fatal) {
			printf("RK-INFO fatal: %s\n", st.fatal_msg);
			return false;
		}
		if (st.all_filled && counts(vm).delivered >= delivered)
			return true;
		usleep(10000);
	}
	return false;
}

struct dst_run {
	struct mig_in_opts o;
	struct mig_vm *out;
	struct mig_error err;
	int r;
};

static void *dst_main(void *arg)
{
	struct dst_run *d = arg;

	d->r = mig_dest_run(&d->o, &d->out, &d->err);
	return NULL;
}

/* Damage the device table in the destination's RAM as the GIC is about to
 * load (all of RAM is in by then). */
static int corrupt_before_load(void *arg, const struct mig_fault_point *p, struct mig_error *err)
{
	struct lab_vm *dst = arg;
	uint8_t *ram = dst->mem->ram;
	uint64_t base = lab_arch_ram_base(), plat, devtab, dte;

	(void)err;
	if (p->kind != MIG_FAULT_DEVICE_STEP || p->dev->cls->id != MIG_DEV_GIC ||
	    p->to != GIC_RESTORING)
		return 0;
	memcpy(&plat, ram + dst->table + LAB_A64_TBL_OFF_PLAT, 8);
	memcpy(&devtab, ram + (plat - base) + LAB_A64_PB_DEVTAB, 8);
	/* MSI device 0 (its DeviceID indexes the flat table): one EventID bit,
	 * fewer than its ITT holds */
	memcpy(&dte, ram + (devtab - base) + 8 * ARM64_DEVID_BASE, 8);
	dte &= ~0x1fULL;
	memcpy(ram + (devtab - base) + 8 * ARM64_DEVID_BASE, &dte, 8);
	return 0;
}

static int migrate(struct lab_vm *src, struct lab_vm *dst, mig_fault_fn dst_fault,
		   struct mig_event *res, struct mig_vm **ret_vm, struct mig_error *dst_err)
{
	static struct mig_event_device devs[MIG_EVENT_DEVICES_MAX];
	struct xport_endpoint ep = { .kind = XPORT_EP_TCP, .host = "127.0.0.1" };
	struct mig_out_opts o = { 0 };
	struct mig_error err = { 0 };
	struct dst_run d = { 0 };
	atomic_bool cancel = false;
	pthread_t t;
	int lfd = xport_listen(&ep, &err);

	if (lfd < 0) {
		printf("RK-INFO listen: %s\n", err.msg);
		return lfd;
	}
	for (int i = 0; i < 16; i++)
		o.id[i] = (uint8_t)(i + 7);
	xport_random(o.secret, sizeof(o.secret));
	memcpy(d.o.id, o.id, 16);
	memcpy(d.o.secret, o.secret, sizeof(o.secret));
	snprintf(o.name, sizeof(o.name), "arm64-lab");
	snprintf(d.o.name, sizeof(d.o.name), "arm64-lab");
	xport_local_addr(lfd, o.dest_addr, sizeof(o.dest_addr));
	o.streams = d.o.streams = 2;
	d.o.listen_fd = lfd;
	d.o.vm = lab_vm_mig(dst);
	d.o.fault = dst_fault;
	d.o.fault_arg = dst;
	o.verify = true;
	o.compress.codec = XPORT_CODEC_NONE;
	o.checksum = MIG_CHECKSUM_FRAMES;
	conv_params_default(&o.conv);
	/* TCG: a switchover of a 64 MiB guest takes a few hundred ms */
	o.conv.downtime_limit_ms = 5000;
	pthread_create(&t, NULL, dst_main, &d);
	mig_source_run(lab_vm_mig(src), &o, &cancel, NULL, NULL, res, devs);
	pthread_join(t, NULL);
	close(lfd);
	*ret_vm = d.r >= 0 ? d.out : NULL;
	*dst_err = d.err;
	return d.r;
}

int main(void)
{
	struct lab_config cfg;
	struct mig_error err = { 0 }, derr = { 0 };
	struct lab_vm *src = NULL, *dst = NULL, *dst2 = NULL;
	struct mig_vm *arrived = NULL;
	struct mig_event res;
	struct lab_stats st;
	struct counts c;
	struct msi_dev *m;
	int r;

	setvbuf(stdout, NULL, _IOLBF, 0);
	lab_config_default(&cfg);
	r = lab_spec_parse("mem=64M,vcpus=2,wss=4M,msi=4", &cfg, &err);
	if (r >= 0)
		r = lab_vm_create(&cfg, &src, &err);
	if (r >= 0)
		r = lab_vm_start(src, &err);
	result(r >= 0, "source-boots", "%s", err.msg);
	if (r < 0)
		goto out;
	result(wait_for(src, 200, 60000), "lpis-flow", "the guest did not fill its RAM and take "
	       "200 LPIs in 60 s (delivered %llu)", (unsigned long long)counts(src).delivered);

	/* 1: a migration with LPIs pending at the switchover */
	cfg.destination = true;
	r = lab_vm_create(&cfg, &dst, &err);
	result(r >= 0, "destination-prepared", "%s", err.msg);
	if (r < 0)
		goto out;
	m = msi_of(src);
	r = migrate(src, dst, NULL, &res, &arrived, &derr);
	result(res.result == MIG_RESULT_COMPLETED && r >= 0 && arrived, "migration-completes",
	       "%s / %s", res.error, derr.msg);
	if (!arrived)
		goto out;
	dst = NULL;   /* the engine has it: arrived */
	result(res.verified && !memcmp(res.digest_src, res.digest_dst, 16), "ram-digests-match",
	       "verified %u", res.verified);
	result(m && m->at_switchover > 0, "lpis-pending-at-switchover",
	       "no LPI was raised while the source's vCPUs were stopped");
	printf("RK-INFO migration: %llu ms in all, downtime %llu ms, %llu LPIs pending at the "
	       "switchover, %llu raised on the source\n", (unsigned long long)res.total_ms,
	       (unsigned long long)res.downtime_ms, (unsigned long long)(m ? m->at_switchover : 0),
	       (unsigned long long)(m ? m->raises : 0));
	lab_vm_destroy(src);
	src = NULL;
	{
		struct lab_vm *vm = lab_vm_from_mig(arrived);
		uint64_t before = counts(vm).delivered;

		/* past MSI_LOST_MS, so a lost LPI counts as an error */
		sleep(3);
		lab_vm_stats(vm, &st);
		c = settle(vm);
		result(!c.unequal && !c.twice, "every-lpi-delivered-once",
		       "%llu LPIs differ (%llu delivered more often than raised; raised %llu, "
		       "delivered %llu)", (unsigned long long)c.unequal,
		       (unsigned long long)c.twice, (unsigned long long)c.raised,
		       (unsigned long long)c.delivered);
		result(c.delivered > before, "lpis-flow-on-the-destination",
		       "delivered %llu before, %llu after", (unsigned long long)before,
		       (unsigned long long)c.delivered);
		result(!st.errors && !st.fatal, "destination-selfcheck",
		       "errors %llu, fatal %d %s", (unsigned long long)st.errors, st.fatal,
		       st.fatal_msg);
		printf("RK-INFO destination: %llu LPIs raised and delivered in all\n",
		       (unsigned long long)c.delivered);

		/* 2: on to a destination whose device table is damaged */
		r = lab_vm_create(&cfg, &dst2, &err);
		result(r >= 0, "second-destination-prepared", "%s", err.msg);
		if (r < 0)
			goto out;
		{
			struct mig_vm *none = NULL;

			migrate(vm, dst2, corrupt_before_load, &res, &none, &derr);
			dst2 = NULL;   /* discarded by its engine */
			result(res.result != MIG_RESULT_COMPLETED && res.owner == MIG_OWNER_SOURCE &&
			       strstr(res.error, "RESTORE_TABLES"), "corrupted-its-table-refused",
			       "result %u owner %u: %s", res.result, res.owner, res.error);
		}
		before = counts(vm).delivered;
		sleep(3);
		lab_vm_stats(vm, &st);
		c = settle(vm);
		result(lab_vm_is_running(vm) && c.delivered > before && !c.unequal && !c.twice &&
		       !st.errors, "vm-runs-on-at-the-source",
		       "running %d, delivered %llu then %llu, %llu LPIs differ, errors %llu",
		       lab_vm_is_running(vm), (unsigned long long)before,
		       (unsigned long long)c.delivered, (unsigned long long)c.unequal,
		       (unsigned long long)st.errors);
		lab_vm_destroy(vm);
	}
out:
	lab_vm_destroy(src);
	lab_vm_destroy(dst);
	lab_vm_destroy(dst2);
	return rk_done();
}
