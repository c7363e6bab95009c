/* SPDX-License-Identifier: MIT */
/*
 * bench/converge.py's QEMU guest: a 64 KiB -bios image whose vCPUs write
 * their share of a working set, pass after pass, as the lab guest does
 * (backends/lab/lab-guest.S), and count their passes in RAM where QMP can
 * read them.
 *
 * On this host /dev/kvm comes from PVM, which emulates every instruction
 * that is not paged CPL3 code (docs/performance.md, "The lab VM"), so the
 * way to CPL3 is kept to a few hundred instructions and the page tables
 * are copied with one rep movs:
 *
 *  - Reset (BSP) and the SIPI (APs, vector 0xf8) both enter real mode at
 *    0xf800:0, the image's offset 0x8000 in the ISA BIOS alias at 0xf0000.
 *  - Flat 32-bit protected mode.  The BSP (IA32_APIC_BASE bit 8) copies the
 *    page tables to 0x1000, zeroes the mailbox page and sends INIT and one
 *    SIPI to all other vCPUs through its local APIC.
 *  - Long mode, identity mapped 0-4 GiB with 2 MiB user pages (1 GiB pages
 *    fault as reserved under PVM), then iretq to CPL3 with IOPL 3 and
 *    interrupts off.
 *  - vCPU i (its APIC ID) owns share i of the working set (params below,
 *    patched by the script): it stores one 8-byte word into each 4 KiB
 *    page of its share in order, (i + 1) << 48 | pass, and after each full
 *    pass stores the TSC at MAILBOX + 64 * i + 8 and increments its pass
 *    counter at MAILBOX + 64 * i.
 *  - Stalls: the vCPU reads the TSC after every store; a gap longer than
 *    stall_ticks (a write fault that waited, a throttle's sleep, the
 *    stop-and-copy, a post-copy page fetched from the source, the host
 *    running something else) is logged as (TSC after it, its length) in
 *    the vCPU's ring of RING_ENTRIES at RINGS + 64 KiB * i; the number
 *    logged is at MAILBOX + 64 * i + 16, the longest at + 24.
 *
 * Descriptors and page-table entries carry their accessed (and dirty) bits
 * already: the GDT stays in ROM, where the CPU could not set them.
 *
 * Build: gcc -c converge-guest.S; ld -Ttext=0xf0000 -e entry16
 * --oformat=binary: exactly 65536 bytes.
 */

#define BASE		0xf0000		/* where the image's first byte is */
#define ENTRY		0xf8000		/* SIPI vector 0xf8 */
#define PT		0x1000		/* PML4, PDPT, 4 PDs: 0x1000-0x6fff */
#define STACKS		0x7000		/* 256 bytes per vCPU, growing down */
#define MAILBOX		0x8000		/* pass counters, 64 bytes apart */
#define STARTED		0x8800		/* 1 once a vCPU reached CPL3's door */
#define RINGS		0x10000		/* stall logs, 64 KiB per vCPU, up to 8 */
#define RING_ENTRIES	4096
#define APIC		0xfee00000

#define SEL_CODE32	0x08
#define SEL_DATA	0x10
#define SEL_CODE64	0x18
#define SEL_UDATA	0x23
#define SEL_UCODE64	0x2b

	.text
	.globl entry16
image:
	/* page tables, copied to PT by the BSP (P|RW|US|A, and D|PS in the PDs) */
pt_rom:
	.quad PT + 0x1000 + 0x27
	.fill 511, 8, 0
	.quad PT + 0x2000 + 0x27, PT + 0x3000 + 0x27, PT + 0x4000 + 0x27, PT + 0x5000 + 0x27
	.fill 508, 8, 0
	.set i, 0
	.rept 2048
	.quad (i << 21) | 0xe7
	.set i, i + 1
	.endr
pt_rom_end:

	.balign 16
gdt:
	.quad 0
	.quad 0x00cf9b000000ffff	/* 0x08 flat 32-bit code */
	.quad 0x00cf93000000ffff	/* 0x10 flat data */
	.quad 0x00af9b000000ffff	/* 0x18 64-bit code, DPL 0 */
	.quad 0x00cff3000000ffff	/* 0x20 data, DPL 3 */
	.quad 0x00affb000000ffff	/* 0x28 64-bit code, DPL 3 */
gdt_end:
gdt_desc:
	.word gdt_end - gdt - 1
	.long gdt

	.org ENTRY - BASE
	.code16
entry16:
	cli
	cld
	movw $BASE >> 4, %ax
	movw %ax, %ds
	lgdtl gdt_desc - BASE
	movl %cr0, %eax
	orb $1, %al
	movl %eax, %cr0
	ljmpl $SEL_CODE32, $pm32

	.code32
