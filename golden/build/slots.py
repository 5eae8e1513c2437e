"""Job slots of builds side by side (./inv build --all -j N, ./inv test):
at most N builds work at once. A build that must wait for a stage another
build is making (the same cache entry) gives its slot up while it waits,
so another build can use the core meanwhile, and takes one again before it
goes on."""
from __future__ import annotations

import threading
from contextlib import contextmanager

from golden.vm.runner import refuse_after_interrupt

_held = threading.local()  # the slots a build thread took one of


@contextmanager
def in_a_slot(slots: threading.BoundedSemaphore):
    """The calling thread's build runs in one of slots."""
    slots.acquire()
    _held.slots = slots
    try:
        yield
    finally:
        _held.slots = None
        slots.release()


@contextmanager
def slot_given_up():
    """While waiting for another build: its slot is free for a third. A
    thread outside in_a_slot (a build on its own) just waits."""
    slots = getattr(_held, "slots", None)
    if slots is None:
        yield
        return
    slots.release()
    try:
        yield
    finally:
        slots.acquire()
    refuse_after_interrupt("the rest of this build")  # the run was stopped while it waited
