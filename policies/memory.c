// SPDX-License-Identifier: MIT
/*
 * The agent's memory budget (policy.h): a pure function, so the bound is
 * testable without a VM.  Guest RAM is the one allocation that scales with
 * the VM; everything else an agent holds for a migration is either fixed,
 * one bit per page (the dirty bitmaps), or per data stream.  Of the
 * per-stream part only compression is large (a 1 MiB copy of a batch, up
 * to 2 MiB of frames, the codec's context, on the source; the decoded
 * batch and the compressed frame on the destination), so that is what the
 * budget rations: streams past the returned count send their pages raw
 * (PAGES frames carry the codec per frame, protocol.md §6.4).
 */
#include <migrate/policy.h>

unsigned mem_policy_codec_streams(uint64_t ram_bytes, unsigned streams, uint64_t per_stream)
{
	uint64_t budget = ram_bytes / 100 * MEM_BUDGET_PERCENT;
	uint64_t fixed = MEM_AGENT_BYTES + (uint64_t)streams * MEM_STREAM_BYTES +
			 ram_bytes / 4096 / 8 * MEM_BITMAPS;
	uint64_t n;

	if (!streams)
		return 0;
	n = budget > fixed && per_stream ? (budget - fixed) / per_stream : 0;
	if (n < 1)
		n = 1;
	return n < streams ? (unsigned)n : streams;
}
