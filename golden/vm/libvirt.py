"""A libvirt daemon for test VMs.

When a libvirt daemon already answers on qemu:///system it is used as it is.
Otherwise (CI: no systemd, no daemons) a private network namespace is created
and virtlogd and libvirtd are started inside it; every command that talks to
the VMs (vagrant, ssh, pytest) then runs in that namespace too, so no test VM
is ever routed to or from any outside network. Everything started here is
stopped by PID on the way out.
"""
from __future__ import annotations

import os
import signal
import subprocess
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from golden.errors import GoldenError
from golden.vm.runner import alive, stop_pid

URI = "qemu:///system"


@dataclass
class LibvirtSession:
    netns: str | None  # None: an existing daemon outside any namespace

    def wrap(self, cmd: list) -> list[str]:
        cmd = [str(c) for c in cmd]
        return ["ip", "netns", "exec", self.netns, *cmd] if self.netns else cmd


def daemon_answers(session: LibvirtSession | None = None) -> bool:
    cmd = ["virsh", "-c", URI, "version"]
    try:
        return subprocess.run(session.wrap(cmd) if session else cmd, capture_output=True,
                              timeout=15).returncode == 0
    except (subprocess.TimeoutExpired, FileNotFoundError):
        return False


def delete_volumes(prefix: str, session: LibvirtSession, log) -> None:
    """Deletes the default pool's volumes whose names start with prefix
    (the images Vagrant uploaded from boxes)."""
    listing = subprocess.run(session.wrap(["virsh", "-c", URI, "vol-list", "default"]),
                             capture_output=True, text=True)
    if listing.returncode != 0:
        return  # no pool yet: nothing was uploaded
    for vol in (line.split()[0] for line in listing.stdout.splitlines()[2:] if line.strip()):
        if vol.startswith(prefix):
            log.run(session.wrap(["virsh", "-c", URI, "vol-delete", "--pool", "default", vol]))


def _kill_namespace_processes(netns: str) -> None:
    out = subprocess.run(["ip", "netns", "pids", netns], capture_output=True, text=True).stdout
    for pid in out.split():
        try:
            os.kill(int(pid), signal.SIGKILL)
        except ProcessLookupError:
            pass


DAEMONS = ("virtlogd", "libvirtd")


def start_private_libvirt(netns: str, log_dir: Path) -> dict[str, int]:
    """Creates network namespace netns and starts virtlogd and libvirtd in it,
    detached (they outlive this process); returns their PIDs by name."""
    added = subprocess.run(["ip", "netns", "add", netns], capture_output=True, text=True)
    if added.returncode != 0:
        raise GoldenError(f"cannot create network namespace {netns}: {added.stderr.strip()}")
    pids: dict[str, int] = {}
    try:
        if subprocess.run(["ip", "netns", "exec", netns, "ip", "link", "set", "lo", "up"]).returncode != 0:
            raise GoldenError(f"cannot bring up the loopback of network namespace {netns}")
        Path("/var/lib/libvirt/images").mkdir(parents=True, exist_ok=True)
        for daemon in DAEMONS:
            with (log_dir / f"{daemon}.log").open("a") as logf:
                proc = subprocess.Popen(["ip", "netns", "exec", netns, daemon], stdout=logf,
                                        stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
            pids[daemon] = proc.pid  # `ip netns exec` execs the daemon: same PID
        deadline = time.monotonic() + 60
        while not daemon_answers():
            if time.monotonic() > deadline or not all(alive(p) for p in pids.values()):
                raise GoldenError(f"libvirtd did not start; see {log_dir}/libvirtd.log")
            time.sleep(0.5)
        return pids
    except BaseException:
        stop_private_libvirt(netns, pids)
        raise


def stop_private_libvirt(netns: str, pids: dict[str, int]) -> None:
    for daemon in reversed(DAEMONS):
        if daemon in pids:
            stop_pid(pids[daemon], daemon)
    _kill_namespace_processes(netns)  # e.g. dnsmasq, a qemu left by a failed destroy
    subprocess.run(["ip", "netns", "del", netns], check=False, capture_output=True)


def open_session(netns: str, log_dir: Path, say=print) -> tuple[LibvirtSession, dict[str, int]]:
    """The running daemon's session, or one of a private daemon started in
    network namespace netns: (session, the PIDs to stop afterwards)."""
    if daemon_answers():
        say("libvirt: using the running daemon")
        return LibvirtSession(netns=None), {}
    say(f"libvirt: no daemon answers; starting virtlogd and libvirtd in network namespace {netns}")
    return LibvirtSession(netns=netns), start_private_libvirt(netns, log_dir)


@contextmanager
def libvirt_session(log_dir: Path, say=print):
    session, pids = open_session(f"golden-{os.getpid()}", log_dir, say)
    try:
        yield session
    finally:
        if session.netns:
            stop_private_libvirt(session.netns, pids)
