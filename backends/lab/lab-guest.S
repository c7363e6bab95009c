/* SPDX-License-Identifier: MIT */
/*
 * The lab guest: 64-bit code run at CPL3 with IOPL=3 (on PVM hosts only paged
 * CPL3 code runs at native speed); an SEV guest's vCPU 0 runs it at CPL0,
 * where its WRMSR and hypercall are allowed (lab-abi.h).  No OS, no interrupts, no fixed layout:
 * RDI = vCPU index, RSI = the VMM's table (lab-abi.h).
 *
 * 1. Fill this vCPU's share of RAM with the seeded xorshift pattern.
 * 2. Loop over the first WSS pages of the share, pass after pass, writing the
 *    stamp (index + 1) << 48 | pass into the first and last word of each page.
 *    Before overwriting, check the page still holds what was last written there
 *    (the fill pattern on pass 1, the previous stamp after that) and report a
 *    mismatch through LAB_PORT_ERROR.
 *
 * The code is position independent and lives in the host binary's rodata; the
 * VMM copies it into guest RAM.
 *
 * Registers in the stamping loop:
 *   rbx per-vCPU area   r15 share base   r14 wss pages   r13 pass being written
 *   rbp stamp tag       r12 LCG mask     r11 TSC ticks per page (0 = unpaced)
 *   r10 pacing start    r9 pages paced since r10
 */
#include "lab-abi.h"

	/* One step of the fill pattern's xorshift64 on %rax (clobbers %rdx). */
	.macro XORSHIFT
	mov	%rax, %rdx
	shl	$13, %rdx
	xor	%rdx, %rax
	mov	%rax, %rdx
	shr	$7, %rdx
	xor	%rdx, %rax
	mov	%rax, %rdx
	shl	$17, %rdx
	xor	%rdx, %rax
	.endm

	.section .rodata.lab_guest, "a"
	.code64
	.balign 64
	.globl	lab_guest_start
	.globl	lab_guest_end

lab_guest_start:
	movabs	$LAB_TBL_MAGIC, %rax
	cmp	%rax, LAB_TBL_OFF_MAGIC(%rsi)
	jne	.Lpanic
	cmpq	$LAB_TBL_VERSION, LAB_TBL_OFF_VERSION(%rsi)
	jne	.Lpanic
	cmp	LAB_TBL_OFF_NR_VCPUS(%rsi), %rdi
	jae	.Lpanic
	mov	%rdi, %rax
	shl	$8, %rax			/* LAB_VA_SIZE */
	lea	LAB_TBL_VCPUS(%rsi,%rax), %rbx

	/* vCPU 0 of an SEV guest reports its memory first */
	cmpq	$0, LAB_X86_VA_SEV_MODE(%rbx)
	je	1f
	call	.Lsev_boot
1:
	/* A guest restored after the fill skips it: RIP is past this point then. */
	movq	$LAB_STATE_FILLING, LAB_VA_STATE(%rbx)
	mov	LAB_VA_REGION(%rbx), %r8
	mov	LAB_VA_REGION_PAGES(%rbx), %r9
	mov	LAB_VA_SEED(%rbx), %r10
	movabs	$LAB_FILL_MUL, %r11
	movq	$0, LAB_VA_FILLED(%rbx)
.Lfill_page:
	test	%r9, %r9
	jz	.Lfill_done
	mov	%r8, %rax
	shr	$12, %rax
	imul	%r11, %rax
	xor	%r10, %rax
	or	$1, %rax
	mov	%r8, %rdi
	mov	$512, %ecx
.Lfill_word:
	XORSHIFT
	mov	%rax, (%rdi)
	add	$8, %rdi
	dec	%ecx
	jnz	.Lfill_word
	add	$4096, %r8
	dec	%r9
	incq	LAB_VA_FILLED(%rbx)
	jmp	.Lfill_page
.Lfill_done:
	mov	LAB_VA_ID(%rbx), %rax
	mov	$LAB_PORT_FILL_DONE, %dx
	outb	%al, %dx

	movq	$LAB_STATE_RUNNING, LAB_VA_STATE(%rbx)
	mov	LAB_VA_WSS_PAGES(%rbx), %r14
	test	%r14, %r14
	jz	.Lidle
	mov	LAB_VA_REGION(%rbx), %r15
	mov	LAB_VA_ID(%rbx), %rbp
	inc	%rbp
	shl	$LAB_STAMP_SHIFT, %rbp
	mov	LAB_VA_PASS(%rbx), %r13
	inc	%r13
	/* r12 = next power of two >= wss pages, minus one */
	xor	%r12d, %r12d
	mov	%r14, %rax
	dec	%rax
	jz	1f
	bsr	%rax, %rcx
	mov	$2, %r12d
	shl	%cl, %r12
	dec	%r12
1:	mov	LAB_VA_TSC_PER_PAGE(%rbx), %r11
	rdtsc
	shl	$32, %rdx
	or	%rdx, %rax
	mov	%rax, %r10
	xor	%r9d, %r9d

