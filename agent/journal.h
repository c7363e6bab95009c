/* SPDX-License-Identifier: MIT */
/*
 * The agent's journal of vCPU starts and stops (include/migrate/journal.h):
 * a ring of the latest records, and optionally a file that gets each as a
 * JSON line with one write(), so a killed agent's file holds every record
 * made before the kill.
 */
#ifndef AGENT_JOURNAL_H
#define AGENT_JOURNAL_H

#include <migrate/journal.h>
#include <migrate/vm.h>

#define AGENT_JOURNAL_RING 8192   /* records the ring holds */

struct agent_journal;

/* path NULL or "": the ring only.  The file is appended to, made 0640 if new. */
int agent_journal_open(const char *path, uint32_t capacity, struct agent_journal **ret,
		       struct mig_error *err);
/* Journal vm's vCPUs under `name` and migration mig_id (NULL: none), from
 * now on and for the events it kept from before; a second call re-tags it
 * (a migration takes it).  Ends when the VM is destroyed. */
int agent_journal_watch(struct agent_journal *j, struct mig_vm *vm, const char *name,
			const uint8_t *mig_id);
/* A record made elsewhere (a libvirt domain's lifecycle, a hook's call):
 * its seq (returned) and pid are stamped here. */
uint64_t agent_journal_add(struct agent_journal *j, const struct mig_journal_rec *r);
/* A call of libvirt's qemu hook for the domain `uuid` (enum mig_hook_op
 * op), now: its seq. */
uint64_t agent_journal_hook(struct agent_journal *j, const char *uuid, uint32_t op);
/* Records with seq > after_seq and realtime_ns >= since_ns, oldest first,
 * at most max; the reply's other fields filled in. */
uint32_t agent_journal_read(struct agent_journal *j, uint64_t since_ns, uint64_t after_seq,
			    struct mig_journal_rec *out, uint32_t max,
			    struct mig_journal_reply *ret);
/* The records of an earlier agent's file at path (absent: none) that keep
 * accepts, the newest the ring holds, into the ring as if made now (their
 * times and pid kept, new seqs): a restarted agent tells what its
 * predecessors journaled of what outlives them (libvirt's domains). */
int agent_journal_preload(struct agent_journal *j, const char *path,
			  bool (*keep)(const struct mig_journal_rec *r), struct mig_error *err);
/* Whether the ring's last start or stop of vm is a start (1), a stop (0),
 * or it has none (-1). */
int agent_journal_running(struct agent_journal *j, const char *vm);
/* The distinct names (MIG_NAME_MAX bytes each) of the ring's records that
 * keep accepts, appended to out. */
int agent_journal_uuids(struct agent_journal *j, bool (*keep)(const struct mig_journal_rec *r),
			struct mig_buf *out);
/* Records the file could not take (the ring has them). */
uint64_t agent_journal_write_errors(struct agent_journal *j);

#endif
