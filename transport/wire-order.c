// SPDX-License-Identifier: MIT
/*
 * The payload structs' layouts (wire-order.h) and the swap.  A struct that
 * gains a field must gain it here too: test-wire checks that each layout
 * covers its struct exactly (mig_wire_layout_gap()), so a field left out
 * fails the tests on every host, not only on a big-endian one.
 */
#include <byteswap.h>
#include <endian.h>
#include <string.h>

#include <migrate/control.h>
#include <migrate/journal.h>
#include <migrate/stream.h>
#include <migrate/vm.h>
#include <migrate/wire-order.h>

#include "util.h"

#define F(T, m)  { offsetof(struct T, m), sizeof(((struct T *)0)->m), 1, NULL }
#define A(T, m)  { offsetof(struct T, m), sizeof(((struct T *)0)->m[0]), \
		   ARRAY_SIZE(((struct T *)0)->m), NULL }
#define B(T, m)  { offsetof(struct T, m), 1, sizeof(((struct T *)0)->m), NULL }
#define S(T, m, L) { offsetof(struct T, m), 0, 1, &(L) }
#define LAYOUT(name, T, ...) \
	static const struct mig_wire_field name##_fields[] = { __VA_ARGS__ }; \
	const struct mig_wire_layout mig_wl_##name = { \
		#T, sizeof(struct T), name##_fields, ARRAY_SIZE(name##_fields) }

/* control.h */
LAYOUT(hello, mig_hello, F(mig_hello, role), F(mig_hello, flags), B(mig_hello, software));
LAYOUT(error_msg, mig_error_msg, F(mig_error_msg, code), F(mig_error_msg, pad),
       B(mig_error_msg, msg));
LAYOUT(request, mig_request, F(mig_request, op), F(mig_request, pad));
LAYOUT(reply, mig_reply, F(mig_reply, status), F(mig_reply, flags), B(mig_reply, msg));
LAYOUT(vm_create, mig_vm_create, B(mig_vm_create, name), B(mig_vm_create, spec));
LAYOUT(vm_ref, mig_vm_ref, B(mig_vm_ref, name));
LAYOUT(lab_wire, mig_lab_wire,
       F(mig_lab_wire, mem_bytes), F(mig_lab_wire, wss_bytes), F(mig_lab_wire, rate),
       F(mig_lab_wire, seed), F(mig_lab_wire, vcpus), F(mig_lab_wire, pattern),
       F(mig_lab_wire, dirty_log), F(mig_lab_wire, ring_entries), F(mig_lab_wire, vfio),
       F(mig_lab_wire, vfio_v1), F(mig_lab_wire, ccw), F(mig_lab_wire, msi),
       F(mig_lab_wire, vfio_flags), F(mig_lab_wire, vfio_opts),
       F(mig_lab_wire, vfio_fail_from), F(mig_lab_wire, vfio_fail_to),
       F(mig_lab_wire, vfio_fail_err), F(mig_lab_wire, vfio_fail_where),
       F(mig_lab_wire, vfio_rate), B(mig_lab_wire, mdev), F(mig_lab_wire, sev),
       F(mig_lab_wire, sev_report), F(mig_lab_wire, ram), F(mig_lab_wire, pad), F(mig_lab_wire, sev_ready_ms),
       F(mig_lab_wire, sev_unready_ms), F(mig_lab_wire, sev_flip_ms));
LAYOUT(vm_info, mig_vm_info,
       B(mig_vm_info, name), F(mig_vm_info, state), F(mig_vm_info, vcpus),
       F(mig_vm_info, mem_bytes), F(mig_vm_info, wss_bytes), F(mig_vm_info, passes),
       F(mig_vm_info, errors), S(mig_vm_info, lab, mig_wl_lab_wire),
       B(mig_vm_info, held_by), B(mig_vm_info, held_peer));
LAYOUT(vm_resolve, mig_vm_resolve, B(mig_vm_resolve, name), B(mig_vm_resolve, id),
       F(mig_vm_resolve, action), F(mig_vm_resolve, pad));
