/* SPDX-License-Identifier: MIT */
/* A raw arm64 VM for the real-kernel GIC tests (gic-kernel.c,
 * vlpi-kernel.c): vCPUs made and never run, a vgic-v3 with one ITS under
 * the GIC class's kernel backend; what a guest driver would do is done
 * through the same registers, its tables in guest RAM at the sim's layout
 * (gic/sim.h), so that what the kernel writes there can be read back. */
#ifndef TESTS_REALKERNEL_RAW_VM_H
#define TESTS_REALKERNEL_RAW_VM_H

#include <stdbool.h>
#include <stdint.h>

#include <migrate/error.h>

#include "gic/gic.h"

#define RAM_GPA   0x40000000ULL
#define RAM_BYTES (16ULL << 20)
#define AREA_GPA  (RAM_GPA + (4ULL << 20))     /* the guest's GIC tables */
#define GICD_BASE 0x08000000ULL
#define GITS_BASE 0x08080000ULL
#define GICR_BASE 0x080a0000ULL
#define VCPUS 2

struct vm {
	int fd;
	int vcpu[VCPUS];
	uint8_t *ram;
	unsigned cmd_at;             /* the ITS command queue's write offset */
	struct gic_kernel k;
	bool have_k;
	struct gic_dev g;
};

/* A device the guest maps in its ITS: its events 0..events-1 become LPIs
 * lpi.., each taken by vCPU lpi % VCPUS. */
struct raw_map {
	uint32_t devid;
	unsigned events;
	uint32_t lpi;
};

/* vm is left to vm_destroy() whether or not this succeeds. */
int vm_create(int kvm, struct vm *vm, struct mig_error *err);
/* Everything goes, so the kernel drops the VM and its irqfds with it (a
 * VFIO device's eventfd is then free for another VM's bypass); vm is left
 * with fd -1. */
void vm_destroy(struct vm *vm);

/* The kernel backend's attribute access (its: an ITS, or -1 for the vgic). */
int attr(struct vm *vm, int its, bool set, uint32_t grp, uint64_t a, void *v);
int its_set(struct vm *vm, uint32_t off, uint64_t v);
uint64_t its_get(struct vm *vm, uint32_t off);     /* ~0 when refused */
int rd_set(struct vm *vm, unsigned cpu, uint32_t off, uint32_t v);
uint32_t rd_get(struct vm *vm, unsigned cpu, uint32_t off);

uint8_t *gpa(struct vm *vm, uint64_t a);
/* One ITS command queued, and CWRITER moved past it: a userspace CWRITER
 * write runs the queue of an enabled ITS. */
int cmd(struct vm *vm, uint64_t w0, uint64_t w1, uint64_t w2);
/* What a guest driver does: LPIs on in every redistributor, the ITS's
 * tables and queue, a collection per vCPU, and each of the n devices'
 * ITT and events mapped.  Done when the kernel has run the queue. */
int guest_setup(struct vm *vm, const struct raw_map *map, unsigned n);
/* The LPI's bit as the kernel last wrote its vCPU's pending table. */
bool pend_bit(struct vm *vm, uint32_t intid);
/* The class stepped to `to` by the states the walker would take. */
int step_to(struct gic_dev *g, int to, struct mig_error *err);

#endif
