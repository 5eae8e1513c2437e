#!/bin/sh
# mmdebstrap customize hook, run on the host: $1 = the new root, $2 = the
# public key Packer and Vagrant first log in with (Vagrant's insecure key,
# which `vagrant up` replaces). Only what the first boot needs to reach SSH
# lives here; everything else is configured during provisioning.
set -eu
root=$1
pubkey=$2

chroot "$root" useradd --create-home --shell /bin/bash --user-group vagrant
chroot "$root" usermod --password '*' vagrant   # key login only
install -d -m 0700 -o 1000 -g 1000 "$root/home/vagrant/.ssh"
install -m 0600 -o 1000 -g 1000 "$pubkey" "$root/home/vagrant/.ssh/authorized_keys"
echo 'vagrant ALL=(ALL) NOPASSWD: ALL' > "$root/etc/sudoers.d/vagrant"
chmod 0440 "$root/etc/sudoers.d/vagrant"

cat > "$root/etc/systemd/network/80-golden-dhcp.network" <<'UNIT'
[Match]
Name=en* eth*

[Network]
DHCP=yes
UNIT
chroot "$root" systemctl enable systemd-networkd.service

# Host keys are removed when the image is sealed; each host makes its own.
# Ed25519 and ECDSA only: every OpenSSH since 6.5 (2014) takes them, and the
# RSA key cost seconds of each first boot under emulation.
cat > "$root/etc/systemd/system/golden-ssh-hostkeys.service" <<'UNIT'
[Unit]
Description=Generate this host's SSH host keys
Before=ssh.service
ConditionPathExists=!/etc/ssh/ssh_host_ed25519_key

[Service]
Type=oneshot
ExecStart=/usr/bin/ssh-keygen -q -t ed25519 -N "" -f /etc/ssh/ssh_host_ed25519_key
ExecStart=/usr/bin/ssh-keygen -q -t ecdsa -N "" -f /etc/ssh/ssh_host_ecdsa_key

[Install]
WantedBy=multi-user.target ssh.service
UNIT
chroot "$root" systemctl enable golden-ssh-hostkeys.service
printf 'HostKey /etc/ssh/ssh_host_ed25519_key\nHostKey /etc/ssh/ssh_host_ecdsa_key\n' \
    > "$root/etc/ssh/sshd_config.d/golden-host-keys.conf"
# Keys only, no root login, no X11 (Debian's defaults allow passwords and X11).
# sshd takes the first value it reads: 10- comes before cloud-init's 50-.
cat > "$root/etc/ssh/sshd_config.d/10-golden-hardening.conf" <<'CONF'
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin no
X11Forwarding no
CONF
# sshd listens on the network only, where the firewall and this config apply.
# systemd's ssh generator would also bind it to AF_VSOCK (a channel from the
# hypervisor) and to local AF_UNIX sockets; on a VM without a vsock device it
# failed at every boot, after AF_VSOCK's module alias had loaded VMware's
# VMCI driver.
mkdir -p "$root/etc/systemd/system-generators"
ln -sf /dev/null "$root/etc/systemd/system-generators/systemd-ssh-generator"

# The root partition and file system grow to the disk at every boot (a VM
# whose disk was made bigger than the image's), for Vagrant boxes and fresh
# hosts alike; cloud-init's own growpart is off so that one mechanism does it.
cat > "$root/usr/local/sbin/golden-growroot" <<'SCRIPT'
#!/bin/sh
# Grows the root partition to the end of its disk, then its ext4 (online).
set -eu
root=$(findmnt -no SOURCE /)
part=$(basename "$(readlink -f "$root")")
disk=$(basename "$(readlink -f "/sys/class/block/$part/..")")
number=$(cat "/sys/class/block/$part/partition")
rc=0
out=$(growpart "/dev/$disk" "$number" 2>&1) || rc=$?
echo "$out"
case $rc in
  0) resize2fs "$root" ;;
  1) case $out in NOCHANGE*) ;; *) exit 1 ;; esac ;;
  *) exit "$rc" ;;
esac
SCRIPT
chmod 0755 "$root/usr/local/sbin/golden-growroot"
cat > "$root/etc/systemd/system/golden-growroot.service" <<'UNIT'
[Unit]
Description=Grow the root partition and file system to the disk

[Service]
Type=oneshot
ExecStart=/usr/local/sbin/golden-growroot

[Install]
WantedBy=multi-user.target
UNIT
chroot "$root" systemctl enable golden-growroot.service


# Fresh hosts get their users, keys and hostname from cloud-init. Only seeds
# attached to the machine count (NoCloud: a disk labelled cidata; ConfigDrive:
# config-2): with neither (Vagrant, the build VM) ds-identify switches
# cloud-init off for the boot, so nothing probes metadata services or waits.
# cloud-init makes a fresh host's SSH keys itself: the same two kinds.
# The host's own name resolves (sudo would warn on every call otherwise), as
# on Debian's cloud images.
cat > "$root/etc/cloud/cloud.cfg.d/90-golden.cfg" <<'CFG'
datasource_list: [NoCloud, ConfigDrive]
ssh_genkeytypes: [ed25519, ecdsa]
manage_etc_hosts: true
growpart: {mode: "off"}
resize_rootfs: false
CFG

# Not the build host's name: provisioning sets the spec's hostname.
echo localhost > "$root/etc/hostname"
printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n' > "$root/etc/hosts"