LAYOUT(incoming, mig_incoming,
       B(mig_incoming, id), B(mig_incoming, secret), B(mig_incoming, name),
       F(mig_incoming, streams), F(mig_incoming, encrypt), B(mig_incoming, listen_host),
       S(mig_incoming, lab, mig_wl_lab_wire), F(mig_incoming, flags), F(mig_incoming, pad));
LAYOUT(incoming_reply, mig_incoming_reply, B(mig_incoming_reply, addr));
LAYOUT(outgoing, mig_outgoing,
       B(mig_outgoing, id), B(mig_outgoing, secret), B(mig_outgoing, name),
       B(mig_outgoing, dest_addr), F(mig_outgoing, streams), F(mig_outgoing, codec),
       F(mig_outgoing, level), F(mig_outgoing, verify), F(mig_outgoing, downtime_limit_ms),
       F(mig_outgoing, max_bandwidth_bps), F(mig_outgoing, timeout_ms),
       F(mig_outgoing, timeout_action), F(mig_outgoing, checksum),
       F(mig_outgoing, switchover_timeout_ms), F(mig_outgoing, encrypt),
       F(mig_outgoing, handover), F(mig_outgoing, converge), F(mig_outgoing, max_throttle_pct),
       F(mig_outgoing, stall_action), F(mig_outgoing, postcopy_after), F(mig_outgoing, stall_ms),
       F(mig_outgoing, stall_bytes), F(mig_outgoing, recover_ms));
LAYOUT(cancel, mig_cancel, B(mig_cancel, id));
LAYOUT(migration_info, mig_migration_info,
       B(mig_migration_info, id), B(mig_migration_info, name), B(mig_migration_info, peer),
       F(mig_migration_info, side), F(mig_migration_info, state),
       F(mig_migration_info, phase), F(mig_migration_info, round),
       F(mig_migration_info, elapsed_ms), F(mig_migration_info, ram_bytes),
       F(mig_migration_info, transferred_bytes), F(mig_migration_info, remaining_bytes),
       F(mig_migration_info, throughput_bps), F(mig_migration_info, expected_downtime_ms),
       B(mig_migration_info, error));
LAYOUT(event, mig_event,
       F(mig_event, kind), F(mig_event, phase), F(mig_event, round), F(mig_event, result),
       F(mig_event, owner), F(mig_event, streams), F(mig_event, codec),
       F(mig_event, verified), F(mig_event, nr_devices), F(mig_event, handover),
       F(mig_event, elapsed_ms), F(mig_event, remaining_bytes),
       F(mig_event, dirty_rate_bps), F(mig_event, throughput_bps),
       F(mig_event, expected_downtime_ms), F(mig_event, total_ms), F(mig_event, setup_ms),
       F(mig_event, downtime_ms), F(mig_event, ram_total_bytes),
       F(mig_event, transferred_bytes), F(mig_event, wire_bytes), F(mig_event, zero_pages),
       F(mig_event, normal_pages), A(mig_event, phase_start_ms),
       A(mig_event, phase_duration_ms), F(mig_event, vcpu_state_bytes),
       A(mig_event, digest_src), A(mig_event, digest_dst), F(mig_event, dst_passes_before),
       F(mig_event, dst_passes_after), F(mig_event, dst_errors),
       F(mig_event, rejected_streams), F(mig_event, src_cpu_ms), F(mig_event, dst_cpu_ms),
       F(mig_event, precopy_wire_bytes), F(mig_event, verify_ms), F(mig_event, torn_pages),
       F(mig_event, checksum), F(mig_event, same_host), B(mig_event, error),
       F(mig_event, src_held), F(mig_event, encrypted), F(mig_event, switchover_timeout_ms),
       F(mig_event, kvm_exits), F(mig_event, kvm_page_faults), F(mig_event, kvm_halt_exits),
       F(mig_event, kvm_remote_tlb_flushes), F(mig_event, kvm_valid), F(mig_event, pad2),
       F(mig_event, kvm_halt_successful_polls), F(mig_event, kvm_halt_attempted_polls),
       F(mig_event, kvm_halt_poll_success_ns), F(mig_event, kvm_halt_poll_fail_ns),
       F(mig_event, kvm_halt_wait_ns), F(mig_event, kvm_vcpus),
       F(mig_event, kvm_halted_permille), F(mig_event, throttle_pct), F(mig_event, converge),
       F(mig_event, stall_action), F(mig_event, pad3), F(mig_event, stall_ms),
       F(mig_event, throttle_ms), F(mig_event, guest_rate), F(mig_event, guest_rate_free),
       F(mig_event, postcopy), F(mig_event, postcopy_round), F(mig_event, postcopy_pages),
       F(mig_event, postcopy_requested), F(mig_event, postcopy_faults),
       F(mig_event, postcopy_worst_stall_us), F(mig_event, postcopy_ms),
       F(mig_event, postcopy_served), F(mig_event, postcopy_breaks),
       F(mig_event, postcopy_guest_rate));
