"""Running tools with their full output in build.log, and timing stages."""
from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

from golden.errors import GoldenError

# A frame of a Ruby backtrace (Vagrant's), left out of a failure's message.
RUBY_FRAME = re.compile(r"\s+from /\S+\.rb:\d+:in ")


class BuildLog:
    """Appends every tool's output to one log file; prints stage progress."""

    def __init__(self, path: Path, echo=sys.stdout, label: str = ""):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.echo = echo
        self.label = label  # e.g. "infra: " when several builds share the terminal
        self.started = time.monotonic()
        self.stage_seconds: dict[str, float] = {}

    def write(self, text: str) -> None:
        with self.path.open("a") as f:
            f.write(text if text.endswith("\n") else text + "\n")

    def say(self, text: str) -> None:
        elapsed = time.monotonic() - self.started
        line = f"[{elapsed:6.1f}s] {self.label}{text}"
        print(line, file=self.echo, flush=True)
        self.write(line)

    @contextmanager
    def stage(self, name: str):
        self.say(f"==> {name}")
        start = time.monotonic()
        yield
        seconds = round(time.monotonic() - start, 1)
        self.stage_seconds[name] = seconds
        self.say(f"<== {name} done in {seconds}s")

    def run(self, cmd: list, cwd=None, env=None, input: str | None = None, tail: int = 15) -> None:
        """Runs cmd with stdout+stderr appended to the log; on failure raises
        GoldenError with the last lines of its output."""
        refuse_after_interrupt(Path(str(cmd[0])).name)
        self.write(f"$ {shlex.join(str(c) for c in cmd)}" + (f" <<EOF\n{input}EOF" if input else ""))
        start = time.monotonic()
        with self.path.open("a") as f:
            offset = f.tell()
            # Its own process group: an interrupt stops the tool and everything it
            # started (Packer's plugins, QEMU), not just the tool itself.
            with _RUNNING_LOCK:  # started under the lock: stop_all_running sees every tool
                refuse_after_interrupt(Path(str(cmd[0])).name)
                proc = subprocess.Popen([str(c) for c in cmd], cwd=cwd, env=env, text=True,
                                        stdout=f, stderr=subprocess.STDOUT, start_new_session=True,
                                        stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL)
                _RUNNING.add(proc)
            try:
                proc.communicate(input)
            except BaseException:
                stop_process_group(proc)
                raise
            finally:
                with _RUNNING_LOCK:
                    _RUNNING.discard(proc)
        if proc.returncode != 0:
            with self.path.open() as f:
                f.seek(offset)
                # A Ruby backtrace (Vagrant's) would fill the tail: its message is the line above it.
                last = [line for line in f.read().splitlines() if not RUBY_FRAME.match(line)][-tail:]
        self.write(f"$ ({Path(str(cmd[0])).name}: exit {proc.returncode} after {time.monotonic() - start:.1f}s)")
        if proc.returncode != 0:
            detail = "\n    ".join(last)
            raise GoldenError(f"{Path(str(cmd[0])).name} failed (exit {proc.returncode}); "
                              f"full log: {self.path}\n    {detail}")


# Tools running now, in any thread: an interrupt of parallel builds stops them all.
_RUNNING: set[subprocess.Popen] = set()
_RUNNING_LOCK = threading.Lock()
_STOPPING = threading.Event()  # set by an interrupt: this process starts no new tool


def refuse_after_interrupt(what: str) -> None:
    """Raises once stop_all_running was called: what (a tool, a build) does not start."""
    if _STOPPING.is_set():
        raise GoldenError(f"interrupted: {what} not started")


def pause_unless_interrupted(seconds: float, what: str) -> None:
    """Waits up to seconds, or raises as refuse_after_interrupt at once when
    the run is stopped (a worker thread never sees the interrupt itself)."""
    if _STOPPING.wait(seconds):
        refuse_after_interrupt(what)


def stop_all_running() -> None:
    """After an interrupt: stops every tool running and lets no new one start
    (a build waiting for a shared stage would otherwise go on to run it)."""
    with _RUNNING_LOCK:
        _STOPPING.set()
        running = list(_RUNNING)
    for proc in running:
        stop_process_group(proc)


def stop_process_group(proc: subprocess.Popen, grace: float = 15) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            continue


def alive(pid: int) -> bool:
    """Running (a zombie is not: without systemd nobody may reap it)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def stop_pid(pid: int, name: str, grace: float = 15) -> None:
    """Stops process pid if it is still the `name` we started; never raises."""
    try:
        if Path(f"/proc/{pid}/comm").read_text().strip() != name:
            return  # gone, and the PID reused by something else
    except FileNotFoundError:
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            try:
                os.waitpid(pid, os.WNOHANG)  # reap it if it is our child
            except ChildProcessError:
                pass
            if not alive(pid):
                return
            time.sleep(0.2)


def capture(cmd: list[str], input: str | None = None) -> str:
    """Output of a quick query command; raises GoldenError on failure."""
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, input=input)
    if proc.returncode != 0:
        raise GoldenError(f"{shlex.join(str(c) for c in cmd)} failed: {proc.stderr.strip()}")
    return proc.stdout
