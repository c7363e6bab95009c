/* SPDX-License-Identifier: MIT */
/*
 * The agent's side of a libvirt host (docs/libvirt.md): a connection to the
 * local libvirtd through the libvirt C API, with its event loop, used to
 * start libvirt's own peer-to-peer migration of a domain over unix sockets
 * (which the agents' tunnel carries between hosts), follow it, abort it,
 * and tell what state a domain is in.  Library code: returns errors
 * through struct mig_error, prints nothing.
 */
#ifndef MIGRATE_LIBVIRT_H
#define MIGRATE_LIBVIRT_H

#include <stdbool.h>
#include <stdint.h>

#include <migrate/control.h>
#include <migrate/error.h>

struct mig_lv;            /* a connection to one libvirtd, and its event thread */
struct mig_lv_job;        /* one outgoing migration it runs */

/* A domain's lifecycle as libvirt reports it (its events), for the
 * journal: running (started, resumed) or not (suspended, stopped). */
struct mig_lv_lifecycle {
	char name[64];
	char uuid[37];
	bool running;             /* the event leaves the domain's vCPUs running */
	bool postcopy;            /* paused for post-copy: the domain now runs on the destination */
	int event, detail;        /* virDomainEventType and its detail, as libvirt gave them */
	uint64_t realtime_ns, monotonic_ns;   /* when the agent received it */
};

/* Opens uri ("qemu:///system", "qemu+unix:///system?socket=PATH") and
 * starts the event loop thread (one for the process, shared by every
 * open connection, ended by the last close).  on_lifecycle (may be NULL)
 * is called from that thread for every domain lifecycle event; it must
 * not call mig_lv_close.  Every call here is thread-safe; close only
 * after every job was finished. */
int mig_lv_open(const char *uri, void (*on_lifecycle)(void *arg, const struct mig_lv_lifecycle *e),
		void *arg, struct mig_lv **ret, struct mig_error *err);
void mig_lv_close(struct mig_lv *lv);

/* MIG_LV_STATE_* (control.h) of domain `name`, its UUID ("" when absent)
 * and whether it is persistent. */
int mig_lv_domain_state(struct mig_lv *lv, const char *name, uint32_t *ret_state,
			char uuid[37], bool *ret_persistent, struct mig_error *err);

/* The UUIDs of the domains that run now (not paused), at most max, into
 * uuids; their count in *ret_n. */
#define MIG_LV_RECONCILE_MAX 1024
int mig_lv_running(struct mig_lv *lv, char (*uuids)[37], unsigned max, unsigned *ret_n,
		   struct mig_error *err);

/*
 * How a migration's error begins when the domain's QEMU still runs an
 * earlier outgoing migration that libvirt no longer knows of: QEMU 7.2's
 * multifd can wait forever for a channel that broke while it was being set
 * up (its migration stays "cancelling").  Only a new QEMU process ends it.
 */
#define MIG_LV_STUCK_MARK "the domain's QEMU is stuck in an earlier migration"
#define MIG_LV_STUCK MIG_LV_STUCK_MARK " that never ended " \
	"(QEMU's multifd can hang so after a connection breaks); it cannot migrate until its " \
	"QEMU restarts (virsh save, then virsh restore, or a shutdown and start)"

/* One peer-to-peer live migration (virDomainMigrateToURI3). */
struct mig_lv_migrate {
	const char *name;         /* the domain */
	const char *dconnuri;     /* "qemu+unix:///system?socket=RUN/libvirt.sock" */
	const char *miguri;       /* "unix://RUN/qemu.sock" */
	const char *disks_uri;    /* "unix://RUN/nbd.sock", with copy_storage */
	/* 1: one connection; 2..: VIR_MIGRATE_PARALLEL with
	 * VIR_MIGRATE_PARAM_PARALLEL_CONNECTIONS = parallel, as virsh's
	 * --parallel-connections counts them: QEMU opens its main channel
	 * and that many multifd channels. */
	unsigned parallel;
	bool copy_storage;        /* VIR_MIGRATE_NON_SHARED_DISK */
	uint64_t bandwidth_bps;   /* 0: libvirt's default */
	uint64_t downtime_ms;     /* 0: libvirt's default */
	/* Convergence (docs/libvirt.md "Convergence"): QEMU's auto-converge
	 * (VIR_MIGRATE_AUTO_CONVERGE: QEMU throttles the vCPUs, its own
	 * initial step, increment and bound), and post-copy allowed
	 * (VIR_MIGRATE_POSTCOPY), which mig_lv_job_postcopy then starts. */
	bool auto_converge;
	bool postcopy;
};

