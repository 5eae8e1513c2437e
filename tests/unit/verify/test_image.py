"""The fresh host's tests run beside the Vagrant part: in a thread, their
output held back until they end, their time in the validation log."""
import io
import sys
import time

from golden.verify.image import _FreshHostRun
from golden.vm.runner import BuildLog


def test_the_fresh_host_run_goes_on_beside_the_caller_and_shows_its_output_at_the_end(tmp_path):
    echo = io.StringIO()
    log = BuildLog(tmp_path / "test.log", echo=echo)
    start = time.monotonic()
    run = _FreshHostRun([sys.executable, "-c", "import time; time.sleep(1); print('fresh host: 12 passed')"],
                        tmp_path / "fresh.out", log)
    assert time.monotonic() - start < 0.9  # started, not waited for
    assert "fresh host" not in echo.getvalue()  # nothing of it mixed into the caller's output meanwhile
    run.finish(echo)
    shown = echo.getvalue()
    assert shown.index("==> tests/fresh") < shown.index("<== tests/fresh") < shown.index("fresh host: 12 passed")
    assert 1 <= log.stage_seconds[_FreshHostRun.STAGE] < 30
    assert "<== tests/fresh (qcow2, QEMU, cloud-init seed) done in" in (tmp_path / "test.log").read_text()