.Lpass:
	cmpq	$0, LAB_VA_PATTERN(%rbx)
	jne	.Lrandom_pass
	xor	%r8d, %r8d
.Lseq_next:
	cmp	%r14, %r8
	jae	.Lpass_done
	call	.Ltouch_page
	inc	%r8
	jmp	.Lseq_next

	/* Random order: a full-period LCG modulo r12 + 1, skipping indices >= wss,
	 * visits every page exactly once per pass; the start point moves each pass. */
.Lrandom_pass:
	mov	%r13, %rax
	movabs	$LAB_FILL_MUL, %rcx
	imul	%rcx, %rax
	and	%r12, %rax
	mov	%rax, %rsi
	xor	%edi, %edi
.Lrandom_next:
	cmp	%r14, %rdi
	jae	.Lpass_done
	movabs	$LAB_LCG_MUL, %rax
	imul	%rsi, %rax
	inc	%rax
	and	%r12, %rax
	mov	%rax, %rsi
	cmp	%r14, %rsi
	jae	.Lrandom_next
	mov	%rsi, %r8
	call	.Ltouch_page
	inc	%rdi
	jmp	.Lrandom_next

.Lpass_done:
	incq	LAB_VA_PASS(%rbx)
	inc	%r13
	cmpq	$0, LAB_X86_VA_SEV_MODE(%rbx)
	je	.Lpass
	call	.Lsev_tick
	jmp	.Lpass

	/* Check and stamp page r8 of the share.  Clobbers rax, rcx, rdx. */
.Ltouch_page:
	mov	%r8, %rcx
	shl	$12, %rcx
	add	%r15, %rcx
	cmp	$1, %r13
	jne	.Lcheck_stamp
	/* pass 1: the first word must still be the fill pattern */
	mov	%rcx, %rax
	shr	$12, %rax
	movabs	$LAB_FILL_MUL, %rdx
	imul	%rdx, %rax
	xor	LAB_VA_SEED(%rbx), %rax
	or	$1, %rax
	XORSHIFT
	mov	(%rcx), %rdx
	cmp	%rdx, %rax
	je	.Lstamp
	call	.Lreport
	jmp	.Lstamp
.Lcheck_stamp:
	lea	-1(%r13), %rax
	or	%rbp, %rax
	mov	(%rcx), %rdx
	cmp	%rdx, %rax
	je	1f
	call	.Lreport
1:	mov	4088(%rcx), %rdx
	cmp	%rdx, %rax
	je	.Lstamp
	call	.Lreport
.Lstamp:
	mov	%r13, %rax
	or	%rbp, %rax
	mov	%rax, (%rcx)
	mov	%rax, 4088(%rcx)
	incq	LAB_VA_PAGES(%rbx)
	test	%r11, %r11
	jnz	.Lpace
	ret

	/* Pacing: page r9 is due at r10 + r9 * r11.  Ahead of schedule, ask the
	 * VMM to sleep; more than 1024 pages off schedule either way (a pause, a
	 * migration, a TSC step), restart the schedule instead of bursting. */
.Lpace:
	push	%rsi
	push	%rdi
	inc	%r9
	mov	%r9, %rsi
	imul	%r11, %rsi
	add	%r10, %rsi			/* rsi = deadline */
	mov	%r11, %rdi
	shl	$10, %rdi			/* rdi = slack */
	rdtsc
	shl	$32, %rdx
	or	%rdx, %rax			/* rax = now */
	mov	%rax, %rcx
	sub	%rsi, %rcx			/* rcx = now - deadline */
	jb	.Lahead
	cmp	%rdi, %rcx
	jbe	.Lpace_out
	jmp	.Lrestart
.Lahead:
	neg	%rcx				/* rcx = deadline - now */
	cmp	%rdi, %rcx
	ja	.Lrestart
	mov	%rcx, LAB_VA_SLEEP_TICKS(%rbx)
	mov	LAB_VA_ID(%rbx), %rax
	mov	$LAB_PORT_SLEEP, %dx
	outb	%al, %dx
	jmp	.Lpace_out
.Lrestart:
	mov	%rax, %r10
	xor	%r9d, %r9d
.Lpace_out:
	pop	%rdi
	pop	%rsi
	ret

	/* rcx = page, rax = expected, rdx = found; preserves rax and rcx */
.Lreport:
	mov	%rcx, LAB_VA_ERR_GPA(%rbx)
	mov	%rax, LAB_VA_ERR_EXPECT(%rbx)
	mov	%rdx, LAB_VA_ERR_FOUND(%rbx)
	incq	LAB_VA_ERRORS(%rbx)
	push	%rax
	mov	LAB_VA_ID(%rbx), %rax
	mov	$LAB_PORT_ERROR, %dx
	outb	%al, %dx
	pop	%rax
	ret

.Lidle:
	cmpq	$0, LAB_X86_VA_SEV_MODE(%rbx)
	je	1f
	call	.Lsev_tick
