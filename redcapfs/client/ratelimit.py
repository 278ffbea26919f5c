"""How many calls one client may make, and when it must make none at all.

REDCap counts every request from an IP address (API calls and web pages, from
everyone behind the same address) and bans the address outright once it sees
more than its page-hit limit in one minute (``page_hit_threshold_per_minute``,
600 by default). The ban lasts until an administrator lifts it, so the client
never tests the limit: it paces itself with :class:`RateLimiter`, and once the
server answers with its ban page, :class:`BanLatch` makes every later call
fail at once without touching the network (each call would only be another hit
from a banned address, and none can succeed).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from redcapfs import errors as E

log = logging.getLogger("redcapfs.client.http")

WINDOW = 60.0  # REDCap's limiter counts the hits of the last minute


def default_burst(rate: float) -> float:
    """The bucket's size when ``-o burst`` is not given: one second of calls (at least one call)."""
    return min(max(1.0, rate), max_burst(rate))


def max_burst(rate: float) -> float:
    """The largest burst allowed: half a minute's budget, so the steady rate stays at least half of ``rate``."""
    return rate * WINDOW / 2


class RateLimiter:
    """A token bucket shared by every thread of one client.

    ``burst`` calls may go at once; the bucket refills at ``rate - burst/60``
    calls a second, so that no 60 s window ever holds more than ``rate × 60``
    calls: a burst borrows from the rest of its minute, it does not add to it.
    Callers reserve a slot under the lock and sleep outside it, which keeps the
    order fair, the lock short, and lets calls that got their slots run at the
    same time (a long download holds no slot while it streams).
    """

    def __init__(
        self,
        rate: float,
        burst: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        capacity = default_burst(rate) if burst is None else burst
        if not 0 < capacity <= max_burst(rate):
            raise ValueError(f"burst must be in (0, {max_burst(rate):g}] for rate {rate:g}")
        self.rate = rate
        self.capacity = capacity
        self.refill = rate - capacity / WINDOW
        self._clock = clock
        self._sleep = sleep
        self._tokens = capacity
        self._stamp = clock()
        self._lock = threading.Lock()

    def acquire(self) -> float:
        """Take one request slot, sleeping as long as needed; return the time slept."""
        with self._lock:
            now = self._clock()
            self._tokens = min(self.capacity, self._tokens + (now - self._stamp) * self.refill)
            self._stamp = now
            self._tokens -= 1.0
            wait = -self._tokens / self.refill if self._tokens < 0 else 0.0
        if wait > 0:
            self._sleep(wait)
        return wait


@dataclass(frozen=True)
class Ban:
    """The first ban answer: what the server said, and when (wall clock)."""

    message: str
    since: float


class BanLatch:
    """Once REDCap has said this IP is banned, no more calls: each fails at once with the same error."""

    def __init__(self, wall: Callable[[], float] = time.time) -> None:
        self._wall = wall
        self._lock = threading.Lock()
        self.ban: Ban | None = None
        self.on_ban: Callable[[], None] | None = None  # e.g. rewrite the status file now

    def check(self, kwargs: dict[str, Any]) -> None:
        """Raise the ban (with this call's context) if one was seen; no call is made then."""
        ban = self.ban
        if ban is not None:
            raise E.StillBanned(ban.message, **kwargs)

    def note(self, exc: E.IpBanned) -> None:
        """The server answered with its ban page: remember it, and say so once in the log."""
        with self._lock:
            first = self.ban is None
            if first:
                self.ban = Ban(exc.message, self._wall())
        if first:
            log.error("%s", exc)
            if self.on_ban is not None:
                self.on_ban()
