#!/bin/sh
# mmdebstrap customize hook, run on the host: $1 = the new root, then a
# reference and a tarball per container image of the spec. The image's own
# Podman, in the chroot, imports each into a store of preloaded images that
# Podman on the host reads beside its own, read-only: at native speed here,
# where the build VM's emulated CPU took one to two minutes per image.
set -eu
root=$1
shift
store=/usr/lib/containers/storage
# A mount namespace of its own: Podman's unpacking remounts / (so the chroot
# must be a mount point), and what it leaves in /run, /tmp and /var/tmp goes
# with the namespace.
PODMAN_IGNORE_CGROUPSV1_WARNING=1 unshare --mount --fork sh -eu -c '
    root=$1 store=$2
    shift 2
    mount --rbind "$root" "$root"
    for dir in run tmp var/tmp; do mount -t tmpfs tmpfs "$root/$dir"; done
    while [ $# -gt 0 ]; do
        chroot "$root" podman --root "$store" --runroot /run/golden-import --cgroup-manager=cgroupfs \
            --events-backend=none import --quiet - "$1" < "$2"
        shift 2
    done' sh "$root" "$store" "$@"
# Podman's own state of that run: only the images and their layers stay.
rm -rf "$root$store/libpod" "$root$store/db.sql" "$root$store/volumes" "$root$store/defaultNetworkBackend"
cat > "$root/etc/containers/storage.conf" <<CONF
# golden: Podman's defaults, and the images preloaded at build time as a
# read-only store beside the default one.
[storage]
driver = "overlay"
runroot = "/run/containers/storage"
graphroot = "/var/lib/containers/storage"

[storage.options]
additionalimagestores = ["$store"]
CONF
