"""Reading REDCap's log rows: what changed where, when, and which rows are our own uploads (pure).

A row is ``timestamp`` (``YYYY-MM-DD HH:MM``, server time, minute resolution),
``username``, ``action``, ``details``, ``record``. What matters for the mount:

* rows that change nothing (downloads, exports, page views) are skipped, our
  own downloads among them;
* a row with a record changed that record; its details name the fields
  (``field = 'DOCID', event = 'x', instance = N`` for a file upload, as the
  sandbox and REDCap write them), so a text-field edit touches no file;
* a row without a record whose action is ``Manage/Design`` is a design change;
* a ``Lock/Unlock Record`` row is no data change (:func:`locks` reads it for
  fs/rights.py; REDCap's wording: docs/sandbox.md, "Locking").

REDCap writes its server's local time (PHP's ``date()`` in the zone the
server is set to) and says nothing of that zone, in the rows and in the
``beginTime`` filter alike; the API exports no time zone either. So
:class:`ServerClock` keeps the server's offset from UTC, learned (not this
machine's zone, which may differ: a laptop abroad, a server set to UTC):

* a row that a poll sees and the poll before it (in this mount, at most six
  minutes before) did not was written between the two: its minute minus that
  moment, to the one multiple of 15 minutes that fits (every zone's offset is
  one; clocks may differ by two minutes), *confirms* the offset. Any change in
  the project while the mount is in use does it, ours or a colleague's, and a
  DST change is picked up the same way;
* until then the offset is a *guess*: this machine's own, raised to the lowest
  offset the log allows (no row can be newer than now, so a row that looks
  ahead of this machine's clock shows the server's zone is further east).

Unconfirmed, our own rows are matched by slot alone (time window
``MAX_OFFSET``); confirmed, within a minute. Times given to files are kept
monotonic by the slot model (never back in time), so a corrected guess never
moves a time backwards.
"""

from __future__ import annotations

import calendar
import hashlib
import math
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass

STAMP = "%Y-%m-%d %H:%M"
_SKIP = ("download", "export", "page view", "view ")
_FIELD = re.compile(r"([A-Za-z_][A-Za-z0-9_]*) = '")
_EVENT = re.compile(r"event = '([^']*)'")
_INSTANCE = re.compile(r"instance = (\d+)")
QUARTER = 900  # seconds: every time zone's offset from UTC is a multiple of 15 minutes
MAX_OFFSET = 14 * 3600  # the widest offsets in use: UTC-12 .. UTC+14


@dataclass(frozen=True)
class Change:
    """One log row that changed something."""

    stamp: str
    username: str
    record: str
    fields: frozenset[str]  # named in the details (may be empty when the details name none)
    event: str | None
    instance: int | None
    design: bool
    upload: bool  # a file upload or delete (details carry a file field, or the action says so)
    fingerprint: str


def fingerprint(row: dict) -> str:
    """One row's identity, for the rows of the cursor's minute that a poll reads twice."""
    raw = repr(tuple(str(row.get(k, "")) for k in ("timestamp", "username", "action", "details", "record")))
    return hashlib.sha256(raw.encode("utf-8", "surrogatepass")).hexdigest()[:24]


def parse(rows: Iterable[dict]) -> list[Change]:
    """The rows that changed something, oldest first."""
    changes = []
    for row in rows:
        action = str(row.get("action", "")).strip().lower()
        record = str(row.get("record", "") or "").strip()
        design = not record and ("manage/design" in action or "design" in action)
        if not design and (not record or any(word in action for word in _SKIP)):
            continue
        if is_lock(row):
            continue  # a lock changes no data: fs/rights.py reads these rows (``locks``)
        details = str(row.get("details", "") or "")
        fields = frozenset(f for f in _FIELD.findall(details) if f not in ("event", "instance"))
        event = _EVENT.search(details)
        instance = _INSTANCE.search(details)
        upload = "document" in action or "upload" in action or "file" in action
        changes.append(Change(str(row.get("timestamp", "")).strip()[:16], str(row.get("username", "")), record,
                              fields, event.group(1) if event else None,
                              int(instance.group(1)) if instance else None, design, upload, fingerprint(row)))
    changes.sort(key=lambda c: c.stamp)
    return changes


def stamp_ns(stamp: str) -> int | None:
    """The log's minute read in this machine's zone (nanoseconds), or None; the feed uses ``ServerClock``."""
    try:
        return int(time.mktime(time.strptime(stamp[:16], STAMP))) * 1_000_000_000
    except (ValueError, OverflowError):
        return None


def _naive(stamp: str) -> int | None:
    """The log's minute read as if it were UTC (seconds): server local time plus the server's offset."""
    try:
        return calendar.timegm(time.strptime(stamp[:16], STAMP))
    except (ValueError, OverflowError):
        return None