1:	mov	LAB_VA_ID(%rbx), %rax
	mov	$LAB_PORT_IDLE, %dx
	outb	%al, %dx
	jmp	.Lidle

	/* ---- the SEV guest's part (lab-abi.h), vCPU 0 only ----
	 * Clobber rax, rcx, rdx, rsi, rdi and r8; keep the others. */

	/* At boot: every RAM page encrypted, then the VMM's table shared. */
.Lsev_boot:
	rdtsc
	shl	$32, %rdx
	or	%rdx, %rax
	mov	%rax, LAB_X86_VA_SEV_T0(%rbx)
	add	LAB_X86_VA_SEV_FLIP(%rbx), %rax
	mov	%rax, LAB_X86_VA_SEV_NEXT_FLIP(%rbx)
	xor	%edi, %edi
	mov	LAB_X86_VA_SEV_RAM_PAGES(%rbx), %rsi
	mov	$LAB_SEV_MAP_ENCRYPTED, %edx
	call	.Lsev_map
	mov	LAB_X86_VA_SEV_SHARED(%rbx), %rdi
	mov	$LAB_SEV_SHARED_PAGES, %esi
	xor	%edx, %edx
	jmp	.Lsev_map

	/* Between passes: the gate's phases, then a flip when one is due. */
.Lsev_tick:
	rdtsc
	shl	$32, %rdx
	or	%rdx, %rax
	mov	%rax, %r8			/* r8 = now */
	cmpq	$0, LAB_X86_VA_SEV_PHASE(%rbx)
	jne	1f
	sub	LAB_X86_VA_SEV_T0(%rbx), %rax
	cmp	LAB_X86_VA_SEV_READY(%rbx), %rax
	jb	3f
	mov	$1, %edi			/* KVM_MIGRATION_READY */
	call	.Lsev_wrmsr
	movq	$1, LAB_X86_VA_SEV_PHASE(%rbx)
	mov	%r8, LAB_X86_VA_SEV_PHASE_T(%rbx)
	jmp	3f
1:	cmpq	$1, LAB_X86_VA_SEV_PHASE(%rbx)
	jne	3f
	mov	LAB_X86_VA_SEV_UNREADY(%rbx), %rcx
	test	%rcx, %rcx
	jz	3f
	sub	LAB_X86_VA_SEV_PHASE_T(%rbx), %rax
	cmp	%rcx, %rax
	jb	3f
	xor	%edi, %edi
	call	.Lsev_wrmsr
	movq	$2, LAB_X86_VA_SEV_PHASE(%rbx)
	mov	%r8, LAB_X86_VA_SEV_PHASE_T(%rbx)
3:	mov	LAB_X86_VA_SEV_FLIP(%rbx), %rax
	test	%rax, %rax
	jz	9f
	cmp	LAB_X86_VA_SEV_NEXT_FLIP(%rbx), %r8
	jb	9f
	add	%r8, %rax
	mov	%rax, LAB_X86_VA_SEV_NEXT_FLIP(%rbx)
	incq	LAB_X86_VA_SEV_FLIPS(%rbx)
	/* odd flips share the range, even ones encrypt it again */
	mov	LAB_X86_VA_SEV_FLIPS(%rbx), %rdx
	and	$1, %edx
	xor	$1, %edx
	shl	$4, %edx
	mov	LAB_X86_VA_SEV_FLIP_GPA(%rbx), %rdi
	mov	$LAB_SEV_FLIP_PAGES, %esi
	call	.Lsev_map
9:	ret

	/* MSR_KVM_MIGRATION_CONTROL = rdi (vCPU 0 runs at CPL0). */
.Lsev_wrmsr:
	mov	$LAB_SEV_MSR, %ecx
	mov	%rdi, %rax
	mov	%rdi, %rdx
	shr	$32, %rdx
	wrmsr
	ret

	/* KVM_HC_MAP_GPA_RANGE(rdi gpa, rsi pages, rdx attributes), by the
	 * hypercall or the doorbell; a non-zero result is an error. */
.Lsev_map:
	cmpq	$LAB_SEV_MODE_DOORBELL, LAB_X86_VA_SEV_MODE(%rbx)
	je	1f
	push	%rbx
	mov	%rdi, %rbx
	mov	%rsi, %rcx
	mov	$LAB_SEV_HC_MAP_GPA_RANGE, %eax
	vmmcall
	pop	%rbx
	jmp	2f
1:	mov	%rdi, LAB_X86_VA_SEV_ARG0(%rbx)
	mov	%rsi, LAB_X86_VA_SEV_ARG1(%rbx)
	mov	%rdx, LAB_X86_VA_SEV_ARG2(%rbx)
	mov	LAB_VA_ID(%rbx), %rax
	mov	$LAB_PORT_SEV_MAP, %dx
	outb	%al, %dx
	mov	LAB_X86_VA_SEV_ARG2(%rbx), %rax
2:	test	%rax, %rax
	jz	3f
	incq	LAB_VA_ERRORS(%rbx)
3:	ret

.Lpanic:
	movq	$LAB_STATE_PANIC, %rax
	mov	$LAB_PORT_PANIC, %dx
	outb	%al, %dx
	jmp	.Lpanic
lab_guest_end:

	.section .note.GNU-stack, "", @progbits
