#!/bin/sh
# Makes the disk boot by itself, by BIOS and by UEFI with Secure Boot, the way
# Debian's cloud images do: fstab; GRUB's i386-pc core image in the BIOS boot
# partition; on the ESP, Debian's signed chain (shim, signed by Microsoft's
# UEFI CA, loads the GRUB Debian signed, which checks the kernel Debian
# signed) at the removable path EFI/BOOT/BOOTX64.EFI, which firmware boots
# without an NVRAM entry. Both GRUBs read the same /boot/grub/grub.cfg.
set -eu
root_dev=$(findmnt -no SOURCE /)
disk=/dev/$(lsblk -no PKNAME "$root_dev")
esp=$(lsblk -nrpo NAME,PARTTYPE "$disk" | awk 'tolower($2) == "c12a7328-f81f-11d2-ba4b-00a0c93ec93b" { print $1 }')
esp_uuid=$(blkid -s UUID -o value "$esp")

# The ESP is mounted when first used (GRUB and shim upgrades), not waited
# for at every boot.
cat > /etc/fstab <<FSTAB
UUID=$GOLDEN_ROOT_UUID / ext4 errors=remount-ro 0 1
UUID=$esp_uuid /boot/efi vfat umask=0077,noauto,x-systemd.automount 0 2
FSTAB
mkdir -p /boot/efi
mount /boot/efi

mkdir -p /etc/default/grub.d
cat > /etc/default/grub.d/golden.cfg <<'CFG'
GRUB_TIMEOUT=0
GRUB_CMDLINE_LINUX_DEFAULT=""
GRUB_CMDLINE_LINUX="console=tty0 console=ttyS0,115200"
GRUB_TERMINAL="console serial"
GRUB_SERIAL_COMMAND="serial --speed=115200"
CFG
grub-install --target=i386-pc "$disk"
# Package upgrades of GRUB and shim install them again at the removable path
# too, and leave the firmware's boot entries alone (as Debian's cloud images).
debconf-set-selections <<'DEBCONF'
grub-efi-amd64 grub2/force_efi_extra_removable boolean true
grub-efi-amd64 grub2/update_nvram boolean false
DEBCONF
grub-install --target=x86_64-efi --efi-directory=/boot/efi --uefi-secure-boot --no-nvram --force-extra-removable
# Debian's 25_bli loads GRUB's bli module at every UEFI boot, but its signed
# GRUB lacks it and under Secure Boot may load no module from disk: "error:
# prohibited by secure boot policy" at every such boot. Ours loads it only
# where GRUB may. dpkg keeps a conffile's mode across upgrades.
chmod -x /etc/grub.d/25_bli
cat > /etc/grub.d/25_golden_bli <<'SH'
#!/bin/sh
cat <<'EOF'
if [ "$grub_platform" = "efi" ]; then
  if [ "$lockdown" != "y" ]; then insmod bli; fi
fi
EOF
SH
chmod 755 /etc/grub.d/25_golden_bli
update-grub
