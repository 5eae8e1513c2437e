"""./inv lab.up, then ./inv lab.down, with the two-host lab of vagrant/lab.yaml
and the default catalog (the tested local artifacts), run by ./inv test once
every lab image passed. Both machines come up from their own images; nothing
is left behind: no VM, no volume, no libvirt daemon, no network namespace."""
import json
import os
import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
POOL = Path("/var/lib/libvirt/images")
LAB = {"infra": "group", "infra-open": "open"}  # machine -> its image's socket policy


def inv(*args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([str(REPO / "inv"), *args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=1800)


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _lab_volumes() -> list[str]:
    return sorted(p.name for p in POOL.glob("*") if p.name.startswith(("golden-VAGRANTSLASH-", "vagrant_")))


def test_lab_up_then_down_leaves_nothing(tmp_path):
    env = dict(os.environ, VAGRANT_HOME=str(tmp_path / "vagrant.d"))
    env.pop("GOLDEN_CATALOG", None)
    up = inv("lab.up", env=env)
    state = json.loads((REPO / ".lab" / "state.json").read_text()) if (REPO / ".lab" / "state.json").is_file() \
        else {"netns": None, "pids": {}}
    try:
        assert up.returncode == 0, up.stdout[-4000:] + up.stderr[-4000:]
        for machine, policy in LAB.items():
            r = inv("lab.ssh", machine, "--command", "hostname; cat /etc/ansible/facts.d/golden.fact", env=env)
            assert r.returncode == 0, r.stdout + r.stderr
            hostname, facts = r.stdout.strip().split("\n", 1)
            assert hostname.strip() == machine
            assert json.loads(facts)["socket_access"] == policy
        boxes = subprocess.run(["vagrant", "box", "list"], env=env, capture_output=True, text=True).stdout
        for image in LAB:  # added from the catalog, with its version
            latest = (REPO / "artifacts" / image / "latest").resolve().name
            assert re.search(rf"^golden/{image} +\(libvirt, {re.escape(latest)}", boxes, re.M), boxes
        assert _lab_volumes()  # the check below can see them
    finally:
        down = inv("lab.down", env=env)
    assert down.returncode == 0, down.stdout[-4000:] + down.stderr[-4000:]
    assert _lab_volumes() == []
    assert not (REPO / ".lab" / "state.json").exists()
    assert not any(_alive(pid) for pid in state["pids"].values())
    if state["netns"]:
        assert state["netns"] not in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    qemu = subprocess.run(["pgrep", "-a", "qemu-system"], capture_output=True, text=True).stdout
    assert "vagrant_infra" not in qemu
    assert inv("lab.ssh", "infra", "--command", "true", env=env).returncode == 1  # "no lab is up"
