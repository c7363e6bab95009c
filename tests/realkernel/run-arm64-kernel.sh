#!/bin/bash
# The arm64 classes on a real arm64 KVM (docs/devices.md §9): Debian's
# current 6.12 arm64 kernel booted under QEMU TCG at EL2, with a GICv3 and
# an ITS, runs this source tree's aarch64 build (tests/cross: an arm64
# sysroot from the archive and Debian's cross compiler) from the sysroot,
# shared read-only over 9p:
#   - gic-kernel: the GIC class's kernel backend (tests/realkernel/gic-kernel.c);
#   - arm64-lab: the arm64 lab VM (vGICv3, ITS, MSI devices) migrated with LPIs
#     pending at the switchover, and refused for a damaged ITS table
#     (tests/realkernel/arm64-lab.c);
#   - `migratectl start local local` of an arm64 lab VM, by two agents;
# and in a second boot, with a GICv4.0, an SMMUv3 and QEMU's edu PCI device
# bound to vfio-pci (kvm-arm.vgic_v4_enable=1):
#   - vlpi-kernel: the GIC class's GICv4.0 direct injection of the edu's MSI
#     (tests/realkernel/vlpi-kernel.c).
#
# usage: run-arm64-kernel.sh WORKDIR SOURCEDIR
# Exits 77 (skip) only when a host tool is missing or the archive cannot be
# reached; every other problem fails.
set -uo pipefail
[ $# -eq 2 ] || { echo "usage: run-arm64-kernel.sh WORKDIR SOURCEDIR"; exit 1; }
skip() { echo "SKIP: $*"; exit 77; }
fail() { echo "FAIL: $*"; exit 1; }
say() { echo "[$(date +%T)] $*"; }

for t in qemu-system-aarch64 cpio xz gzip apt-get dpkg-deb; do
	command -v $t >/dev/null || skip "$t is not installed (contrib/build.sh installs qemu-system-arm, cpio and xz-utils)"
done
mkdir -p "$1" || fail "cannot make $1"
W=$(cd "$1" && pwd -P)
SRC=$(cd "$2" && pwd -P) || fail "no source directory $2"

# the aarch64 build, in W/build-arm64, against W/sysroot
"$SRC/tests/cross/run-cross.sh" arm64 "$W" "$SRC"
case $? in
0) ;;
77) skip "the aarch64 build could not be made (see above)" ;;
*) fail "the aarch64 build" ;;
esac
B=$W/build-arm64
SR=$W/sysroot
for p in gic-kernel vlpi-kernel; do
	[ -x "$B/tests/realkernel/$p" ] || fail "the aarch64 build has no $p"
done

# The kernel: whatever linux-image-6.12-arm64 points at today, never pinned,
# through the sysroot's private apt setup.
export APT_CONFIG=$W/apt/apt.conf
KA=$(apt-cache depends linux-image-6.12-arm64:arm64 2>/dev/null |
	sed -n 's/.*Depends: \(linux-image-6\.12[^:]*-arm64\).*/\1/p' | head -1)
[ -n "$KA" ] || skip "the archive has no linux-image-6.12-arm64"
K=$W/kernel
if [ ! -f "$K/.$KA" ]; then
	say "downloading $KA"
	rm -rf "$K" && mkdir -p "$K/debs" "$K/x"
	(cd "$K/debs" && apt-get download -qq "$KA-unsigned:arm64" busybox-static:arm64 \
		>/dev/null 2>&1) || skip "the archive cannot be reached for $KA"
	for d in "$K"/debs/*.deb; do dpkg-deb -x "$d" "$K/x" || fail "unpacking $d"; done
	touch "$K/.$KA"
fi
VMLINUZ=$(ls "$K"/x/boot/vmlinuz-*-arm64 2>/dev/null | head -1)
[ -n "$VMLINUZ" ] || fail "no kernel image in $KA"
MODS=$(ls -d "$K"/x/lib/modules/*/kernel)

# The programs go into the sysroot, the guest's root over 9p.
mkdir -p "$SR/opt/migratectl" "$SR/proc" "$SR/sys" "$SR/dev" "$SR/run" "$SR/tmp" || fail "sysroot"
cp "$B/migratectl" "$B/tests/realkernel/gic-kernel" "$B/tests/realkernel/arm64-lab" \
	"$B/tests/realkernel/vlpi-kernel" "$SR/opt/migratectl/" || fail "copying the programs"