pm32:
	movw $SEL_DATA, %ax
	movw %ax, %ds
	movw %ax, %es
	movw %ax, %ss
	movl $0x1b, %ecx		/* IA32_APIC_BASE */
	rdmsr
	testl $0x100, %eax		/* BSP */
	jz long
	movl $pt_rom, %esi
	movl $PT, %edi
	movl $(pt_rom_end - pt_rom) / 4, %ecx
	rep movsl
	xorl %eax, %eax
	movl $MAILBOX, %edi
	movl $1024, %ecx
	rep stosl
	movl $0x1ff, APIC + 0xf0	/* software enable, spurious vector 0xff */
	movl $0, APIC + 0x310
	movl $0x000c4500, APIC + 0x300	/* INIT, all excluding self */
	movl $0x000c4600 | (ENTRY >> 12), APIC + 0x300	/* SIPI */

long:
	movl $PT, %eax
	movl %eax, %cr3
	movl %cr4, %eax
	orl $0x20, %eax			/* PAE */
	movl %eax, %cr4
	movl $0xc0000080, %ecx		/* EFER */
	rdmsr
	orl $0x100, %eax		/* LME */
	wrmsr
	movl %cr0, %eax
	orl $0x80000001, %eax		/* PG, PE */
	movl %eax, %cr0
	ljmpl $SEL_CODE64, $lm64

	.code64
lm64:
	movl $1, %eax
	cpuid
	shrl $24, %ebx			/* rbx = APIC ID = vCPU index */
	movq %rbx, %rax
	shlq $8, %rax
	movq $STACKS + 0x100, %rsp
	addq %rax, %rsp
	/* share = wss_bytes / nr_vcpus, rounded down to pages */
	movq wss_bytes, %rax
	xorl %edx, %edx
	divq nr_vcpus
	andq $~0xfff, %rax
	movq %rax, %rcx
	imulq %rbx, %rax
	addq wss_base, %rax
	movq %rax, %r8			/* r8 = first page */
	leaq (%rax,%rcx), %r9		/* r9 = end */
	movq %rbx, %r10
	shlq $6, %r10
	addq $MAILBOX, %r10		/* r10 = the pass counter */
	leaq 1(%rbx), %r12
	shlq $48, %r12			/* r12 = stamp tag */
	movq %rbx, %r14
	shlq $16, %r14
	addq $RINGS, %r14		/* r14 = this vCPU's stall log */
	movq stall_ticks, %r15		/* r15 = the gap worth logging */
	movq $1, STARTED(,%rbx,8)
	pushq $SEL_UDATA
	pushq %rsp
	addq $8, (%rsp)
	pushq $0x3002			/* IOPL 3, IF 0 */
	pushq $SEL_UCODE64
	pushq $user
	iretq

user:
	xorl %r11d, %r11d		/* r11 = the pass being written */
	cmpq %r8, %r9
	jbe idle
	rdtsc
	shlq $32, %rdx
	orq %rdx, %rax
	movq %rax, %r13			/* r13 = the TSC at the last store */
pass:
	incq %r11
	movq %r11, %rsi
	orq %r12, %rsi
	movq %r8, %rdi
1:	movq %rsi, (%rdi)
	rdtsc
	shlq $32, %rdx
	orq %rdx, %rax
	movq %rax, %rcx
	subq %r13, %rcx			/* rcx = the gap since the last store */
	movq %rax, %r13
	cmpq %r15, %rcx
	ja stall
2:	addq $4096, %rdi
	cmpq %r9, %rdi
	jb 1b
	movq %r13, 8(%r10)
	incq (%r10)
	jmp pass

	/* a gap over the threshold: log (TSC after it, its length) */
stall:
	movq 16(%r10), %rdx
	andq $RING_ENTRIES - 1, %rdx
	shlq $4, %rdx
	addq %r14, %rdx
	movq %rax, (%rdx)
	movq %rcx, 8(%rdx)
	incq 16(%r10)
	cmpq 24(%r10), %rcx
	jbe 2b
	movq %rcx, 24(%r10)
	jmp 2b

idle:
	pause
	jmp idle

	/* patched by bench/converge.py (little-endian u64s at offset 0xff00) */
	.org 0xff00
params:
wss_base:	.quad 0x1000000
wss_bytes:	.quad 0
nr_vcpus:	.quad 1
stall_ticks:	.quad 3000000

	.code16
	.org 0xfff0
reset:
	ljmp $ENTRY >> 4, $0
	.org 0x10000
