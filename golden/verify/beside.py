"""Work that runs beside the validation in the foreground (the fresh host's
tests beside the Vagrant part): a command in a thread, its output held back
and shown once it ends, so it never mixes into the foreground's progress;
an interrupt or failure of the foreground stops it."""
from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from contextlib import contextmanager
from pathlib import Path

from golden.paths import REPO
from golden.vm.runner import BuildLog

GRACE = 120  # s for a command to stop its VMs after an interrupt


class BackgroundRun:
    """command in a thread. rc: its exit code, None when it did not run to its end.
    log_file: a log of its own (e.g. QEMU's lines), put into `log` when it ends."""

    def __init__(self, stage: str, command: list, output: Path, log: BuildLog, log_file: Path | None = None):
        self.stage, self.command, self.log = stage, command, log
        self.output, self.log_file = output, log_file
        self.seconds, self.rc, self.proc, self.finished = 0.0, None, None, False
        self.started, self.done = threading.Event(), threading.Event()
        # A daemon thread: a second interrupt while waiting for it does not hold the exit.
        self.thread = threading.Thread(target=self._run, name=stage, daemon=True)
        log.say(f"==> {stage} (beside; its output is shown when it ends)")
        self.thread.start()
        self.started.wait()

    def _run(self) -> None:
        start = time.monotonic()
        try:
            with self.output.open("w") as out:
                # Its own process group: a terminal's Ctrl-C reaches it once, through interrupt().
                self.proc = subprocess.Popen(self.command, cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
                                             stdin=subprocess.DEVNULL, start_new_session=True)
                self.started.set()
                self.rc = self.proc.wait()
        except BaseException as exc:
            self.log.write(f"{self.stage} could not run: {exc!r}")
        finally:
            self.seconds = round(time.monotonic() - start, 1)
            self.started.set()
            self.done.set()

    def _signal(self, sig: int) -> None:
        if self.proc and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                pass

    def interrupt(self) -> None:
        """Asks it to stop, as Ctrl-C would (its whole process group): its own cleanup stops its VMs."""
        self._signal(signal.SIGINT)

    def finish(self, echo, timeout: float | None = None) -> None:
        """Waits for it (at most timeout), then puts its log into `log` and
        shows its output. Once: a second call does nothing."""
        if self.finished:
            return
        # An Event, not Thread.join: a join cut by Ctrl-C can leave the thread looking ended.
        if not self.done.wait(timeout):
            self._signal(signal.SIGKILL)
            self.log.say(f"{self.stage} did not stop within {timeout} s of the interrupt: killed "
                         f"(its VMs may be left; see {self.log.path})")
            self.done.wait(10)
        self.finished = True
        self.log.stage_seconds[self.stage] = self.seconds
        self.log.say(f"<== {self.stage} done in {self.seconds}s")
        if self.log_file and self.log_file.is_file():
            self.log.write(f"---- {self.log_file.name} ----\n" + self.log_file.read_text(errors="replace"))
        if self.output.is_file():
            print(self.output.read_text(errors="replace"), end="", file=echo, flush=True)


@contextmanager
def running_beside(runs: list[BackgroundRun], echo):
    """The block is the foreground work. When it raises (failure or
    interrupt), the runs are asked to stop and get GRACE seconds; otherwise
    they are waited for, and an interrupt while waiting stops them the same
    way. Either way each is finished before this returns."""
    try:
        yield
    except BaseException:
        _stop(runs, echo)  # their results no longer decide anything
        raise
    try:
        for run in runs:
            run.finish(echo)
    except BaseException:
        _stop(runs, echo)
        raise


def _stop(runs: list[BackgroundRun], echo) -> None:
    for run in runs:
        run.interrupt()
    for run in runs:
        run.finish(echo, timeout=GRACE)