# The initramfs: busybox, the 9p and VFIO modules, and an init that runs the
# tests (the second boot's, with rk=vlpi on its command line).
R=$W/initrd
rm -rf "$R" && mkdir -p "$R/bin" "$R/lib" "$R/proc" "$R/sys" "$R/dev" "$R/host"
cp "$K/x/bin/busybox" "$R/bin/busybox" || fail "busybox"
for m in fs/netfs/netfs net/9p/9pnet net/9p/9pnet_virtio fs/9p/9p; do
	if [ -f "$MODS/$m.ko.xz" ]; then
		xz -dc "$MODS/$m.ko.xz" > "$R/lib/$(basename $m).ko" || fail "module $m"
	fi
done
# vfio-pci and what it needs, in loading order (a modular VFIO: Debian's)
for m in drivers/vfio/vfio drivers/vfio/vfio_iommu_type1 drivers/vfio/pci/vfio-pci-core \
	 drivers/vfio/pci/vfio-pci; do
	xz -dc "$MODS/$m.ko.xz" > "$R/lib/$(basename $m).ko" || fail "module $m"
done
cat > "$R/init" <<'INIT'
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev; mkdir -p /tmp
ip link set lo up
for m in netfs 9pnet 9pnet_virtio 9p; do
	[ -f /lib/$m.ko ] && { insmod /lib/$m.ko || echo "RK-FAIL insmod $m"; }
done
mount -t 9p -o trans=virtio,version=9p2000.L,ro hostroot /host || echo "RK-FAIL 9p mount"
mount -t proc proc /host/proc; mount -t sysfs sys /host/sys; mount -t devtmpfs dev /host/dev
mount -t tmpfs run /host/run; mount -t tmpfs tmp /host/tmp
[ -c /dev/kvm ] || echo "RK-FAIL no /dev/kvm: $(dmesg | grep -i kvm | tail -3)"
if grep -q 'rk=vlpi' /proc/cmdline; then
	dmesg | grep -E 'GICv4|vgic' | sed 's/^/RK-INFO /'
	for m in vfio vfio_iommu_type1 vfio-pci-core vfio-pci; do
		insmod /lib/$m.ko || echo "RK-FAIL insmod $m"
	done
	EDU=
	for d in /sys/bus/pci/devices/*; do
		[ "$(cat $d/vendor):$(cat $d/device)" = 0x1234:0x11e8 ] && EDU=${d##*/}
	done
	if [ -z "$EDU" ]; then
		echo "RK-FAIL no edu device"
	else
		echo 1234 11e8 > /sys/bus/pci/drivers/vfio-pci/new_id ||
			echo "RK-FAIL binding the edu to vfio-pci"
		chroot /host /opt/migratectl/vlpi-kernel $EDU
		echo "RK-EXIT vlpi-kernel $?"
	fi
	poweroff -f
fi
chroot /host /opt/migratectl/gic-kernel
echo "RK-EXIT gic-kernel $?"
chroot /host /opt/migratectl/arm64-lab
echo "RK-EXIT arm64-lab $?"
# two agents of this build migrate an arm64 lab VM whose MSI devices raise
# LPIs all along (and a last round while its vCPUs are stopped); everything
# here is emulated, on a host that may be busy: the switchover may take
# seconds, so its deadline is generous (the default is 2 x 300 ms + 5 s)
chroot /host env TMPDIR=/run /opt/migratectl/migratectl start local local --handover never --json --switchover-timeout 60s \
	--lab mem=64M,vcpus=2,wss=4M,msi=4 > /tmp/mig.json 2> /tmp/mig.err
echo "RK-MIG-EXIT $?"
echo "RK-MIG $(tr -d '\n' < /tmp/mig.json)"
sed 's/^/RK-MIG-ERR /' /tmp/mig.err | tail -8
# the same with the dirty ring: on arm64 KVM_CAP_DIRTY_LOG_RING_ACQ_REL, and
# the GIC's table writes only in the slots' bitmaps (WITH_BITMAP)
chroot /host env TMPDIR=/run /opt/migratectl/migratectl start local local --handover never --json --switchover-timeout 60s \
	--lab mem=64M,vcpus=2,wss=4M,msi=4,dirty-log=ring > /tmp/ring.json 2> /tmp/ring.err
