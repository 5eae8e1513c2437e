import os
import signal
import subprocess
import sys
import time

import pytest

from golden.errors import GoldenError
from golden.vm.runner import BuildLog

from conftest import REPO


def test_failure_names_the_tool_and_shows_its_last_lines(tmp_path):
    log = BuildLog(tmp_path / "build.log")
    with pytest.raises(GoldenError) as err:
        log.run(["sh", "-c", "echo first; echo 'the real reason' >&2; exit 3"])
    assert "sh failed (exit 3)" in str(err.value) and "the real reason" in str(err.value)
    assert "the real reason" in (tmp_path / "build.log").read_text()


def test_a_ruby_backtrace_does_not_hide_the_error_above_it(tmp_path):
    """Vagrant prints its error, then dozens of frames."""
    frames = "; ".join(["echo \"    \tfrom /usr/lib/vagrant/lib/vagrant/warden.rb:48:in \\`call'\""] * 30)
    log = BuildLog(tmp_path / "build.log")
    with pytest.raises(GoldenError) as err:
        log.run(["sh", "-c", f"echo 'Timed out while waiting for the machine to boot.'; {frames}; exit 1"])
    assert "Timed out while waiting for the machine to boot." in str(err.value)
    assert "warden.rb" not in str(err.value)
    logged = (tmp_path / "build.log").read_text().splitlines()
    assert len([line for line in logged if line.lstrip().startswith("from /usr")]) == 30  # the full log keeps them


def test_each_command_logs_how_long_it_took(tmp_path):
    """The build log's breakdown below a stage: every tool's exit and seconds."""
    log = BuildLog(tmp_path / "build.log")
    log.run(["sh", "-c", "sleep 0.3"])
    with pytest.raises(GoldenError):
        log.run(["sh", "-c", "exit 2"])
    lines = (tmp_path / "build.log").read_text().splitlines()
    assert lines[0] == "$ sh -c 'sleep 0.3'"
    took = float(lines[1].removeprefix("$ (sh: exit 0 after ").removesuffix("s)"))
    assert 0.3 <= took < 30
    assert lines[3].startswith("$ (sh: exit 2 after ")


def test_interrupt_stops_the_tool_and_everything_it_started(tmp_path):
    """As when ./inv build is stopped during Packer: no plugin or QEMU may linger."""
    pidfile = tmp_path / "grandchild.pid"
    code = ("import signal, sys; from pathlib import Path; from golden.vm.runner import BuildLog\n"
            "signal.signal(signal.SIGTERM, lambda *a: sys.exit(143))\n"
            f"BuildLog(Path({str(tmp_path / 'build.log')!r})).run(['sh', '-c', "
            f"'sleep 300 & echo $! > {pidfile}; wait'])\n")
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=REPO)
    deadline = time.monotonic() + 20
    while not (pidfile.exists() and pidfile.read_text().strip()):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    grandchild = int(pidfile.read_text())
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 143
    deadline = time.monotonic() + 10  # SIGTERM is delivered at once; dying may lag on a loaded host
    while _alive(grandchild) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(grandchild)


def _alive(pid: int) -> bool:
    """Running; a zombie (dead, waiting for a reaper) does not count."""
    try:
        with open(f"/proc/{pid}/status") as f:
            state = next(l for l in f if l.startswith("State:"))
    except FileNotFoundError:
        return False
    return "Z (zombie)" not in state


def test_stop_all_running_stops_tools_of_every_thread(tmp_path):
    """An interrupt of `./inv build --all -j 2`: the tools of both builds stop."""
    import threading
    from golden.vm.runner import stop_all_running
    errors = []

    def build(n):
        try:
            BuildLog(tmp_path / f"{n}.log").run(["sleep", "300"])
        except GoldenError as exc:
            errors.append(str(exc))
    threads = [threading.Thread(target=build, args=(n,)) for n in range(2)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 10
    while len(subprocess.run(["pgrep", "-P", str(os.getpid()), "-fx", "sleep 300"], capture_output=True, text=True).stdout.split()) < 2:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    start = time.monotonic()
    stop_all_running()
    for t in threads:
        t.join(timeout=30)
    assert time.monotonic() - start < 20
    assert len(errors) == 2 and all("sleep failed" in e for e in errors)
