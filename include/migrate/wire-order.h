/* SPDX-License-Identifier: MIT */
/*
 * Byte order of the payloads (docs/protocol.md §1.7): every integer field
 * of every payload struct travels little-endian.  Each struct that crosses
 * the wire has a layout here, the list of its fields as the compiler laid
 * them out; mig_wire_le() turns one or more such structs between host
 * order and the wire's in place.  It is its own inverse, so a sender calls
 * it on what it is about to send and a receiver on what it copied out of
 * a frame; on a little-endian host it does nothing.
 */
#ifndef MIGRATE_WIRE_ORDER_H
#define MIGRATE_WIRE_ORDER_H

#include <stddef.h>
#include <stdint.h>

struct mig_wire_layout;

/* `count` fields of `size` bytes from `off` (size 1: bytes, as they are),
 * or `count` structs of layout `sub`. */
struct mig_wire_field {
	uint16_t off;
	uint16_t size;
	uint16_t count;
	const struct mig_wire_layout *sub;
};

struct mig_wire_layout {
	const char *name;
	size_t size;
	const struct mig_wire_field *fields;
	unsigned nr;
};

/* Host order <-> the wire's for n consecutive structs of layout l at p. */
static inline void mig_wire_le(const struct mig_wire_layout *l, void *p, size_t n);
/* The same swap whatever the host's order (what mig_wire_le() does on a
 * big-endian host), for the tests. */
void mig_wire_swap(const struct mig_wire_layout *l, void *p, size_t n);
/* 0 when l's fields cover its struct exactly once, in order; else the
 * offset of the first byte that is covered twice or not at all, + 1. */
size_t mig_wire_layout_gap(const struct mig_wire_layout *l);
/* A u64 array (SUMS). */
void mig_wire_le64s(uint64_t *v, size_t n);

static inline void mig_wire_le(const struct mig_wire_layout *l, void *p, size_t n)
{
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
	mig_wire_swap(l, p, n);
#else
	(void)l; (void)p; (void)n;
#endif
}

/* Every payload struct's layout (transport/wire-order.c), and their list. */
extern const struct mig_wire_layout
	mig_wl_hello, mig_wl_error_msg, mig_wl_request, mig_wl_reply, mig_wl_vm_create,
	mig_wl_vm_ref, mig_wl_lab_wire, mig_wl_vm_info, mig_wl_vm_resolve, mig_wl_incoming,
	mig_wl_incoming_reply, mig_wl_outgoing, mig_wl_cancel, mig_wl_migration_info,
	mig_wl_event, mig_wl_event_device, mig_wl_stream_hello, mig_wl_setup,
	mig_wl_manifest_entry, mig_wl_round_end, mig_wl_loaded, mig_wl_sums_request,
	mig_wl_running, mig_wl_postcopy, mig_wl_page_request, mig_wl_pages_hdr, mig_wl_page_ent, mig_wl_device_data,
	mig_wl_session_entry, mig_wl_vm_described, mig_wl_vm_check, mig_wl_check_reply,
	mig_wl_check_result, mig_wl_journal_req, mig_wl_journal_reply, mig_wl_journal_rec,
	mig_wl_fault_plan, mig_wl_fault_report, mig_wl_lv_incoming, mig_wl_lv_incoming_reply,
	mig_wl_lv_outgoing, mig_wl_lv_domain_ref, mig_wl_lv_domain_info, mig_wl_hook_call,
	mig_wl_hook_verdict, mig_wl_handover;
extern const struct mig_wire_layout *const mig_wire_layouts[];

#endif