echo "RK-RING-EXIT $?"
echo "RK-RING $(tr -d '\n' < /tmp/ring.json)"
sed 's/^/RK-RING-ERR /' /tmp/ring.err | tail -8
poweroff -f
INIT
chmod +x "$R/init"
(cd "$R" && find . | cpio -o -H newc 2>/dev/null | gzip -1 > "$W/initrd.gz") || fail "initramfs"

say "booting $KA under QEMU"
t0=$(date +%s)
timeout 600 qemu-system-aarch64 -M virt,virtualization=on,gic-version=3 -cpu max,pauth-impdef=on \
	-accel tcg,thread=multi -smp 2 -m 1024 -nographic -no-reboot -monitor none -nic none \
	-serial stdio -kernel "$VMLINUZ" -initrd "$W/initrd.gz" \
	-virtfs local,path="$SR",mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap \
	-append "console=ttyAMA0 loglevel=4 panic=-1" > "$W/guest.log" 2>&1
say "guest done in $(($(date +%s) - t0)) s"
grep -a -E '^RK-' "$W/guest.log"
grep -a -q '^RK-FAIL' "$W/guest.log" && fail "see $W/guest.log"
[ "$(grep -a -c '^RK-DONE passed [0-9]* failed 0' "$W/guest.log")" = 2 ] ||
	fail "gic-kernel or arm64-lab: see $W/guest.log"
for p in gic-kernel arm64-lab; do
	grep -a -q "^RK-EXIT $p 0" "$W/guest.log" || fail "$p exited non-zero: see $W/guest.log"
done
# and the command line's own migration of an arm64 lab VM
grep -a -q '^RK-MIG-EXIT 0' "$W/guest.log" || fail "migratectl start failed: see $W/guest.log"
mig=$(grep -a '^RK-MIG {' "$W/guest.log")
for want in '"result":"completed"' '"match":true' '"dst_selfcheck_errors":0' \
	    '"class":"gic","side":"source","id":0,"state":"dead"' \
	    '"class":"msi","side":"source","id":0,"state":"dead"'; do
	case $mig in *"$want"*) ;; *) fail "the migration's summary lacks $want: $mig";; esac
done
grep -a -q '^RK-RING-EXIT 0' "$W/guest.log" || fail "migratectl start with the dirty ring failed: see $W/guest.log"
ring=$(grep -a '^RK-RING {' "$W/guest.log")
for want in '"result":"completed"' '"match":true' '"dst_selfcheck_errors":0'; do
	case $ring in *"$want"*) ;; *) fail "the dirty-ring migration's summary lacks $want: $ring";; esac
done
echo "arm64 lab VM with a GICv3, an ITS and MSI devices: migrated and verified (dirty bitmap and ring)"

# The second boot: a GICv4.0 host whose edu device's MSI the VMs take as a
# VLPI (QEMU 7.2 and later emulate GICv4.0, not 4.1).
say "booting $KA under QEMU with a GICv4.0, an SMMUv3 and an edu device"
t0=$(date +%s)
timeout 300 qemu-system-aarch64 -M virt,virtualization=on,gic-version=4,iommu=smmuv3 \
	-cpu max,pauth-impdef=on -accel tcg,thread=multi -smp 2 -m 1024 -nographic -no-reboot \
	-monitor none -nic none -serial stdio -kernel "$VMLINUZ" -initrd "$W/initrd.gz" \
	-device edu \
	-virtfs local,path="$SR",mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap \
	-append "console=ttyAMA0 loglevel=4 panic=-1 kvm-arm.vgic_v4_enable=1 rk=vlpi" \
	> "$W/guest-vlpi.log" 2>&1
say "guest done in $(($(date +%s) - t0)) s"
grep -a -E '^RK-' "$W/guest-vlpi.log"
grep -a -q '^RK-FAIL' "$W/guest-vlpi.log" && fail "see $W/guest-vlpi.log"
[ "$(grep -a -c '^RK-DONE passed [0-9]* failed 0' "$W/guest-vlpi.log")" = 1 ] ||
	fail "vlpi-kernel: see $W/guest-vlpi.log"
grep -a -q '^RK-EXIT vlpi-kernel 0' "$W/guest-vlpi.log" ||
	fail "vlpi-kernel exited non-zero: see $W/guest-vlpi.log"
echo "GICv4.0: a VFIO device's MSI forwarded, saved, restored and rolled back by the GIC class"
exit 0
