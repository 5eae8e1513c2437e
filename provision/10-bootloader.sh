#!/bin/sh
# Makes the disk boot by itself: fstab, GRUB in the BIOS boot partition.
set -eu
root_dev=$(findmnt -no SOURCE /)
disk=/dev/$(lsblk -no PKNAME "$root_dev")

echo "UUID=$GOLDEN_ROOT_UUID / ext4 errors=remount-ro 0 1" > /etc/fstab

mkdir -p /etc/default/grub.d
cat > /etc/default/grub.d/golden.cfg <<'CFG'
GRUB_TIMEOUT=0
GRUB_CMDLINE_LINUX_DEFAULT=""
GRUB_CMDLINE_LINUX="console=tty0 console=ttyS0,115200"
GRUB_TERMINAL="console serial"
GRUB_SERIAL_COMMAND="serial --speed=115200"
CFG
grub-install --target=i386-pc "$disk"
echo "grub-pc grub-pc/install_devices multiselect $disk" | debconf-set-selections
update-grub
