"""The base system: Debian 13, the spec's hostname, a disk that boots itself."""
import pytest


def test_debian_13(host):
    assert host.system_info.distribution == "debian"
    assert host.file("/etc/os-release").contains('^VERSION_ID="13"$')


def test_hostname_from_spec(host, manifest):
    assert host.check_output("hostname") == manifest["hostname"]


def test_boots_from_its_own_disk_with_grub(host):
    cmdline = host.file("/proc/cmdline").content_string
    # GRUB passes BOOT_IMAGE; a direct kernel boot (as during provisioning) does not.
    assert cmdline.startswith("BOOT_IMAGE=/boot/vmlinuz-")
    disk = "/dev/" + host.check_output("lsblk -no PKNAME $(findmnt -no SOURCE /)")
    assert host.check_output(f"sudo head -c 512 {disk} | grep -ac GRUB") == "1"
    # GRUB's core image lives in the BIOS boot partition of the GPT disk.
    part_types = host.check_output(f"lsblk -nro PARTTYPE {disk}").split()
    assert "21686148-6449-6e6f-744e-656564454649" in part_types
    # The first boot is by BIOS; test_reboot.py starts the VM again by UEFI, tests/fresh boots by UEFI.
    assert not host.file("/sys/firmware/efi").exists


def test_grub_asks_for_no_module_it_may_not_load_under_secure_boot(host):
    """What update-grub writes after a kernel upgrade loads bli only when GRUB
    is not locked down (tests/fresh checks the console of a Secure Boot boot)."""
    assert host.file("/etc/grub.d/25_bli").mode & 0o111 == 0
    assert host.file("/etc/grub.d/25_golden_bli").mode & 0o111 == 0o111
    config = host.check_output("sudo cat /boot/grub/grub.cfg")  # root only
    assert config.count("insmod bli") == 1
    assert 'if [ "$lockdown" != "y" ]; then insmod bli; fi' in config


def test_the_esp_holds_debians_signed_boot_chain(host, manifest):
    """The same disk boots by UEFI: the ESP (mounted at /boot/efi) holds shim
    and the signed GRUB at the removable path, which reads the root's grub.cfg."""
    # Mounted on first use, not waited for at boot.
    assert host.check_output("systemctl is-active boot-efi.automount") == "active"
    host.run_test("sudo ls /boot/efi/EFI")
    assert host.check_output("lsblk -nro PARTTYPE $(findmnt -nfo SOURCE -t vfat /boot/efi)") == \
        "c12a7328-f81f-11d2-ba4b-00a0c93ec93b"
    for installed, shipped in (("/boot/efi/EFI/BOOT/BOOTX64.EFI", "/usr/lib/shim/shimx64.efi.signed"),
                               ("/boot/efi/EFI/BOOT/grubx64.efi", "/usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed")):
        assert host.run(f"sudo cmp {installed} {shipped}").rc == 0, installed
    root_uuid = host.check_output("findmnt -no UUID /")
    assert root_uuid in host.check_output("sudo cat /boot/efi/EFI/debian/grub.cfg")
    assert "UUID=" in host.check_output("grep /boot/efi /etc/fstab")


def test_root_grows_to_a_disk_larger_than_the_image(host, manifest):
    """The test VM's disk is 2 GiB larger than the spec's (as a user resizes a
    box's disk): golden-growroot grew the partition and the ext4 to it."""
    host.run("systemctl is-system-running --wait")  # golden-growroot has run
    disk = "/dev/" + host.check_output("lsblk -no PKNAME $(findmnt -no SOURCE /)")
    disk_bytes = int(host.check_output(f"lsblk -bdno SIZE {disk}"))
    assert disk_bytes > manifest["disk_size"]
    root_bytes = int(host.check_output("df -B1 --output=size / | tail -1"))
    assert manifest["disk_size"] < 0.9 * disk_bytes < root_bytes <= disk_bytes
    assert host.service("golden-growroot").is_enabled
    assert host.run("sudo /usr/local/sbin/golden-growroot").rc == 0  # nothing left to grow: no error


def test_clock_is_kept_by_timesyncd(host):
    assert host.service("systemd-timesyncd").is_enabled and host.service("systemd-timesyncd").is_running
    assert host.check_output("timedatectl show -p NTP --value") == "yes"


def test_root_filesystem_in_fstab(host):
    assert host.mount_point("/").filesystem == "ext4"
    assert host.file("/etc/fstab").contains("^UUID=[0-9a-f-]* / ext4 ")