/* Starts the migration on a thread of its own, with a connection of its
 * own; returns once libvirt took it on (a job on the domain) or refused
 * it at once (no such domain, not running, destination unreachable, a
 * hook's veto): then the error is this call's and there is no job. */
int mig_lv_migrate_start(struct mig_lv *lv, const struct mig_lv_migrate *m,
			 struct mig_lv_job **ret, struct mig_error *err);

/* The job's figures as virDomainGetJobStats gives them; a field libvirt
 * did not report is left at MIG_LV_UNKNOWN (the summary prints null). */
struct mig_lv_stats {
	uint64_t elapsed_ms;      /* VIR_DOMAIN_JOB_TIME_ELAPSED */
	uint64_t data_total, data_processed, data_remaining;
	uint64_t mem_total, mem_processed, mem_remaining;
	uint64_t mem_bps;         /* VIR_DOMAIN_JOB_MEMORY_BPS */
	uint64_t mem_dirty_rate;  /* pages/s: VIR_DOMAIN_JOB_MEMORY_DIRTY_RATE */
	uint64_t mem_page_size;
	uint64_t mem_iteration;
	uint64_t mem_normal, mem_normal_bytes, mem_constant;
	uint64_t mem_postcopy_reqs;
	uint64_t disk_total, disk_processed, disk_remaining;
	uint64_t downtime_ms;     /* VIR_DOMAIN_JOB_DOWNTIME (completed: measured) */
	uint64_t setup_ms;        /* VIR_DOMAIN_JOB_SETUP_TIME */
	uint64_t auto_converge_throttle;   /* percent */
	bool paused;              /* the domain is paused on the source (switchover) */
	bool postcopy;            /* paused for post-copy (VIR_DOMAIN_PAUSED_POSTCOPY, or
				   * its _FAILED): the destination has the vCPUs */
};
/* The running job's statistics (fills MIG_LV_UNKNOWN where none).
 * -ESRCH once the domain no longer runs on the source (the switchover
 * happened, or it was stopped): mig_lv_job_finish tells the outcome. */
int mig_lv_job_stats(struct mig_lv_job *j, struct mig_lv_stats *st, struct mig_error *err);
/* Whether the migration call returned; waits up to timeout_ms (0: look). */
bool mig_lv_job_done(struct mig_lv_job *j, int timeout_ms);
/* virDomainAbortJob; the migration call then returns its failure. */
int mig_lv_job_abort(struct mig_lv_job *j, struct mig_error *err);
/* Pauses the domain so that the migration converges (--timeout-action
 * force, as virsh migrate --timeout-suspend). */
int mig_lv_job_suspend(struct mig_lv_job *j, struct mig_error *err);
/* virDomainMigrateStartPostCopy: the domain starts on the destination,
 * its pages that are still missing follow on demand (a job started with
 * postcopy).  From then on neither host holds all of the domain: a
 * failure leaves it paused on both. */
int mig_lv_job_postcopy(struct mig_lv_job *j, struct mig_error *err);
/* Joins the job: 0 when the migration completed, else the error libvirt
 * gave (its message in err).  final gets the completed job's statistics:
 * VIR_DOMAIN_JOB_STATS_COMPLETED while the domain is still here, else
 * (a transient domain that left) the job-completed event's, waited for
 * up to 3 s; MIG_LV_UNKNOWN in every field when neither came.  Frees j. */
int mig_lv_job_finish(struct mig_lv_job *j, struct mig_lv_stats *final, struct mig_error *err);

#endif
