"""Work beside the foreground validation (the fresh host's tests beside the
Vagrant part): in a thread, its output held back until it ends, its log and
time put into the validation's; an interrupt stops it, and only a run to its
end counts."""
import io
import os
import signal
import sys
import threading
import time

import pytest

from golden.verify.beside import BackgroundRun, running_beside
from golden.vm.runner import BuildLog


STAGE = "tests/fresh (qcow2, QEMU, cloud-init seed)"


def _run(tmp_path, code: str):
    """code in a process beside; `up` in it: a function it calls once it is ready for an interrupt."""
    code = f"def up(): open({str(tmp_path / 'up')!r}, 'w').close()\n" + code
    echo = io.StringIO()
    log = BuildLog(tmp_path / "test.log", echo=echo)
    (tmp_path / "fresh").mkdir()
    return BackgroundRun(STAGE, [sys.executable, "-c", code], tmp_path / "fresh" / "out", log,
                         log_file=tmp_path / "fresh" / "fresh-host.log"), echo


def _wait_until_up(tmp_path):
    end = time.monotonic() + 30
    while not (tmp_path / "up").exists():
        assert time.monotonic() < end, "the process beside never came up"
        time.sleep(0.05)


def test_it_goes_on_beside_the_caller_and_shows_its_output_and_log_at_the_end(tmp_path):
    start = time.monotonic()
    run, echo = _run(tmp_path, "import pathlib, sys, time; time.sleep(1)\n"
                               f"pathlib.Path({str(tmp_path / 'fresh' / 'fresh-host.log')!r}).write_text('serial: login')\n"
                               "print('fresh host: 12 passed', flush=True); sys.exit(0)")
    assert time.monotonic() - start < 0.9  # started, not waited for
    run.finish(echo)
    shown = echo.getvalue()
    assert shown.index("==> tests/fresh") < shown.index("<== tests/fresh") < shown.index("fresh host: 12 passed")
    assert run.rc == 0 and 1 <= run.log.stage_seconds[STAGE] < 30
    log = (tmp_path / "test.log").read_text()
    assert "<== tests/fresh (qcow2, QEMU, cloud-init seed) done in" in log
    assert "---- fresh-host.log ----\nserial: login" in log


def test_its_exit_code_is_kept(tmp_path):
    run, echo = _run(tmp_path, "import sys; print('1 failed'); sys.exit(1)")
    run.finish(echo)
    assert run.rc == 1 and "1 failed" in echo.getvalue()


def test_an_interrupt_stops_it_and_it_does_not_count_as_a_run_to_its_end(tmp_path):
    run, echo = _run(tmp_path, "import time\ntry:\n    up(); time.sleep(300)\nexcept KeyboardInterrupt:\n"
                               "    print('stopped its VM', flush=True); raise SystemExit(2)")
    _wait_until_up(tmp_path)
    start = time.monotonic()
    run.interrupt()
    run.finish(echo, timeout=60)
    assert time.monotonic() - start < 30
    assert run.rc == 2 and "stopped its VM" in echo.getvalue()


def test_one_that_ignores_the_interrupt_is_killed_after_the_grace(tmp_path):
    run, echo = _run(tmp_path, "import signal, time; signal.signal(signal.SIGINT, signal.SIG_IGN); up(); time.sleep(300)")
    _wait_until_up(tmp_path)
    run.interrupt()
    start = time.monotonic()
    run.finish(echo, timeout=1)
    assert time.monotonic() - start < 15
    assert run.rc != 0 and "did not stop within 1 s of the interrupt: killed" in echo.getvalue()


def test_one_that_cannot_start_has_no_exit_code_and_says_why(tmp_path):
    echo = io.StringIO()
    log = BuildLog(tmp_path / "test.log", echo=echo)
    (tmp_path / "fresh").mkdir()
    run = BackgroundRun(STAGE, [str(tmp_path / "no-such-program")], tmp_path / "fresh" / "out", log)
    run.finish(echo)
    assert run.rc is None
    assert f"{STAGE} could not run: FileNotFoundError" in (tmp_path / "test.log").read_text()


def test_the_foreground_failing_stops_the_runs_beside_it_and_still_finishes_them(tmp_path):
    run, echo = _run(tmp_path, "import time\ntry:\n    up(); time.sleep(300)\nexcept KeyboardInterrupt:\n"
                               "    print('destroyed its VM', flush=True); raise SystemExit(3)")
    _wait_until_up(tmp_path)
    start = time.monotonic()
    with pytest.raises(RuntimeError):
        with running_beside([run], echo):
            raise RuntimeError("vagrant up failed")
    assert time.monotonic() - start < 30
    assert run.rc == 3 and "destroyed its VM" in echo.getvalue()
    assert f"<== {STAGE} done in" in echo.getvalue()


def test_the_foreground_passing_waits_for_the_runs_beside_it(tmp_path):
    run, echo = _run(tmp_path, "import time; time.sleep(1.5); print('12 passed')")
    with running_beside([run], echo):
        pass  # done at once: the run beside it is not
    assert run.rc == 0 and run.seconds >= 1.5 and "12 passed" in echo.getvalue()


def test_an_interrupt_while_waiting_for_the_runs_beside_stops_them_once(tmp_path):
    run, echo = _run(tmp_path, "import time\ntry:\n    up(); time.sleep(300)\nexcept KeyboardInterrupt:\n"
                               "    print('destroyed its VM', flush=True)\n    time.sleep(1)\n"
                               "    print('not interrupted twice', flush=True); raise SystemExit(3)")
    _wait_until_up(tmp_path)
    # A real SIGINT to this process only (as a terminal's Ctrl-C, which the run, in a process group of
    # its own, does not get): it must reach the run once, through interrupt().
    threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGINT)).start()
    start = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        with running_beside([run], echo):
            pass  # the foreground is done; waiting for the run beside it
    assert time.monotonic() - start < 30
    assert run.rc == 3 and "destroyed its VM" in echo.getvalue() and "not interrupted twice" in echo.getvalue()
    assert echo.getvalue().count(f"<== {STAGE} done in") == 1
