/* SPDX-License-Identifier: MIT */
/*
 * The arm64 vGICv3 and ITS uAPI the GIC class uses (KERNEL-UAPI.md §6.1),
 * carried here: <asm/kvm.h> has these only on arm64, and the class (its
 * sim backend, its tests) builds on every host.  Values are the kernel's
 * (arch/arm64/include/uapi/asm/kvm.h, include/linux/irqchip/arm-gic-v3.h).
 */
#ifndef DEVICES_GIC_UAPI_H
#define DEVICES_GIC_UAPI_H

/* enum kvm_device_type */
#define GIC_KVM_DEV_TYPE_VGIC_V3      7
#define GIC_KVM_DEV_TYPE_VGIC_ITS     8

/* KVM_{GET,SET,HAS}_DEVICE_ATTR groups */
#define GIC_GRP_ADDR                  0
#define GIC_GRP_DIST_REGS             1
#define GIC_GRP_NR_IRQS               3
#define GIC_GRP_CTRL                  4
#define GIC_GRP_REDIST_REGS           5
#define GIC_GRP_CPU_SYSREGS           6
#define GIC_GRP_LEVEL_INFO            7
#define GIC_GRP_ITS_REGS              8

/* GIC_GRP_CTRL attributes */
#define GIC_CTRL_INIT                 0
#define GIC_CTRL_ITS_SAVE_TABLES      1
#define GIC_CTRL_ITS_RESTORE_TABLES   2
#define GIC_CTRL_SAVE_PENDING_TABLES  3
#define GIC_CTRL_ITS_RESET            4

/* GIC_GRP_ADDR attributes */
#define GIC_ADDR_TYPE_DIST            2
#define GIC_ADDR_TYPE_REDIST          3
#define GIC_ADDR_TYPE_ITS             4

/* DIST/REDIST/CPU_SYSREGS/LEVEL_INFO attributes: the vCPU's affinity in
 * bits 63:32 (Aff3.Aff2.Aff1.Aff0, a byte each), the offset or sysreg
 * encoding below. */
#define GIC_ATTR_MPIDR_SHIFT          32
#define GIC_LEVEL_INFO_SHIFT          10
#define GIC_LEVEL_INFO_LINE_LEVEL     0

/* Distributor registers (32 bits; IROUTER is 64, read as two halves) */
#define GICD_CTLR                     0x0000
#define GICD_TYPER                    0x0004
#define GICD_IIDR                     0x0008
#define GICD_IGROUPR                  0x0080
#define GICD_ISENABLER                0x0100
#define GICD_ISPENDR                  0x0200
#define GICD_ISACTIVER                0x0300
#define GICD_IPRIORITYR               0x0400
#define GICD_ICFGR                    0x0c00
#define GICD_IROUTER                  0x6000

/* Redistributor: the RD frame, then the SGI frame 64 KiB above it */
#define GICR_CTLR                     0x0000
#define GICR_IIDR                     0x0004
#define GICR_TYPER                    0x0008
#define GICR_PROPBASER                0x0070
#define GICR_PENDBASER                0x0078
#define GICR_SGI                      0x10000
#define GICR_IGROUPR0                 (GICR_SGI + 0x0080)
#define GICR_ISENABLER0               (GICR_SGI + 0x0100)
#define GICR_ISPENDR0                 (GICR_SGI + 0x0200)
#define GICR_ISACTIVER0               (GICR_SGI + 0x0300)
#define GICR_IPRIORITYR0              (GICR_SGI + 0x0400)
#define GICR_ICFGR0                   (GICR_SGI + 0x0c00)
#define GICR_ICFGR1                   (GICR_SGI + 0x0c04)
#define GICR_CTLR_ENABLE_LPIS         (1U << 0)

/* ITS registers (64-bit access through GIC_GRP_ITS_REGS) */
#define GITS_CTLR                     0x0000
#define GITS_IIDR                     0x0004
#define GITS_TYPER                    0x0008
#define GITS_CBASER                   0x0080
#define GITS_CWRITER                  0x0088
#define GITS_CREADR                   0x0090
#define GITS_BASER(n)                 (0x0100 + 8 * (n))
#define GITS_BASER_NR                 8
#define GITS_TRANSLATER               0x10040
#define GITS_CTLR_ENABLE              (1ULL << 0)
#define GITS_CTLR_QUIESCENT           (1ULL << 31)
#define GITS_IIDR_REV_SHIFT           12
#define GITS_IIDR_REV_MASK            0xfULL
#define GITS_BASER_VALID              (1ULL << 63)
#define GITS_CBASER_VALID             (1ULL << 63)

/* ICC system registers, encoded op0:op1:CRn:CRm:op2 as the attribute's
 * low 16 bits */
#define GIC_SYSREG(op0, op1, crn, crm, op2) \
	(((op0) << 14) | ((op1) << 11) | ((crn) << 7) | ((crm) << 3) | (op2))
#define ICC_PMR_EL1                   GIC_SYSREG(3, 0, 4, 6, 0)
#define ICC_BPR0_EL1                  GIC_SYSREG(3, 0, 12, 8, 3)
#define ICC_AP0R_EL1(n)               GIC_SYSREG(3, 0, 12, 8, 4 + (n))
#define ICC_AP1R_EL1(n)               GIC_SYSREG(3, 0, 12, 9, (n))
#define ICC_BPR1_EL1                  GIC_SYSREG(3, 0, 12, 12, 3)
#define ICC_CTLR_EL1                  GIC_SYSREG(3, 0, 12, 12, 4)
#define ICC_SRE_EL1                   GIC_SYSREG(3, 0, 12, 12, 5)
#define ICC_IGRPEN0_EL1               GIC_SYSREG(3, 0, 12, 12, 6)
#define ICC_IGRPEN1_EL1               GIC_SYSREG(3, 0, 12, 12, 7)
/* ICC_CTLR_EL1.PRIbits: implemented priority bits - 1 */
#define ICC_CTLR_PRIBITS_SHIFT        8
#define ICC_CTLR_PRIBITS_MASK         0x7ULL

/* ITS commands (32 bytes each in the command queue) */
#define GITS_CMD_MAPD                 0x08
#define GITS_CMD_MAPC                 0x09
#define GITS_CMD_MAPTI                0x0a
#define GITS_CMD_MAPI                 0x0b
#define GITS_CMD_INV                  0x0c
#define GITS_CMD_SYNC                 0x05
#define GITS_CMD_DISCARD              0x0f
#define GITS_CMD_INT                  0x03
#define GITS_CMD_CLEAR                0x04
#define GITS_CMD_SIZE                 32

/* The first LPI */
#define GIC_LPI_BASE                  8192

#endif
