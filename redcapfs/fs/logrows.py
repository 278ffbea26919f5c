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

Times are read as this machine's local time: REDCap writes its server's local
time and says nothing of its zone, so when the two zones differ every time
from the log is shifted by the difference (still stable and monotonic).
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass

STAMP = "%Y-%m-%d %H:%M"
_SKIP = ("download", "export", "page view", "view ")
_FIELD = re.compile(r"([A-Za-z_][A-Za-z0-9_]*) = '")
_EVENT = re.compile(r"event = '([^']*)'")
_INSTANCE = re.compile(r"instance = (\d+)")


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
    """The log's minute as nanoseconds since the epoch (local time), or None when unreadable."""
    try:
        return int(time.mktime(time.strptime(stamp[:16], STAMP))) * 1_000_000_000
    except (ValueError, OverflowError):
        return None


def minute(when: float) -> str:
    """A wall-clock time in the log's form."""
    return time.strftime(STAMP, time.localtime(when))


def near(stamp: str, when: float, slack_minutes: int = 1) -> bool:
    """Whether the log's ``stamp`` is within ``slack_minutes`` of the wall-clock time ``when``."""
    ns = stamp_ns(stamp)
    if ns is None:
        return False
    return abs(ns / 1e9 - (when - when % 60)) <= 60 * slack_minutes


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
