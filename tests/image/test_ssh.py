"""SSH access and the vagrant user."""

INSECURE_KEY_COMMENT = "vagrant insecure public key"


def test_sshd_running_and_enabled(host):
    ssh = host.service("ssh")
    assert ssh.is_running
    assert ssh.is_enabled


def test_sshd_listens_on_the_network_only(host):
    """No sshd on AF_VSOCK or local AF_UNIX sockets (systemd's ssh generator),
    and no vsock driver loaded by its probe on a VM that has no vsock device."""
    assert host.file("/etc/systemd/system-generators/systemd-ssh-generator").linked_to == "/dev/null"
    assert host.check_output("systemctl list-units --all --plain --no-legend 'sshd-vsock*' 'sshd-unix-*'") == ""
    assert host.check_output("sudo ss -Hlx | grep -c ssh || true") == "0"
    loaded = host.check_output("awk '{print $1}' /proc/modules").split()
    assert [m for m in loaded if "vsock" in m or m == "vmw_vmci"] == []


def test_sshd_takes_keys_only_no_root_no_x11(host):
    """Debian's defaults allow passwords and X11 forwarding: the image does not."""
    config = dict(line.split(" ", 1) for line in host.check_output("sudo sshd -T").splitlines() if " " in line)
    assert (config["passwordauthentication"], config["kbdinteractiveauthentication"], config["permitrootlogin"],
            config["x11forwarding"]) == ("no", "no", "no", "no")


def test_vagrant_user_has_passwordless_sudo(host):
    assert host.user().name == "vagrant"
    assert host.run("sudo -n true").rc == 0
    assert host.check_output("sudo -n id -u") == "0"


def test_vagrant_insecure_key_was_replaced(host):
    keys = host.file("/home/vagrant/.ssh/authorized_keys")
    assert keys.mode == 0o600
    assert keys.content_string.strip()
    assert INSECURE_KEY_COMMENT not in keys.content_string


def test_no_password_login_for_vagrant(host):
    shadow = host.check_output("sudo getent shadow vagrant").split(":")
    assert shadow[1] in ("*", "!", "!*")