class ServerClock:
    """The REDCap server's offset from UTC, so the log's local times mean the right moments (module docstring).

    Not locked: the feed calls it under its poll lock or its own lock; an
    offset is one int store.
    """

    def __init__(self, offset: int | None = None, confirmed: bool = False) -> None:
        self.offset = time.localtime().tm_gmtoff if offset is None else offset
        self.confirmed = confirmed and offset is not None

    def stamp_ns(self, stamp: str) -> int | None:
        """The log's minute as nanoseconds since the epoch, or None when unreadable."""
        naive = _naive(stamp)
        return None if naive is None else (naive - self.offset) * 1_000_000_000

    def minute(self, when: float) -> str:
        """A moment (epoch seconds) in the log's form, in the server's zone (for ``beginTime``)."""
        return time.strftime(STAMP, time.gmtime(when + self.offset))

    def latest_minute(self, when: float) -> str:
        """``minute(when)`` at the widest offset still possible: a bound the log is surely past."""
        return self.minute(when) if self.confirmed else time.strftime(STAMP, time.gmtime(when + MAX_OFFSET))

    def near(self, stamp: str, when: float, until: float | None = None) -> bool:
        """Whether the row's ``stamp`` may be a call made from ``when`` to ``until`` (default: now).

        Unconfirmed, anywhere in the widest spread of zones. A long upload's
        row is written when it ends, so the window runs to now, not a minute.
        """
        naive = _naive(stamp)
        if naive is None:
            return False
        until = time.time() if until is None else until
        if not self.confirmed:
            return when - MAX_OFFSET - 180 <= naive <= until + MAX_OFFSET + 120
        moment = naive - self.offset
        return when - when % 60 - 120 <= moment <= until + 60

    def learn(self, stamp: str, after: float, before: float) -> bool:
        """A row written between ``after`` and ``before`` (epoch seconds) has ``stamp``: learn the offset.

        The offset is ``stamp - moment`` give or take the minute's truncation
        and the clocks' difference (2 minutes either way); when exactly one
        multiple of 15 minutes fits, it is the server's. True if it changed.
        """
        naive = _naive(stamp)
        if naive is None or before - after > 6 * 60:
            return False
        low, high = naive - before - 120, naive + 60 - after + 120
        fits = [q * QUARTER for q in range(math.ceil(low / QUARTER), math.floor(high / QUARTER) + 1)
                if abs(q * QUARTER) <= MAX_OFFSET]
        if len(fits) != 1:
            return False
        changed = (fits[0], True) != (self.offset, self.confirmed)
        self.offset, self.confirmed = fits[0], True
        return changed

    def bound(self, stamps: list[str], now: float) -> bool:
        """No row is newer than ``now``: raise a guessed offset the newest row shows too small. True if changed."""
        naives = [n for n in (_naive(s) for s in stamps) if n is not None]
        if self.confirmed or not naives:
            return False
        lowest = max(naives) - now  # offset >= this (give or take the clocks' difference)
        if lowest <= self.offset + 120:
            return False
        self.offset = min(MAX_OFFSET, math.ceil((lowest - 120) / QUARTER) * QUARTER)
        return True


# ------------------------------------------------------------------ lock rows
_LOCK_VERB = re.compile(r"^\s*(?:action:\s*)?(un)?lock\s+(entire\s+)?record\b", re.IGNORECASE)
_LOCK_PART = re.compile(r"\b(Record|Form|Event|Instance):\s*(.*?)\s*(?=\b(?:Record|Form|Event|Instance):|$)",
                        re.DOTALL)


@dataclass(frozen=True)
class LockChange:
    """One ``Lock/Unlock Record`` row: what was locked or unlocked (names as the log writes them)."""

    stamp: str
    record: str
    locked: bool  # True: locked; False: unlocked
    entire: bool  # the whole record (else one instrument)
    form: str | None  # the instrument's label (or name) as the details give it
    event: str | None  # the event's label (or unique name), if given
    instance: int | None


def is_lock(row: dict) -> bool:
    """A row of REDCap's record locking (the web page's lock box or "Lock entire record")."""
    action = str(row.get("action", "") or "").lower()
    return "lock/unlock" in action or bool(_LOCK_VERB.match(str(row.get("details", "") or "")))


def locks(rows: Iterable[dict]) -> list[LockChange]:
    """The lock and unlock rows, oldest first (REDCap exports its log newest first)."""
    found = []
    for row in reversed(list(rows)):
        details = str(row.get("details", "") or "")
        verb = _LOCK_VERB.match(details)
        if not is_lock(row) or verb is None:
            continue
        parts = {k.lower(): v for k, v in _LOCK_PART.findall(details[verb.end():])}
        record = str(row.get("record", "") or "").strip() or parts.get("record", "")
        if not record:
            continue
        instance = parts.get("instance", "")
        found.append(LockChange(str(row.get("timestamp", "")).strip()[:16], record, verb.group(1) is None,
                                bool(verb.group(2)) or "form" not in parts, parts.get("form") or None,
                                parts.get("event") or None, int(instance) if instance.isdigit() else None))
    found.sort(key=lambda c: c.stamp)  # stable: rows of one minute keep the log's order
    return found
