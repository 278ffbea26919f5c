"""``ClientStats``: what one HTTP client has done and is doing, for ``redcapfs status``.

Every REDCap call and every streamed file goes through ``HttpClient``, so it is
the one place that can count calls (the same count the server sees: each HTTP
attempt, retries included), measure the rate in use against the self-imposed
limit (REDCap bans an IP that goes over its page-hit limit), and say which
transfers are in flight with how many bytes so far (a ``cp`` that seems stuck
at close is an upload still going).

Thread-safe: FUSE threads update it while the status writer takes snapshots.
Updates are a dict or integer change under one short lock; nothing here does
I/O. A snapshot is plain JSON-ready data.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .ratelimit import BanLatch

RATE_WINDOW = 10.0  # seconds over which the rate in use is measured


@dataclass
class Transfer:
    """One file download or upload in flight.

    ``done`` and ``total`` are file bytes; ``total`` is ``None`` until known
    (a download's size arrives with its headers).
    """

    id: int
    kind: str  # "download" or "upload"
    record: str | None
    event: str | None
    field: str | None
    instance: int | None
    name: str | None
    total: int | None
    started: float  # wall clock, for "running since"
    done: int = 0
    attempts: int = 0

    def advance(self, done: int) -> None:
        """Set the bytes done so far (a retried download starts again from 0)."""
        self.done = done

    def begin_attempt(self, total: int | None = None) -> None:
        """A new HTTP attempt: bytes restart at 0 (and the size may become known)."""
        self.attempts += 1
        self.done = 0
        if total is not None:
            self.total = total

    def snapshot(self, now: float) -> dict[str, Any]:
        return {"kind": self.kind, "record": self.record, "event": self.event, "field": self.field,
                "instance": self.instance, "name": self.name, "bytes_done": self.done,
                "bytes_total": self.total, "attempts": self.attempts,
                "seconds": round(max(0.0, now - self.started), 3)}


class ClientStats:
    """Counters of one client: calls by kind, recent call times, throttling, transfers in flight.

    ``rate_limit`` is the configured requests per second (``None``: no limit),
    ``burst`` the limiter's bucket size; ``ban`` is the client's ban latch, so
    that a status shows a ban REDCap announced (client/ratelimit.py).
    ``on_change`` is called (outside the lock) when a transfer starts or ends,
    so a status file can be refreshed at once rather than at its next tick.
    """

    def __init__(
        self,
        rate_limit: float | None = None,
        window: float = RATE_WINDOW,
        *,
        burst: float | None = None,
        ban: BanLatch | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.rate_limit = rate_limit
        self.burst = burst
        self.ban = ban
        if ban is not None:
            ban.on_ban = self._changed
        self.window = window
        self.on_change: Callable[[], None] | None = None
        self._clock = clock
        self._wall = wall
        self._lock = threading.Lock()
        self._by_kind: Counter[str] = Counter()
        self._failed = 0
        self._recent: deque[float] = deque()
        self._throttled = 0.0
        self._notes: dict[str, Any] = {}  # facts of the mount's own (note()), shown with the counters
        self._transfers: dict[int, Transfer] = {}
        self._ids = itertools.count(1)
        self._done = Counter[str]()  # finished transfers by kind
        self._bytes = Counter[str]()  # file bytes moved by finished transfers, by kind

    # ------------------------------------------------------------ updates

    def call(self, content: str, action: str | None = None) -> None:
        """One HTTP request is about to go out."""
        kind = content + (f"/{action}" if action else "")
        now = self._clock()
        with self._lock:
            self._by_kind[kind] += 1
            self._recent.append(now)
            self._prune(now)

    def failed(self) -> None:
        """The last request got no 200 answer (HTTP error, timeout, broken connection)."""
        with self._lock:
            self._failed += 1

    def throttled(self, seconds: float) -> None:
        """Time a request waited for the rate limiter."""
        if seconds > 0:
            with self._lock:
                self._throttled += seconds

    def start_transfer(
        self,
        kind: str,
        *,
        record: str | None = None,
        event: str | None = None,
        field: str | None = None,
        instance: int | None = None,
        name: str | None = None,
        total: int | None = None,
    ) -> Transfer:
        """Register a transfer; the caller must :meth:`end_transfer` it (try/finally)."""
        with self._lock:
            transfer = Transfer(next(self._ids), kind, record, event, field, instance, name, total, self._wall())
            self._transfers[transfer.id] = transfer
        self._changed()
        return transfer

    def end_transfer(self, transfer: Transfer, ok: bool) -> None:
        """The transfer finished (``ok``) or gave up."""
        with self._lock:
            self._transfers.pop(transfer.id, None)
            if ok:
                self._done[transfer.kind] += 1
                self._bytes[transfer.kind] += transfer.done
        self._changed()

    # ------------------------------------------------------------ reading

    def snapshot(self) -> dict[str, Any]:
        """``calls``, ``rate``, ``in_flight`` and ``transfers`` as JSON-ready values."""
        now, wall = self._clock(), self._wall()
        with self._lock:
            self._prune(now)
            recent = len(self._recent)
            by_kind = dict(sorted(self._by_kind.items()))
            failed, throttled = self._failed, self._throttled
            flying = [t.snapshot(wall) for t in self._transfers.values()]
            finished = {kind: {"count": self._done[kind], "bytes": self._bytes[kind]}
                        for kind in ("download", "upload")}
            notes = dict(self._notes)
        return {
            **notes,
            "calls": {"total": sum(by_kind.values()), "failed": failed, "by_kind": by_kind},
            "rate": {"limit": self.rate_limit, "burst": self.burst, "per_second": round(recent / self.window, 3),
                     "window_seconds": self.window, "throttled_seconds": round(throttled, 3)},
            "banned": self._banned(),
            "in_flight": flying,
            "transfers": finished,
        }

    def note(self, key: str, value: Any) -> None:
        """A fact of the mount's own for ``redcapfs status --json`` (``stream_upload``: fs/streaming.py)."""
        with self._lock:
            self._notes[key] = value
        self._changed()

    def _banned(self) -> dict[str, Any] | None:
        """REDCap's ban of this IP, once seen: its text and since when (epoch seconds); else None."""
        ban = self.ban.ban if self.ban is not None else None
        return None if ban is None else {"message": ban.message, "since": round(ban.since, 3)}

    def _prune(self, now: float) -> None:
        """Forget call times older than the window (caller holds the lock)."""
        while self._recent and self._recent[0] <= now - self.window:
            self._recent.popleft()

    def _changed(self) -> None:
        callback = self.on_change
        if callback is not None:
            try:
                callback()
            except Exception:  # a status refresh must never break a transfer
                pass
