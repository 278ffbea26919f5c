"""Log lines for refused creates and renames: one per slot and reason per window, not one per call.

Tools retry a refused create with another name: Python's
``tempfile.NamedTemporaryFile`` tries up to 238,328 random names, each refused
in an occupied slot, and a line per refusal grew one mount's log to 52 MB in
about 100 seconds. The first refusal of a kind in a slot is said in full; more
of the same kind within :data:`WINDOW` seconds are only counted, and the next
line after the window says how many there were.

The refusal's exception is marked ``logged`` (see :func:`mark`), so the FUSE
layer does not log it a second time.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Hashable

WINDOW = 60.0
"""Seconds during which more refusals of one slot and reason are counted, not logged."""

_MAX_KEYS = 4096  # slots x reasons remembered; beyond that the oldest are forgotten


class RefusalLog:
    """Rate-limits warnings by key (slot, reason). Thread-safe; the lock is a leaf."""

    def __init__(self, window: float = WINDOW, clock: Callable[[], float] = time.monotonic) -> None:
        self.window = window
        self._clock = clock
        self._lock = threading.Lock()
        self._seen: dict[Hashable, tuple[float, int]] = {}  # key -> (when last said, refusals not said since)

    def warn(self, logger: logging.Logger, key: Hashable, message: str, *args: object) -> bool:
        """Log ``message % args`` unless this key was said within the window; True if it was logged."""
        now = self._clock()
        with self._lock:
            said, quiet = self._seen.get(key, (None, 0))
            if said is not None and now - said < self.window:
                self._seen[key] = (said, quiet + 1)
                return False
            self._seen.pop(key, None)
            self._seen[key] = (now, 0)
            while len(self._seen) > _MAX_KEYS:
                self._seen.pop(next(iter(self._seen)))
        if quiet:
            message += f" (and {quiet} more refusal(s) like it in the last {self.window:g} s, not logged)"
        logger.warning(message, *args)
        return True


REFUSALS = RefusalLog()
"""The mount's one refusal log."""


def mark(exc: BaseException) -> BaseException:
    """Mark ``exc`` as already logged (or deliberately not), for the FUSE layer's report."""
    exc.logged = True  # type: ignore[attr-defined]
    return exc
