"""Changes to what listings show, counted: lets a listing made ahead (dirfill.py) know it is still good.

Every operation that may change a listing (each FUSE operation but the looks, and the timer that ends an
empty truncation's grace) runs inside :meth:`ListingChanges.changing`: the generation moves on when it
begins and again when it ends, and ``busy`` counts those running. A listing is made ahead only while none
runs, and used only while the generation is still the one read before it was made: so no change, begun
before or after, running or done, can hide behind it.

Lock: ``_lock`` guards both numbers; a leaf (nothing is called while it is held).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager


class ListingChanges:
    """The generation of what listings show, and how many changes to it are running."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._generation = 0
        self._busy = 0

    def begin(self) -> None:
        with self._lock:
            self._generation += 1
            self._busy += 1

    def end(self) -> None:
        with self._lock:
            self._generation += 1
            self._busy -= 1

    def state(self) -> tuple[int, int]:
        """(generation, changes running), read together."""
        with self._lock:
            return self._generation, self._busy

    @contextmanager
    def changing(self) -> Iterator[None]:
        self.begin()
        try:
            yield
        finally:
            self.end()
