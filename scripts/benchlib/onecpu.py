"""One CPU for a FUSE daemon and the tool walking it: how much of a `find` is the machine's wake-ups.

A `find` through FUSE is a chain of synchronous round trips. The tool's system call queues a request
and sleeps; that wakes a daemon thread; the daemon's answer wakes the tool again. On two CPUs the
scheduler puts each sleeper it wakes on the CPU that is idle, so every round trip wakes an idle CPU
twice, and on a VM each of those wake-ups is an interrupt sent through the host. This machine's
kernel runs the ``haltpoll`` idle driver with its polling turned off (``guest_halt_poll_ns=0``, what
``machine.halt_polling`` reports), so an idle virtual CPU halts at once and every wake-up pays the
host's round trip. On one CPU the sleeper is just switched to: no interrupt, no halt.

The bench times the floor and the mount again with the daemon's threads and the ``find`` on one CPU.
No user is asked to do that (a daemon pinned away from the tool is the slowest case of all), so the
goal stays on the figure taken as a user would run it; these figures say what share of it the
machine's wake-ups are, and what redcapfs's own share is without them.
"""

from __future__ import annotations

import os
from collections.abc import Callable


def cpu() -> int | None:
    """The CPU to pin to (the first this process may use), or None when there is only one anyway."""
    allowed = sorted(os.sched_getaffinity(0))
    return allowed[0] if len(allowed) > 1 else None


def pin(pid: int, where: int) -> None:
    """Every thread of process ``pid`` onto CPU ``where``.

    Threads made later inherit the affinity of the thread that makes them; a thread made while this
    runs by one not yet pinned would not, so the walk repeats until it finds every thread pinned.
    """
    for _ in range(10):
        moved = 0
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                if os.sched_getaffinity(int(tid)) != {where}:
                    os.sched_setaffinity(int(tid), {where})
                    moved += 1
            except ProcessLookupError:  # the thread ended meanwhile
                continue
        if not moved:
            return
    raise RuntimeError(f"process {pid} kept making threads off CPU {where}")


def child_on(where: int | None) -> Callable[[], None] | None:
    """A ``preexec_fn`` that starts a command on CPU ``where`` (None: wherever the scheduler likes)."""
    if where is None:
        return None
    return lambda: os.sched_setaffinity(0, {where})
