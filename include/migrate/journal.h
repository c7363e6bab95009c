/* SPDX-License-Identifier: MIT */
/*
 * vCPU journals and the never-two check (docs/chaos.md, "Journals and the
 * never-two check").
 *
 * An agent journals every start and stop of every vCPU of every VM it
 * hosts (mig_vm_run_watch()): one struct mig_journal_rec each, kept in a
 * ring and, with `agent --journal FILE`, appended to FILE as a JSON line.
 * MIG_OP_JOURNAL reads the ring.  A checker merges the journals of several
 * agents and finds any instant at which two copies of one VM ran on two
 * agents (mig_never_two()).
 */
#ifndef MIGRATE_JOURNAL_H
#define MIGRATE_JOURNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <migrate/control.h>
#include <migrate/error.h>

/*
 * One vCPU starting or stopping, or one call of libvirt's qemu hook on the
 * agent's host (also the MIG_OP_JOURNAL reply's entries).  A hook record
 * (event MIG_JOURNAL_HOOK) names the libvirt domain by its UUID, has vcpu
 * 0 and the hook's operation in detail; the never-two check ignores it
 * (libvirt's vCPUs are not the agent's to see).
 */
struct mig_journal_rec {
	char vm[MIG_NAME_MAX];    /* the VM's name (a hook's: the domain UUID), its identity */
	uint8_t mig_id[16];       /* the migration that moves it here or away (zero: none) */
	uint64_t seq;             /* the agent's count of records, from 1 */
	uint64_t realtime_ns;     /* CLOCK_REALTIME */
	uint64_t monotonic_ns;    /* CLOCK_MONOTONIC: one clock for agents on one host */
	uint32_t vcpu;
	uint32_t event;           /* enum mig_vcpu_run_kind (1 start, 2 stop) or MIG_JOURNAL_HOOK */
	uint32_t pid;             /* the agent's */
	uint32_t detail;          /* MIG_JOURNAL_HOOK: enum mig_hook_op; else 0 */
};
_Static_assert(sizeof(struct mig_journal_rec) == 120, "journal record");
/* The event of a hook record, beside enum mig_vcpu_run_kind's 1 and 2. */
#define MIG_JOURNAL_HOOK 3

/* MIG_OP_JOURNAL: the records with seq > after_seq and realtime_ns >= since_ns,
 * oldest first, as many as one reply holds (MIG_JOURNAL_REPLY_MAX); ask
 * again from the last seq for more. */
struct mig_journal_req {
	uint64_t since_ns;
	uint64_t after_seq;
};
_Static_assert(sizeof(struct mig_journal_req) == 16, "journal request");

struct mig_journal_reply {
	uint64_t next_seq;        /* the seq the agent's next record will have */
	uint64_t dropped;         /* records the ring no longer holds (oldest first) */
	uint32_t count;           /* struct mig_journal_rec that follow */
	uint32_t capacity;        /* records the ring holds */
};
_Static_assert(sizeof(struct mig_journal_reply) == 24, "journal reply");
#define MIG_JOURNAL_REPLY_MAX 4096

/*
 * A record as one line of an agent's --journal file (without the newline):
 * {"seq":N,"vm":"NAME","mig":"UUID"|null,"vcpu":N,"event":"start"|"stop",
 *  "realtime_ns":N,"monotonic_ns":N,"pid":N}
 * and for a hook record "event":"hook","hook":"OP" (mig_hook_op_to_string).
 * Format returns the length (it fits MIG_JOURNAL_LINE_MAX); parse takes
 * such a line back, keys in any order, and says what is wrong with one
 * that is not (a line cut short by a kill, say).
 */
#define MIG_JOURNAL_LINE_MAX 320
int mig_journal_rec_format(const struct mig_journal_rec *r, char *buf, size_t n);
int mig_journal_rec_parse(const char *line, struct mig_journal_rec *ret, struct mig_error *err);
/* Every line of an agent's --journal file, appended to recs as struct
 * mig_journal_rec.  A bad line is an error naming the file and the line,
 * except a last line without its newline (an agent killed as it wrote),
 * which is left out and counted in *ret_torn. */
struct mig_buf;
int mig_journal_file_load(const char *path, struct mig_buf *recs, unsigned *ret_torn,
			  struct mig_error *err);

/* ---- never two (chaos/never-two.c): a pure function of the journals ---- */

/* One agent's journal, in any order. */
struct mig_journal_src {
	const char *agent;        /* a name for reports */
	const struct mig_journal_rec *recs;
	size_t n;
};

enum mig_journal_clock { MIG_JOURNAL_REALTIME, MIG_JOURNAL_MONOTONIC };

/*
 * Two copies of one VM running at once: an interval in which at least one
 * vCPU of the copy on agent a ran, and one on agent b, that share more
 * than an instant.  Each interval is bounded by the record that began it
 * (its first vCPU's start) and the one that ended it (its last vCPU's
 * stop; seq 0 for a copy that never stopped: its interval is open and
 * runs past every record).
 */
struct mig_overlap {
	char vm[MIG_NAME_MAX];
	unsigned a, b;            /* indexes of the sources, a < b */
	uint64_t from_ns, to_ns;  /* the shared time on the chosen clock (UINT64_MAX: open) */
	uint64_t overlap_ns;      /* to - from; UINT64_MAX when both are open */
	struct mig_journal_rec a_start, a_stop, b_start, b_stop;
};

/*
 * Merges the journals and reports every overlap between copies on
 * different agents, up to max of them in out (*ret_n says how many there
 * were in all).  A stop at t on one agent and a start at t on another is
 * not an overlap ("by any amount" means a shared nanosecond); a start
 * before the other's stop is.  Records of one agent are ordered by the
 * clock, then by seq.  A vCPU's second start without a stop, or a stop
 * without a start, changes nothing (a journal that begins mid-run).
 * Returns 0 when no two copies ran at once, 1 when some did, -errno.
 */
int mig_never_two(const struct mig_journal_src *src, unsigned nsrc, enum mig_journal_clock clk,
		  struct mig_overlap *out, size_t max, size_t *ret_n, struct mig_error *err);

#endif