@pytest.mark.alone
@pytest.mark.settled  # after the kills: each service came back, none is left failed
def test_no_failed_units(host):
    assert host.check_output("systemctl is-system-running --wait || true") in ("running", "degraded")
    assert host.check_output("systemctl --failed --no-legend --plain") == ""


def test_cloud_init_is_off_without_a_seed(host):
    """Vagrant attaches no NoCloud/ConfigDrive seed: ds-identify switches
    cloud-init off, so boots never wait on metadata services."""
    assert host.package("cloud-init").is_installed
    assert "status: disabled" in host.run("cloud-init status").stdout
    assert not host.file("/var/lib/cloud/instance").exists


# The devices the README's hypervisors present, and the drivers for them.
CLOUD_DRIVERS = ["virtio_net", "virtio_blk", "virtio_scsi", "vmxnet3", "vmw_pvscsi", "hv_netvsc", "hv_storvsc",
                 "nvme", "ahci", "ena", "gve"]
GENERIC_ONLY_DRIVERS = ["e1000", "e1000e", "mptspi", "mptsas", "sym53c8xx"]


def test_the_kernel_has_drivers_for_the_hypervisors_devices(host, manifest):
    """modinfo finds each driver as a module or built into the running kernel."""
    wanted = CLOUD_DRIVERS + (GENERIC_ONLY_DRIVERS if manifest["kernel"] == "generic" else [])
    missing = [d for d in wanted if host.run(f"sudo modinfo {d}").rc != 0]
    assert missing == []
    if manifest["kernel"] == "cloud":  # what the README says the cloud kernel lacks
        assert [d for d in GENERIC_ONLY_DRIVERS if host.run(f"sudo modinfo {d}").rc == 0] == []


def test_no_drivers_for_hardware_a_server_vm_does_not_use_now_or_after_updates(host):
    """Wireless, Bluetooth, sound and cameras, and Podman's test binary, are
    left out (dpkg path-excludes, kept in the image for the updates to
    come): nothing loads them, e.g. cfg80211 that systemd-networkd's nl80211
    lookup used to pull in."""
    kernel = host.check_output("uname -r")
    for driver in ("cfg80211", "mac80211", "bluetooth", "snd", "videodev", "iwlwifi", "amdgpu"):
        assert host.run(f"sudo modinfo -k {kernel} {driver}").rc != 0, driver
    assert host.check_output("lsmod | awk 'NR > 1 {print $1}' | grep -cx cfg80211 || true") == "0"
    assert not host.file("/usr/libexec/podman/podman-testing").exists
    excludes = host.check_output("cat /etc/dpkg/dpkg.cfg.d/*")
    assert "path-exclude=/usr/lib/modules/*/kernel/drivers/net/wireless/*" in excludes
    assert "path-exclude=/usr/lib/modules/*/kernel/sound/*" in excludes
    assert "path-exclude=/usr/libexec/podman/podman-testing" in excludes


# The disk controllers the root may be on (provision/rootfs/initramfs-tools).
DISK_DRIVERS = ["virtio_blk", "virtio_scsi", "sd_mod", "sr_mod", "nvme", "ahci", "ata_piix", "vmw_pvscsi", "hv_storvsc",
                "xen_blkfront", "mptspi", "mptsas", "sym53c8xx"]


def test_the_initramfs_holds_every_disk_driver_and_no_more(host):
    """MODULES=list: each disk controller driver the kernel has as a module
    is in the initramfs (the root can be on any of them), and the initramfs
    is a small fraction of Debian's default one (MODULES=most: 37 MB)."""
    kernel = host.check_output("uname -r")
    packed = host.check_output(f"sudo lsinitramfs /boot/initrd.img-{kernel}")
    for driver in DISK_DRIVERS + ["ext4"]:
        path = host.run(f"sudo modinfo -k {kernel} -n {driver}").stdout.strip()
        if "/kernel/" in path:  # a module (not built in, and this flavour has it)
            assert f"/{kernel}{path[path.index('/kernel/'):]}" in packed, driver
    assert host.check_output("grep -h ^MODULES= /etc/initramfs-tools/conf.d/*.conf") == "MODULES=list"
    # The initramfs checked the root before mounting it (so systemd did not).
    assert "usr/sbin/e2fsck" in packed and "usr/sbin/fsck" in packed
    assert host.run("sudo test -e /run/initramfs/fsck-root").rc == 0  # /run/initramfs: root only
    assert host.check_output("systemctl show -P ConditionResult systemd-fsck-root") == "no"
    assert int(host.check_output(f"stat -c %s /boot/initrd.img-{kernel}")) < 15_000_000
