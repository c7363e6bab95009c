#!/bin/bash
# The VFIO class's kernel backend against a real kernel (docs/devices.md §7):
# Debian's current 6.12 x86_64 kernel booted under QEMU TCG, the kernel's mtty
# sample driver built out of tree from the archive's linux-source package,
# two mtty mdevs, and tests/realkernel/vfio-kernel.c run on them from this
# build (the host's root is shared read-only over 9p).
#
# Then, in the same guest, its nested /dev/kvm (a real kvm_amd on QEMU's
# emulated SVM) hosts two agents of this build, which migrate a small lab VM
# with an mtty device attached (--lab ...,mdev=mtty-2), verified; and an
# SEV lab guest (psp-sim firmware) whose page-encryption map comes through
# the real KVM_HC_MAP_GPA_RANGE exit, verified.
#
# usage: run-vfio-kernel.sh WORKDIR TEST_BINARY MIGRATECTL
# Exits 77 (skip) only when a host tool is missing or the archive cannot be
# reached; every other problem fails.
set -uo pipefail
W=$1
BIN=$(readlink -f "$2")
MIGRATECTL=$(readlink -f "$3")
skip() { echo "SKIP: $*"; exit 77; }
fail() { echo "FAIL: $*"; exit 1; }
say() { echo "[$(date +%T)] $*"; }

for t in qemu-system-x86_64 cpio busybox apt-get dpkg-deb make gcc xz; do
	command -v $t >/dev/null || skip "$t is not installed (apt-get install qemu-system-x86 cpio busybox-static build-essential xz-utils)"
done
mkdir -p "$W/debs" || fail "cannot make $W"
cd "$W" || fail "cannot enter $W"

# The kernel: whatever linux-headers-6.12-amd64 points at today, never pinned.
KX=$(apt-cache depends linux-headers-6.12-amd64 2>/dev/null |
	sed -n 's/.*Depends: linux-headers-\(6\.12.*-amd64\)$/\1/p' | head -1)
[ -n "$KX" ] || skip "the archive has no linux-headers-6.12-amd64 (apt-get update first?)"
V=${KX%-amd64}
if [ ! -f "debs/.$KX" ]; then
	say "downloading the $KX packages"
	rm -f debs/*.deb
	(cd debs && apt-get download -qq linux-image-${KX}-unsigned linux-headers-${KX} \
		linux-headers-${V}-common linux-kbuild-${V} linux-source-6.12 >/dev/null 2>&1) ||
		skip "the archive cannot be reached for the $KX packages"
	rm -rf x linux-source-6.12 mtty
	mkdir -p x
	for d in debs/*.deb; do
		case $d in *linux-source*) ;; *) dpkg-deb -x "$d" x || fail "unpacking $d";; esac
	done
	dpkg-deb --fsys-tarfile debs/linux-source-6.12_*.deb | tar -x -O ./usr/src/linux-source-6.12.tar.xz |
		tar -xJ --wildcards '*/samples/vfio-mdev/mtty.c' || fail "mtty.c not in linux-source-6.12"
	touch "debs/.$KX"
