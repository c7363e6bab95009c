/* SPDX-License-Identifier: MIT */
/*
 * The libvirt tests' guest: a boot sector that keeps a checkable pattern in
 * its RAM and says on COM1 how it holds.
 *
 * SeaBIOS loads it at 0x7c00 in real mode; it moves to flat 32-bit
 * protected mode (no paging) to reach the memory above 1 MiB.  This host's
 * KVM emulates every instruction of code that is not 64-bit and paged
 * (some ten thousand a second), but runs a string instruction's
 * iterations fast (some 50 MB/s), so the work is done by rep stos and
 * repe scas over blocks, and the loops around them are short.
 *
 * Each block holds one value, the pattern of its address a after pass p:
 * a * A + p * C (mod 2^32), so a block that missed a pass, or holds
 * another block's data, does not match.  Two areas:
 *  - the region, 64 pages of 4 KiB at 0x10000: each pass verifies each
 *    page against pass p and rewrites it for pass p + 1 (the pages a live
 *    migration must send again), page after page, and prints "pass N" (N
 *    in hex, 8 digits) on COM1;
 *  - the ballast, ballast_mib MiB from 1 MiB up (the harness patches the
 *    number into this sector), blocks of 64 KiB: written once with pass
 *    0's pattern, then verified read only, one MiB after each pass, in
 *    turn.  It gives a migration data to carry: QEMU sends a zero page as
 *    a few bytes.
 * A mismatch prints "BAD pass N at ADDR" (the pass the memory should hold,
 * the first bad dword of that page, or of that MiB of ballast) and the
 * loop goes on.  Between passes
 * it waits DELAY TSC cycles so that the console grows by a few lines a
 * second; a busy guest (the harness patches busy) does not wait, so that
 * no moment passes without a page written, and its region is busy times
 * 64 pages: a migration with a small enough downtime limit cannot
 * converge unless the guest is slowed (or its vCPU stalls for as long as
 * the link takes to carry the region).
 *
 * Build: gcc -m32 -c guest.S; ld -m elf_i386 -Ttext=0x7c00 -e _start
 * --oformat=binary: exactly 512 bytes, the signature last.
 */

#define A 0x9e3779b1
#define C 0x85ebca77
#define REGION 0x10000
#define REGION_PAGES 64
#define BALLAST 0x100000
#define DELAY 0x10000000	/* about 0.1 s */
#define COM1 0x3f8

	.code16
	.text
	.globl _start
_start:
	cli
	xorw %ax, %ax
	movw %ax, %ds
	movw %ax, %ss
	movw $0x7c00, %sp
	/* the "fast A20" gate, so that the ballast above 1 MiB is not
	 * folded onto low memory */
	inb $0x92, %al
	orb $2, %al
	andb $0xfe, %al
	outb %al, $0x92
	lgdtl gdt_desc
	movl %cr0, %eax
	orb $1, %al
	movl %eax, %cr0
	ljmpl $0x08, $pm

	.code32
pm:
	movw $0x10, %ax
	movw %ax, %ds
	movw %ax, %es
	movw %ax, %ss
	movl $0x7c00, %esp
	cld
	movl $msg_boot, %edi
	call puts

	xorl %ebp, %ebp			/* the pass the region holds */
	movl $BALLAST, %ebx
	movl ballast_mib, %ecx
	shll $4, %ecx			/* MiB to 64 KiB blocks */
	movl $0x10000, %esi
	jecxz 1f			/* no ballast (fill's loop needs one block) */
	call fill
1:	call region
	call fill

next:
	/* block by block: verified against pass %ebp, rewritten for the
	 * next, so that pages are written all through the pass */
	call region
4:	pushl %ecx
	pushl %ebx
	xorl %ecx, %ecx
	incl %ecx
	call verify
	popl %ebx
	incl %ebp
	xorl %ecx, %ecx
	incl %ecx
	call fill
	decl %ebp
	popl %ecx
	loop 4b
	incl %ebp
	movl $msg_pass, %edi
	call puts
	movl %ebp, %eax
	call puthex
	movb $'\n', %al
	call putc

	/* the next MiB of the ballast */
	movl ballast_mib, %ecx
	jecxz 2f
	shll $20, %ecx
	addl $BALLAST, %ecx
	movl ballast_next, %ebx
	cmpl %ecx, %ebx
	jb 1f
	movl $BALLAST, %ebx
