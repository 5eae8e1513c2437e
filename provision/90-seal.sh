#!/bin/sh
# Seals the image: nothing host-specific or secret stays behind.
set -eu
rm -rf "$GOLDEN_FILES"
# Credentials are made on each host's first boot, never in the image.
rm -rf /etc/golden/credentials
apt-get clean
rm -rf /var/lib/apt/lists/*
# An empty machine-id makes systemd generate a fresh one on each host's first boot.
: > /etc/machine-id
rm -f /var/lib/dbus/machine-id /var/lib/systemd/random-seed /var/lib/systemd/credential.secret
# Timers' last runs are this build's: a host that boots the image days later
# would catch them all up during its first boot (dpkg-db-backup, apt-daily,
# e2scrub, fstrim). Without a stamp, each timer starts counting at first boot.
rm -f /var/lib/systemd/timers/stamp-*
# cloud-init never ran here (no seed); make sure it starts fresh on each host.
cloud-init clean --logs
# golden-ssh-hostkeys.service makes new host keys on first boot.
rm -f /etc/ssh/ssh_host_*
# golden-host-identity.service makes the snakeoil pair and the PostgreSQL
# cluster (its system identifier) anew on each host.
rm -f /etc/ssl/private/ssl-cert-snakeoil.key /etc/ssl/certs/ssl-cert-snakeoil.pem
rm -rf /var/lib/postgresql/17/main
# Caddy's instance UUID, autosaved config and certificate storage; Valkey's dumps.
rm -rf /var/lib/caddy/.local/share/caddy /var/lib/caddy/.config/caddy
rm -rf /var/lib/valkey/dump.rdb /var/lib/valkey/appendonlydir
journalctl --rotate >/dev/null 2>&1 || true
rm -rf /var/log/journal/*
find /var/log -type f -exec truncate -s 0 {} +
rm -rf /tmp/* /var/tmp/* /root/.bash_history /home/vagrant/.bash_history
fstrim -v /
# Packer's shutdown command removes the last way in: vagrant's key and sudo rule.
