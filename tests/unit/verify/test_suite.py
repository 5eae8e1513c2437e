"""Where ./inv test's time went: each part timed, in the order it ran, also when it fails."""
import time

import pytest

from golden.verify.suite import Stopwatch


def test_stopwatch_times_each_part_in_order_and_a_failed_one_too():
    watch = Stopwatch()
    assert watch.part("unit tests", lambda x: x * 2, 21) == 42
    with pytest.raises(RuntimeError):
        watch.part("builds", lambda: (time.sleep(0.2), (_ for _ in ()).throw(RuntimeError("boom"))))
    assert list(watch.seconds) == ["unit tests", "builds"]
    assert 0.2 <= watch.seconds["builds"] < 2
    watch.seconds = {"unit tests": 330.0, "builds": 660.0, "validation of infra": 360.0}
    assert watch.summary() == "22.5 min in all (minutes: unit tests 5.5, builds 11.0, validation of infra 6.0)"