LAYOUT(event_device, mig_event_device, F(mig_event_device, cls), F(mig_event_device, id),
       F(mig_event_device, state), F(mig_event_device, notes), F(mig_event_device, bytes));

/* stream.h, vm.h, wire.h */
LAYOUT(stream_hello, mig_stream_hello, B(mig_stream_hello, id), F(mig_stream_hello, index),
       F(mig_stream_hello, nstreams), B(mig_stream_hello, nonce), B(mig_stream_hello, mac),
       F(mig_stream_hello, flags), F(mig_stream_hello, pad));
LAYOUT(setup, mig_setup, B(mig_setup, vm_desc), F(mig_setup, nr_pages),
       F(mig_setup, page_size), F(mig_setup, codec), B(mig_setup, name), F(mig_setup, flags),
       F(mig_setup, nr_devices));
LAYOUT(handover, mig_handover, F(mig_handover, ram_bytes), F(mig_handover, nr_pages));
LAYOUT(manifest_entry, mig_manifest_entry, F(mig_manifest_entry, cls),
       F(mig_manifest_entry, instance), F(mig_manifest_entry, version),
       F(mig_manifest_entry, flags), F(mig_manifest_entry, desc_len),
       F(mig_manifest_entry, pad), B(mig_manifest_entry, desc));
LAYOUT(round_end, mig_round_end, F(mig_round_end, round), F(mig_round_end, final),
       F(mig_round_end, frames));
LAYOUT(loaded, mig_loaded, F(mig_loaded, status), F(mig_loaded, pad), A(mig_loaded, digest),
       F(mig_loaded, verify_ns), F(mig_loaded, rejected_streams), F(mig_loaded, load_ns),
       F(mig_loaded, torn_pages), B(mig_loaded, msg));
LAYOUT(sums_request, mig_sums_request, F(mig_sums_request, first_page),
       F(mig_sums_request, count), F(mig_sums_request, pages_per_sum));
LAYOUT(running, mig_running, F(mig_running, kind), F(mig_running, status),
       F(mig_running, start_realtime_ns), F(mig_running, passes), F(mig_running, errors),
       F(mig_running, cpu_ms), F(mig_running, since_start_ns),
       F(mig_running, since_commit_ns), F(mig_running, progress), A(mig_running, pc_digest),
       F(mig_running, pc_faults), F(mig_running, pc_requested), F(mig_running, pc_worst_stall_us),
       F(mig_running, pc_ms), F(mig_running, pc_pages), F(mig_running, pc_progress),
       B(mig_running, msg));
LAYOUT(postcopy, mig_postcopy, F(mig_postcopy, nr_pages), F(mig_postcopy, to_come),
       F(mig_postcopy, words), F(mig_postcopy, round), F(mig_postcopy, breaks));
LAYOUT(page_request, mig_page_request, F(mig_page_request, count), F(mig_page_request, pad),
       A(mig_page_request, pfn));
LAYOUT(pages_hdr, mig_pages_hdr, F(mig_pages_hdr, count), F(mig_pages_hdr, zero_count),
       F(mig_pages_hdr, round), F(mig_pages_hdr, data_len));
LAYOUT(page_ent, mig_page_ent, F(mig_page_ent, page), F(mig_page_ent, sum));
LAYOUT(device_data, mig_device_data, F(mig_device_data, cls), F(mig_device_data, instance),
       F(mig_device_data, offset), F(mig_device_data, round), F(mig_device_data, len));