1:	pushl %ebp
	xorl %ebp, %ebp
	movl $16, %ecx
	movl $0x10000, %esi
	call verify
	popl %ebp
	movl %ebx, ballast_next

2:	cmpb $0, busy			/* busy: no pause between passes */
	jne next
	rdtsc
	movl %eax, %ebx
3:	rdtsc
	subl %ebx, %eax
	cmpl $DELAY, %eax
	jb 3b
	jmp next

/* the region's blocks, for fill and verify */
region:
	movl $REGION, %ebx
	movzbl busy, %ecx		/* busy: 64 pages times busy */
	shll $6, %ecx
	jnz 1f
	movb $REGION_PAGES, %cl
1:	movl $4096, %esi
	ret

/* Writes pass %ebp's pattern to %ecx blocks of %esi bytes from %ebx;
 * leaves %ebx past them. */
fill:
	pushl %ecx
	call block
	rep stosl
	popl %ecx
	loop fill
	ret

/* Verifies %ecx blocks of %esi bytes from %ebx against pass %ebp's
 * pattern, reporting the first mismatch; leaves %ebx past them. */
verify:
	movb $0, reported
1:	pushl %ecx
	call block
	repe scasl
	je 2f
	cmpb $0, reported
	jne 2f
	movb $1, reported
	leal -4(%edi), %eax
	call bad
2:	popl %ecx
	loop 1b
	ret

/* For the block at %ebx: %eax = its pattern in pass %ebp, %edi = %ebx,
 * %ecx = its dwords; %ebx moves to the next block. */
block:
	movl %ebx, %eax
	imull $A, %eax, %eax
	imull $C, %ebp, %edx
	addl %edx, %eax
	movl %ebx, %edi
	movl %esi, %ecx
	shrl $2, %ecx
	addl %esi, %ebx
	ret

/* "BAD pass %ebp at %eax" */
bad:
	pushal
	movl $msg_bad, %edi
	call puts
	xchgl %eax, %ebp
	call puthex
	movl $msg_at, %edi
	call puts
	movl %ebp, %eax
	call puthex
	movb $'\n', %al
	call putc
	popal
	ret

/* %eax in 8 hex digits */
puthex:
	pushl %ecx
	movl $8, %ecx
1:	roll $4, %eax
	pushl %eax
	andb $0xf, %al
	addb $'0', %al
	cmpb $'9', %al
	jbe 2f
	addb $('a' - '9' - 1), %al
2:	call putc
	popl %eax
	loop 1b
	popl %ecx
	ret

/* the zero-terminated string at %edi */
puts:
	movb (%edi), %al
	testb %al, %al
	jz 1f
	call putc
	incl %edi
	jmp puts
1:	ret

putc:
	pushl %edx
	movw $COM1, %dx
	outb %al, %dx
	popl %edx
	ret

msg_boot:	.asciz "boot\n"
msg_pass:	.asciz "pass "
msg_bad:	.asciz "BAD pass "
msg_at:		.asciz " at "
reported:	.byte 0
ballast_next:	.long BALLAST

	/* lgdt's operand fills the null descriptor, which the CPU never reads */
gdt:
gdt_desc:
	.word gdt_end - gdt - 1
	.long gdt
	.word 0
	.quad 0x00cf9a000000ffff	/* 0x08: flat 32-bit code */
	.quad 0x00cf92000000ffff	/* 0x10: flat data */
gdt_end:

	/* the harness writes the ballast's size here (offset 0x1f8) */
	.org 0x1f8
ballast_mib:
	.long 0
	/* and 1 or 2 here (offset 0x1fc) for a guest that never pauses,
	 * with a region of 64 or 128 pages (below the VGA window at 0xa0000) */
busy:
	.byte 0
	.org 510
	.byte 0x55, 0xaa
