// SPDX-License-Identifier: MIT
/* Reading an agent's journal (MIG_OP_JOURNAL), a reply at a time. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <migrate/agent.h>
#include <migrate/journal.h>
#include <migrate/wire-order.h>

#include "util.h"

int mig_client_journal(struct mig_client *c, uint64_t since_ns, struct mig_buf *ret_recs,
		       struct mig_journal_reply *ret_info, struct mig_error *err)
{
	struct mig_journal_req req = { .since_ns = since_ns };
	struct mig_buf extra = { 0 };
	struct mig_journal_reply h;
	int r;

	ret_recs->len = 0;
	for (;;) {
		struct mig_journal_req le = req;

		mig_wire_le(&mig_wl_journal_req, &le, 1);
		r = mig_client_call(c, MIG_OP_JOURNAL, &le, sizeof(le), &extra, err);
		if (r < 0)
			break;
		if (extra.len < sizeof(h)) {
			r = mig_error_set(err, -EPROTO, "the agent's journal reply is %zu bytes, "
					  "shorter than its header", extra.len);
			break;
		}
		memcpy(&h, extra.data, sizeof(h));
		mig_wire_le(&mig_wl_journal_reply, &h, 1);
		if (h.count > MIG_JOURNAL_REPLY_MAX ||
		    extra.len != sizeof(h) + (size_t)h.count * sizeof(struct mig_journal_rec)) {
			r = mig_error_set(err, -EPROTO, "the agent's journal reply says %u records "
					  "in %zu bytes", h.count, extra.len);
			break;
		}
		for (uint32_t i = 0; i < h.count; i++) {
			struct mig_journal_rec rec;

			memcpy(&rec, extra.data + sizeof(h) + i * sizeof(rec), sizeof(rec));
			mig_wire_le(&mig_wl_journal_rec, &rec, 1);
			rec.vm[sizeof(rec.vm) - 1] = '\0';
			if (rec.seq <= req.after_seq) {
				r = mig_error_set(err, -EPROTO, "the agent's journal went back from "
						  "seq %llu to %llu",
						  (unsigned long long)req.after_seq,
						  (unsigned long long)rec.seq);
				goto out;
			}
			req.after_seq = rec.seq;
			r = mig_buf_append(ret_recs, &rec, sizeof(rec));
			if (r < 0) {
				r = mig_error_set(err, -ENOMEM, "out of memory");
				goto out;
			}
		}
		*ret_info = h;
		/* a short reply was the last; the ring may have moved on meanwhile */
		if (h.count < MIG_JOURNAL_REPLY_MAX)
			break;
	}
out:
	mig_buf_free(&extra);
	return r < 0 ? r : 0;
}