LAYOUT(vm_described, mig_vm_described, S(mig_vm_described, lab, mig_wl_lab_wire),
       F(mig_vm_described, nr_devices), F(mig_vm_described, pad));
LAYOUT(vm_check, mig_vm_check, B(mig_vm_check, name),
       S(mig_vm_check, vm, mig_wl_vm_described));
LAYOUT(check_reply, mig_check_reply, F(mig_check_reply, nr_results),
       F(mig_check_reply, refused), F(mig_check_reply, omitted), F(mig_check_reply, pad));
LAYOUT(check_result, mig_check_result, F(mig_check_result, cls),
       F(mig_check_result, instance), F(mig_check_result, count),
       F(mig_check_result, verdict), B(mig_check_result, policy), B(mig_check_result, msg));
LAYOUT(session_entry, mig_session_entry, F(mig_session_entry, cls),
       F(mig_session_entry, instance), F(mig_session_entry, len), F(mig_session_entry, pad));

LAYOUT(fault_plan, mig_fault_plan, B(mig_fault_plan, vm), F(mig_fault_plan, action),
       F(mig_fault_plan, point), F(mig_fault_plan, stage), F(mig_fault_plan, dev_class),
       F(mig_fault_plan, from), F(mig_fault_plan, to), F(mig_fault_plan, frame_type),
       F(mig_fault_plan, stream), F(mig_fault_plan, nth), F(mig_fault_plan, err),
       F(mig_fault_plan, ms), F(mig_fault_plan, skew_ms), F(mig_fault_plan, net_fault),
       F(mig_fault_plan, net_stream), F(mig_fault_plan, net_to_source),
       F(mig_fault_plan, net_frame_type), F(mig_fault_plan, net_frame),
       F(mig_fault_plan, net_byte), F(mig_fault_plan, net_conn),
       F(mig_fault_plan, net_jitter_ms), F(mig_fault_plan, net_rate),
       F(mig_fault_plan, net_data), F(mig_fault_plan, pad), F(mig_fault_plan, seed));

LAYOUT(fault_report, mig_fault_report, F(mig_fault_report, taken),
       F(mig_fault_report, fired), B(mig_fault_report, what));

/* libvirt domains */
LAYOUT(lv_incoming, mig_lv_incoming, B(mig_lv_incoming, id), B(mig_lv_incoming, secret),
       B(mig_lv_incoming, domain), B(mig_lv_incoming, listen_host), F(mig_lv_incoming, flags),
       F(mig_lv_incoming, encrypt));
LAYOUT(lv_incoming_reply, mig_lv_incoming_reply, B(mig_lv_incoming_reply, addr),
       B(mig_lv_incoming_reply, run_dir));
LAYOUT(lv_outgoing, mig_lv_outgoing, B(mig_lv_outgoing, id), B(mig_lv_outgoing, secret),
       B(mig_lv_outgoing, domain), B(mig_lv_outgoing, dest_addr), B(mig_lv_outgoing, run_dir),
       F(mig_lv_outgoing, parallel), F(mig_lv_outgoing, flags),
       F(mig_lv_outgoing, max_bandwidth_bps), F(mig_lv_outgoing, downtime_limit_ms),
       F(mig_lv_outgoing, timeout_ms), F(mig_lv_outgoing, timeout_action),
       F(mig_lv_outgoing, encrypt), F(mig_lv_outgoing, postcopy_after),
       F(mig_lv_outgoing, converge));
LAYOUT(lv_domain_ref, mig_lv_domain_ref, B(mig_lv_domain_ref, domain));
LAYOUT(lv_domain_info, mig_lv_domain_info, F(mig_lv_domain_info, state),
       F(mig_lv_domain_info, persistent), B(mig_lv_domain_info, uuid));

LAYOUT(hook_call, mig_hook_call, B(mig_hook_call, domain), F(mig_hook_call, op),
       F(mig_hook_call, subop), F(mig_hook_call, flags), F(mig_hook_call, xml_len));