fi
HD=$W/x/usr/src/linux-headers-$KX
MODS=$(ls -d "$W"/x/lib/modules/*/kernel)
if [ ! -f mtty/mtty.ko ]; then
	say "building mtty.ko"
	mkdir -p mtty && cp linux-source-6.12/samples/vfio-mdev/mtty.c mtty/ && echo 'obj-m := mtty.o' > mtty/Makefile
	sed -i "s|include /usr/src/|include $W/x/usr/src/|" "$HD/Makefile"
	make -s -C "$HD" M="$W/mtty" CONFIG_DEBUG_INFO_BTF_MODULES= modules >mtty/build.log 2>&1 ||
		{ cat mtty/build.log; fail "building mtty.ko"; }
fi

# The guest: busybox, the modules, and an init that runs the test.
rm -rf root && mkdir -p root/bin root/lib root/proc root/sys root/dev root/host root/tmp
cp "$(command -v busybox)" root/bin/busybox
for m in drivers/vfio/vfio drivers/vfio/vfio_iommu_type1 drivers/vfio/mdev/mdev fs/netfs/netfs \
	 net/9p/9pnet net/9p/9pnet_virtio fs/9p/9p virt/lib/irqbypass arch/x86/kvm/kvm \
	 drivers/crypto/ccp/ccp arch/x86/kvm/kvm-amd; do
	xz -dc "$MODS/$m.ko.xz" > root/lib/$(basename $m).ko || fail "module $m"
done
cp mtty/mtty.ko root/lib/
LD=$(readlink -f /lib64/ld-linux-x86-64.so.2)
cat > root/init <<INIT
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
ip link set lo up
for m in vfio vfio_iommu_type1 mdev mtty netfs 9pnet 9pnet_virtio 9p; do
	insmod /lib/\$m.ko || echo "RK-FAIL insmod \$m"
done
mount -t 9p -o trans=virtio,version=9p2000.L,ro hostroot /host || echo "RK-FAIL 9p mount"
T=/sys/class/mdev_bus/mtty/mdev_supported_types/mtty-2
A=83b8f4f2-509f-382f-3c1e-e6bfe0fa1001; B=83b8f4f2-509f-382f-3c1e-e6bfe0fa1002
echo \$A > \$T/create; echo \$B > \$T/create
/host$LD --library-path /host/usr/lib/x86_64-linux-gnu:/host/lib/x86_64-linux-gnu \
	/host$BIN /sys/bus/mdev/devices/\$A /sys/bus/mdev/devices/\$B
echo "RK-EXIT \$?"
# nested KVM, and this build's agents in the host's root
for m in irqbypass kvm ccp kvm-amd; do insmod /lib/\$m.ko || echo "RK-INFO insmod \$m failed"; done
[ -c /dev/kvm ] || echo "RK-FAIL no nested /dev/kvm"
mount -t proc proc /host/proc; mount -t sysfs sys /host/sys; mount -t devtmpfs dev /host/dev
# the agents' sockets on a tmpfs that hides nothing of this build
mount -t tmpfs run /host/run
# mtty cannot log DMA, so all 64 MiB it reaches go at the switchover: a
# downtime no pre-copy round can shrink, and far over the default limit
# under TCG; an operator raises the limit for such a device
# (no --handover: a VM with a real VFIO device, which maps its RAM for DMA,
# is copied even between two agents on one host)
chroot /host env TMPDIR=/run $MIGRATECTL start local local --json --downtime-limit 10000 \
	--lab mem=64M,vcpus=1,wss=2M,mdev=mtty-2 > /tmp/mig.json 2> /tmp/mig.err
echo "RK-MIG-EXIT \$?"
echo "RK-MIG \$(tr -d '\n' < /tmp/mig.json)"
sed 's/^/RK-MIG-ERR /' /tmp/mig.err | tail -5
# an SEV lab guest whose map comes through the real KVM_HC_MAP_GPA_RANGE
# exit (this kvm_amd forwards it; the host's PVM does not)
chroot /host env TMPDIR=/run $MIGRATECTL start local local --handover never --json --downtime-limit 10000 \
	--lab mem=64M,vcpus=2,wss=2M,sev=sim,sev-report=hypercall > /tmp/sev.json 2> /tmp/sev.err
echo "RK-SEV-EXIT \$?"
echo "RK-SEV \$(tr -d '\n' < /tmp/sev.json)"
sed 's/^/RK-SEV-ERR /' /tmp/sev.err | tail -5
poweroff -f
INIT
chmod +x root/init
(cd root && find . | cpio -o -H newc 2>/dev/null | gzip -1 > ../initrd.gz) || fail "initramfs"

# One TCG thread: with a thread per guest CPU, the text patching that
# loading kvm_amd does raced with the other CPU here (an int3 oops).
say "booting $KX under QEMU"
timeout 600 qemu-system-x86_64 -M q35 -cpu max -accel tcg,thread=single -smp 2 -m 1024 \
	-nographic -no-reboot -monitor none -nic none -serial stdio \
	-kernel "$W"/x/boot/vmlinuz-$KX -initrd initrd.gz \
	-virtfs local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap \
	-append "console=ttyS0 loglevel=4 panic=-1" > guest.log 2>&1
say "guest done"
grep -a -E '^RK-' guest.log
grep -a -q '^RK-DONE passed [0-9]* failed 0' guest.log || fail "see $W/guest.log"
grep -a -q '^RK-FAIL' guest.log && fail "see $W/guest.log"
# a nested migration: exited 0, and its summary says each of what follows
expect_run() {
	local tag=$1 what=$2 json want
	shift 2
	grep -a -q "^RK-$tag-EXIT 0" guest.log || fail "the nested $what failed: see $W/guest.log"
	json=$(grep -a "^RK-$tag {" guest.log)
	for want in '"result":"completed"' '"match":true' '"dst_selfcheck_errors":0' "$@"; do
		case $json in *"$want"*) ;; *) fail "the nested $what's summary lacks $want: $json";; esac
	done
	summary=$json
}
# the mdev moved
expect_run MIG migration '"class":"vfio","side":"source","id":0,"state":"stop"' '"no-dma-log"' \
	'"handover":{"used":false'
echo "nested migration with an mtty device: copied (not handed over), completed and verified"
# the SEV guest's map came by the hypercall exit
expect_run SEV "SEV migration" '"class":"sev","side":"source","id":0,"state":"finished"' \
	'"map-by-hypercall"'
case $summary in *map-by-doorbell*) fail "the nested SEV guest used its doorbell: $summary";; esac
echo "nested SEV guest: its KVM_HC_MAP_GPA_RANGE exits fed the map; completed and verified"
exit 0
