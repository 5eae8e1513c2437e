"""Waiting for a guest's sshd through QEMU's user network, against real
sockets on loopback: a forward that accepts and stays silent, as QEMU's
does before the guest's network is up."""
import socket
import threading
import time

import pytest

from golden.errors import GoldenError
from golden.vm.qemu import wait_for_login


def test_a_silent_forward_is_not_taken_for_sshd_and_the_wait_ends_at_its_timeout(tmp_path):
    listener = socket.create_server(("127.0.0.1", 0))
    accepted = []

    def accept_and_stay_silent():
        try:
            while True:
                accepted.append(listener.accept()[0])
        except OSError:  # the listener was closed: the test is over
            pass
    threading.Thread(target=accept_and_stay_silent, daemon=True).start()
    start = time.monotonic()
    try:
        with pytest.raises(GoldenError, match="could not log in by SSH within 3 s"):
            wait_for_login(listener.getsockname()[1], "vagrant", None, 3, tmp_path / "serial.log", step=0.2)
        assert 3 <= time.monotonic() - start < 10
        assert 1 <= len(accepted) <= 5  # each attempt waited out its banner timeout: no busy loop
    finally:
        listener.close()
        for conn in accepted:
            conn.close()