LAYOUT(hook_verdict, mig_hook_verdict, F(mig_hook_verdict, status),
       F(mig_hook_verdict, refused), F(mig_hook_verdict, journaled), F(mig_hook_verdict, pad),
       F(mig_hook_verdict, seq), B(mig_hook_verdict, host), B(mig_hook_verdict, uuid),
       B(mig_hook_verdict, msg));

/* journal.h */
LAYOUT(journal_req, mig_journal_req, F(mig_journal_req, since_ns),
       F(mig_journal_req, after_seq));
LAYOUT(journal_reply, mig_journal_reply, F(mig_journal_reply, next_seq),
       F(mig_journal_reply, dropped), F(mig_journal_reply, count),
       F(mig_journal_reply, capacity));
LAYOUT(journal_rec, mig_journal_rec, B(mig_journal_rec, vm), B(mig_journal_rec, mig_id),
       F(mig_journal_rec, seq), F(mig_journal_rec, realtime_ns),
       F(mig_journal_rec, monotonic_ns), F(mig_journal_rec, vcpu), F(mig_journal_rec, event),
       F(mig_journal_rec, pid), F(mig_journal_rec, detail));

const struct mig_wire_layout *const mig_wire_layouts[] = {
	&mig_wl_hello, &mig_wl_error_msg, &mig_wl_request, &mig_wl_reply, &mig_wl_vm_create,
	&mig_wl_vm_ref, &mig_wl_lab_wire, &mig_wl_vm_info, &mig_wl_vm_resolve,
	&mig_wl_incoming, &mig_wl_incoming_reply, &mig_wl_outgoing, &mig_wl_cancel,
	&mig_wl_migration_info, &mig_wl_event, &mig_wl_event_device, &mig_wl_stream_hello,
	&mig_wl_setup, &mig_wl_manifest_entry, &mig_wl_round_end, &mig_wl_loaded,
	&mig_wl_sums_request, &mig_wl_running, &mig_wl_postcopy, &mig_wl_page_request, &mig_wl_pages_hdr, &mig_wl_page_ent,
	&mig_wl_device_data, &mig_wl_session_entry, &mig_wl_vm_described, &mig_wl_vm_check,
	&mig_wl_check_reply, &mig_wl_check_result, &mig_wl_journal_req, &mig_wl_journal_reply,
	&mig_wl_journal_rec, &mig_wl_fault_plan, &mig_wl_fault_report, &mig_wl_lv_incoming,
	&mig_wl_lv_incoming_reply, &mig_wl_lv_outgoing, &mig_wl_lv_domain_ref,
	&mig_wl_lv_domain_info, &mig_wl_hook_call, &mig_wl_hook_verdict, NULL,
};

void mig_wire_swap(const struct mig_wire_layout *l, void *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		uint8_t *s = (uint8_t *)p + i * l->size;

		for (unsigned f = 0; f < l->nr; f++) {
			const struct mig_wire_field *fd = &l->fields[f];
			uint8_t *q = s + fd->off;

			if (fd->sub) {
				mig_wire_swap(fd->sub, q, fd->count);
				continue;
			}
			for (unsigned k = 0; k < fd->count; k++, q += fd->size) {
				if (fd->size == 2) {
					uint16_t v;

					memcpy(&v, q, 2);
					v = bswap_16(v);
					memcpy(q, &v, 2);
				} else if (fd->size == 4) {
					uint32_t v;

					memcpy(&v, q, 4);
					v = bswap_32(v);
					memcpy(q, &v, 4);
				} else if (fd->size == 8) {
					uint64_t v;

					memcpy(&v, q, 8);
					v = bswap_64(v);
					memcpy(q, &v, 8);
				}
			}
		}
	}
}

size_t mig_wire_layout_gap(const struct mig_wire_layout *l)
{
	size_t at = 0;

	for (unsigned f = 0; f < l->nr; f++) {
		const struct mig_wire_field *fd = &l->fields[f];
		size_t len = fd->sub ? fd->sub->size * fd->count : (size_t)fd->size * fd->count;

		if (fd->off != at || (fd->sub && mig_wire_layout_gap(fd->sub)))
			return at + 1;
		at += len;
	}
	return at == l->size ? 0 : at + 1;
}

void mig_wire_le64s(uint64_t *v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		v[i] = htole64(v[i]);
}
