"""The grace of a truncation to empty: closed with nothing written, it is sent only if no write follows soon.

ImageMagick's ``convert`` onto an existing name (and other tools that open with
O_TRUNC, close, then open again to write) would otherwise put an empty file in
REDCap for a moment, and leave it there if the second upload failed. So the
last close of a copy still TRUNCATED (an existing file opened with O_TRUNC,
nothing written) holds it for ``grace`` seconds, listed as the empty file it
is: a new open for writing within the grace takes over (the held copy is never
sent; the new one starts empty and is sent at its own close), and when the
grace passes with no such open the empty file is uploaded (its old version goes
to the trash first, as for any replace). Until then REDCap keeps the old
version: a crash during the grace loses the truncation, never the file.

Lock: ``_lock`` guards the table of held copies only (a leaf); the upload at the
end of the grace runs in the timer's thread with no lock of ours held.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from redcapfs.fs.localfiles import LocalFile
from redcapfs.shape import Slot

log = logging.getLogger(__name__)

EMPTY_GRACE = 2.0  # seconds (docs/SEMANTICS.md); the mount sets it, 0 sends at the last close as before


class EmptyGrace:
    """Held empty truncations, each with the timer that sends it."""

    def __init__(self, grace: float, send: Callable[[LocalFile], None]) -> None:
        self.grace = grace
        self._send = send  # the rest of the last close: upload, unlist, drop or keep as unsent
        self._lock = threading.Lock()
        self._held: dict[int, tuple[LocalFile, threading.Timer]] = {}

    def hold(self, local: LocalFile) -> None:
        timer = threading.Timer(self.grace, self._over, args=(local,))
        timer.daemon = True
        timer.name = "empty-grace"
        with self._lock:
            self._held[id(local)] = (local, timer)
        timer.start()

    def any(self) -> bool:
        with self._lock:
            return bool(self._held)

    def held(self, local: LocalFile) -> bool:
        with self._lock:
            return id(local) in self._held

    def take(self, local: LocalFile) -> bool:
        """A new writer takes over ``local`` (it will never be sent): True if it was held."""
        with self._lock:
            found = self._held.pop(id(local), None)
        if found is None:
            return False
        found[1].cancel()
        return True

    def settle(self, slot: Slot | None = None) -> None:
        """Send the held copies (of ``slot``, or all) now: before a rename or delete of the slot, at unmount."""
        with self._lock:
            chosen = [item for item in self._held.values() if slot is None or item[0].slot == slot]
            for local, _ in chosen:
                self._held.pop(id(local), None)
        for local, timer in chosen:
            timer.cancel()
            self._finish(local)

    def _over(self, local: LocalFile) -> None:
        with self._lock:
            if self._held.pop(id(local), None) is None:
                return  # taken over or settled meanwhile
        self._finish(local)

    def _finish(self, local: LocalFile) -> None:
        try:
            self._send(local)
        except Exception as exc:  # nobody to tell but the log; the bytes are kept as unsent by the send
            log.warning("sending an empty truncation after its grace failed: %s", exc)
