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

URI = "qemu:///system"


@dataclass
class LibvirtSession:
    netns: str | None  # None: an existing daemon outside any namespace

    def wrap(self, cmd: list) -> list[str]:
        cmd = [str(c) for c in cmd]
        return ["ip", "netns", "exec", self.netns, *cmd] if self.netns else cmd


def daemon_answers() -> bool:
    try:
        return subprocess.run(["virsh", "-c", URI, "version"], capture_output=True, timeout=15).returncode == 0
    except (subprocess.TimeoutExpired, FileNotFoundError):
        return False


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _kill_namespace_processes(netns: str) -> None:
    out = subprocess.run(["ip", "netns", "pids", netns], capture_output=True, text=True).stdout
    for pid in out.split():
        try:
            os.kill(int(pid), signal.SIGKILL)
        except ProcessLookupError:
            pass


@contextmanager
def libvirt_session(log_dir: Path, say=print):
    if daemon_answers():
        say("libvirt: using the running daemon")
        yield LibvirtSession(netns=None)
        return
    netns = f"golden-{os.getpid()}"
    say(f"libvirt: no daemon answers; starting virtlogd and libvirtd in network namespace {netns}")
    added = subprocess.run(["ip", "netns", "add", netns], capture_output=True, text=True)
    if added.returncode != 0:
        raise GoldenError(f"cannot create network namespace {netns}: {added.stderr.strip()}")
    procs: list[subprocess.Popen] = []
    try:
        subprocess.run(["ip", "netns", "exec", netns, "ip", "link", "set", "lo", "up"], check=True)
        Path("/var/lib/libvirt/images").mkdir(parents=True, exist_ok=True)
        for daemon in ("virtlogd", "libvirtd"):
            logf = (log_dir / f"{daemon}.log").open("a")
            procs.append(subprocess.Popen(["ip", "netns", "exec", netns, daemon], stdout=logf,
                                          stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL))
        deadline = time.monotonic() + 60
        while not daemon_answers():
            if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                raise GoldenError(f"libvirtd did not start; see {log_dir}/libvirtd.log")
            time.sleep(0.5)
        yield LibvirtSession(netns=netns)
    finally:
        for proc in reversed(procs):
            _stop(proc)
        _kill_namespace_processes(netns)  # e.g. dnsmasq, a qemu left by a failed destroy
        subprocess.run(["ip", "netns", "del", netns], check=False)
