"""REDCap's log as the mount's change feed: one logging export per poll tells which records changed.

At mount and every ``poll`` seconds while the mount is in use (``poll_idle``
once nothing has touched it for ``IDLE_AFTER`` seconds), one ``content=log``
export from the cursor says which records changed. Only those records are
re-read, all in one filtered records export, and only their changed files lose
their size, manifest entry, cached body and time (``SlotModel.changed_elsewhere``).
With the feed, the records index is never refreshed by TTL.

The cursor is the newest log minute seen, with the fingerprints of that
minute's rows (the next poll asks from that minute again, inclusive, so a row
written later in the same minute is not missed and one already seen is not
applied twice). The first mount of a project starts the cursor now; a remount
reads from its stored cursor, so the manifest's sizes stay trusted. When the
log cannot be read (no Logging right: 403) the mount falls back to TTL
refreshes and the manifest's sizes are not used (``mode`` says "ttl").

Our own uploads and deletes are never taken for a colleague's: each is noted
with its slot and time, and the first log row of that record, field, event
and instance from a minute before the call on is ours (and teaches our user
name; rows of another user are never ours). Same user in the web page on the
same slot before the poll that reads our row stays ambiguous (docs/SEMANTICS.md).
The log's times are in the server's zone: ``clock`` (logrows.ServerClock)
learns its offset from rows that appear between two polls and keeps it in the
manifest.

Lock: ``_lock`` guards the pending uploads, the user name and the activity
time; a leaf. ``_poll_lock`` makes polls one at a time and is held across the
two exports (the poller thread, the mount's first poll, and the polls made
before a change, fs/recentpoll.py).
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from dataclasses import dataclass

from redcapfs import errors as E
from redcapfs.client.base import RedcapClient
from redcapfs.fs import logrows
from redcapfs.fs.prefetch import remember_fileinfo
from redcapfs.fs.slots import SlotModel
from redcapfs.manifest import Manifest
from redcapfs.recordcache import RecordCache
from redcapfs.shape import ProjectShape, Slot

log = logging.getLogger(__name__)

IDLE_AFTER = 300.0  # seconds without any use before polls slow to poll_idle
FIRST_LOOKBACK = 2 * 86400.0  # the first cursor's probe: two days cover any two zones (UTC-12 .. UTC+14)
FRESH_SLACK = 5.0  # seconds beyond one poll interval that a poll still vouches for the index
OUR_WINDOW = 180.0  # a noted upload of ours is forgotten once the log was read this far past it


@dataclass
class _Ours:
    key: str  # hashed (record, field, event, instance): kept in the manifest, so no names on disk
    when: float
    done: bool = False


def _slot_key(record: str, field: str, event: str | None, instance: int) -> str:
    raw = repr((record, field, event, instance))
    return hashlib.sha256(raw.encode("utf-8", "surrogatepass")).hexdigest()[:32]


class ChangeFeed:
    """The poller. ``start()`` at mount decides the mode; ``touch()`` on every use keeps polls at ``poll``."""

    def __init__(self, client: RedcapClient, shape: ProjectShape, records: RecordCache, slots: SlotModel,
                 manifest: Manifest, poll: float, poll_idle: float) -> None:
        self.client = client
        self.shape = shape
        self.records = records
        self.slots = slots
        self.manifest = manifest
        self.poll = poll
        self.poll_idle = max(poll_idle, poll)
        self.mode = "ttl"
        self.polls = 0
        self.on_design_change: list = []  # callables, told (outside every lock) when the design changed
        self.on_rows: list = []  # callables given each poll's new rows, oldest last (fs/rights.py: lock rows)
        self._lock = threading.Lock()
        self._poll_lock = threading.Lock()
        # Our uploads and deletes not yet seen in the log, also those of the last mount of this project
        # (its unmount may come before the poll that would have seen them).
        self._ours: list[_Ours] = [_Ours(k, w) for k, w in json.loads(manifest.meta("ours") or "[]")]
        self._user: str | None = manifest.meta("user")
        # This mount's own cursor (another mount of the project may share the manifest): loaded at start,
        # stored after every poll for the next mount.
        self._cursor: str | None = manifest.meta("cursor")
        self._seen: set[str] = set(json.loads(manifest.meta("cursor_seen") or "[]"))
        stored = json.loads(manifest.meta("server_clock") or "null")  # [offset seconds, confirmed]
        self.clock = logrows.ServerClock(*stored) if stored else logrows.ServerClock()
        self._used = time.monotonic()
        self._asked: float | None = None  # when this mount's previous log export was sent (wall clock)
        self._covered: float | None = None  # monotonic start of the last poll that was applied in full
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------ lifecycle
    def start(self) -> str:
        """At mount, before the records index is read: the first cursor, or the gap since the stored one.

        A first mount reads the log before the index, so every row up to then
        is in the index and a later one is after the cursor. A remount reads
        the index first (its own call), then the log since its cursor. Returns
        the one line to say at mount, or "".
        """
        if self._cursor is not None:
            with self.records.view():  # errors here are the records export's, reported as such
                pass
        try:
            with self._poll_lock:
                if self._cursor is None:
                    self._first_cursor()
                else:
                    self._poll_locked()
        except E.NoRights as exc:
            return self._fallback(f"the token has no Logging right ({exc.message})")
        except E.RedcapError as exc:
            return self._fallback(f"the log could not be read ({exc})")
        self.mode = "log"
        self.records.keep_fresh()
        self._thread = threading.Thread(target=self._run, name="change-feed", daemon=True)
        self._thread.start()
        return ""

    def _fallback(self, why: str) -> str:
        self.mode = "ttl"
        self.manifest.trusted_since = None
        log.warning("change feed off: %s; changes made elsewhere show after records_ttl/content_ttl", why)
        return (f"note: {why}; changes made elsewhere show after records_ttl/content_ttl, "
                "and file sizes are asked again")

    def fresh(self) -> bool:
        """Whether the index is vouched for now: the feed is on and its last full poll began recently.

        Every change made before that poll began is in the index, so what a
        slot holds can be read there instead of asked (Uploader: no probe
        before an upload or delete). The window is what changed since.
        """
        covered = self._covered
        return (self.mode == "log" and covered is not None
                and time.monotonic() - covered <= self.poll + FRESH_SLACK)

    def began_within(self, within: float) -> bool:
        """Whether the last poll applied in full began at most ``within`` seconds ago (fs/recentpoll.py)."""
        covered = self._covered
        return covered is not None and time.monotonic() - covered <= within

    def poll_unless_within(self, within: float) -> None:
        """Poll now unless a poll began at most ``within`` seconds ago (also one that ran while this waited)."""
        with self._poll_lock:
            if not self.began_within(within):
                self._poll_locked()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        self._remember()

    def _remember(self) -> None:
        """Keep what the client learnt of the file-info call (at every poll and at unmount)."""
        try:
            remember_fileinfo(self.client, self.records, self.slots, self.manifest)
        except Exception as exc:  # a closed manifest at a racing unmount: the next mount learns again
            log.debug("could not keep what the file-info call does: %s", exc)

    def touch(self) -> None:
        """The mount was used: polls stay at ``poll`` (a float store, no lock)."""
        self._used = time.monotonic()

    def _run(self) -> None:
        """Tick every ``poll`` seconds; an idle mount polls only every ``poll_idle``, a used one at once."""
        last = time.monotonic()
        while not self._stop.wait(self.poll):
            now = time.monotonic()
            idle = now - self._used > IDLE_AFTER
            if idle and now - last < self.poll_idle:
                continue
            last = now
            try:
                self.poll_now()
            except E.StillBanned as exc:  # logged once when REDCap announced it
                log.debug("change feed poll: %s", exc)
            except Exception as exc:  # the cursor stays: the next poll covers the gap
                log.warning("change feed poll failed: %s", exc)
            self._remember()

    # ------------------------------------------------------------ our own writes
    def note_ours(self, slot: Slot) -> None:
        """Our upload or delete in ``slot`` succeeded: its log row is not a colleague's."""
        with self._lock:
            now = time.time()
            self._ours.append(_Ours(_slot_key(slot.record, slot.field, slot.event, slot.instance or 1), now))
        self._keep_ours()

    def _keep_ours(self) -> None:
        with self._lock:
            self._ours = [o for o in self._ours if not o.done and not self._read_past(o)]
            pending = [[o.key, o.when] for o in self._ours]
        self.manifest.set_meta("ours", json.dumps(pending))

    def _read_past(self, ours: _Ours) -> bool:
        """Whether the polls have read the log well past ``ours`` (its row, if any, was seen)."""
        cursor = self._cursor
        return cursor is not None and cursor > self.clock.latest_minute(ours.when + OUR_WINDOW)

    def _is_ours(self, change: logrows.Change, field: str) -> bool:
        key = _slot_key(change.record, field, change.event, change.instance or 1)
        with self._lock:
            if self._user is not None and change.username != self._user:
                return False
            for ours in self._ours:
                if not ours.done and ours.key == key and self.clock.near(change.stamp, ours.when):
                    ours.done = True
                    learned = self._user is None
                    self._user = change.username
                    break
            else:
                return False
        if learned:
            self.manifest.set_meta("user", change.username)
        self._keep_ours()
        return True

    # ------------------------------------------------------------ polling
    def poll_now(self) -> int:
        """One poll; the number of records re-read."""
        with self._poll_lock:
            return self._poll_locked()

    def _first_cursor(self) -> None:
        """No cursor yet: start it at the log's newest row (the index, read after this, has all of them)."""
        began, started = time.time(), time.monotonic()
        rows = self.client.export_log(self.clock.minute(began - FIRST_LOOKBACK))
        stamps = [str(r.get("timestamp", ""))[:16] for r in rows if r.get("timestamp")]
        if self.clock.bound(stamps, time.time()):
            self._store_clock("the newest log row")
        self._asked = began
        cursor = max(stamps) if stamps else self.clock.minute(began - FIRST_LOOKBACK)
        self._tell_rows(rows)  # locks of the last day are known from the start
        self._store_cursor(cursor, [logrows.fingerprint(r) for r in rows
                                    if str(r.get("timestamp", ""))[:16] == cursor])
        self.manifest.set_meta("trusted_since", repr(began))
        self.manifest.trusted_since = began
        self.polls += 1
        self._covered = started

    def _poll_locked(self) -> int:
        cursor = self._cursor or self.clock.minute(time.time())
        seen = self._seen
        asked, started = time.time(), time.monotonic()
        rows = self.client.export_log(cursor)
        self.polls += 1
        fresh = [r for r in rows if logrows.fingerprint(r) not in seen]
        self._tell_rows(fresh)
        self._learn_clock(rows, fresh, asked)
        changes = logrows.parse(fresh)
        redone = self._apply(changes) if changes else 0
        self._advance(cursor, seen, rows)
        self._covered = started
        if self.manifest.trusted_since is None:
            since = self.manifest.meta("trusted_since")
            self.manifest.trusted_since = float(since) if since else time.time()
            if not since:
                self.manifest.set_meta("trusted_since", repr(self.manifest.trusted_since))
        return redone

    def _tell_rows(self, rows: list[dict]) -> None:
        for listener in self.on_rows:
            try:
                listener(rows)
            except Exception as exc:  # a reader of rows never stops the feed
                log.warning("reading log rows: %s", exc)

    def _advance(self, cursor: str, seen: set[str], rows: list[dict]) -> None:
        stamps = [str(r.get("timestamp", ""))[:16] for r in rows if r.get("timestamp")]
        newest = max([cursor, *stamps])
        prints = [logrows.fingerprint(r) for r in rows if str(r.get("timestamp", ""))[:16] == newest]
        if newest == cursor:
            prints = sorted(seen | set(prints))
        self._store_cursor(newest, prints)

    def _learn_clock(self, rows: list[dict], fresh: list[dict], asked: float) -> None:
        """The server's zone from this poll: a row new since the previous export was written since it."""
        previous, self._asked = self._asked, asked
        now = time.time()
        if previous is not None:
            for row in reversed(fresh):
                if self.clock.learn(str(row.get("timestamp", ""))[:16], previous, now):
                    self._store_clock("a row new since the previous poll")
                    return
        if self.clock.bound([str(r.get("timestamp", ""))[:16] for r in rows], now):
            self._store_clock("the newest log row")

    def _store_clock(self, source: str) -> None:
        """Keep the server's offset for the next mount (a remount's first rows need it before any write)."""
        clock = self.clock
        sign, left = ("-", -clock.offset) if clock.offset < 0 else ("+", clock.offset)
        log.info("REDCap's log times: server at UTC%s%02d:%02d (%s, from %s)", sign, left // 3600,
                 left % 3600 // 60, "confirmed" if clock.confirmed else "a guess", source)
        self.manifest.set_meta("server_clock", json.dumps([clock.offset, clock.confirmed]))

    def _store_cursor(self, cursor: str, prints: list[str]) -> None:
        self._cursor, self._seen = cursor, set(prints)
        self.manifest.set_meta("cursor", cursor)
        self.manifest.set_meta("cursor_seen", json.dumps(sorted(set(prints))))

    def _apply(self, changes: list[logrows.Change]) -> int:
        """Re-read the changed records (one export) and tell the slot model which files changed."""
        if any(c.design for c in changes):
            log.info("the project's design changed (log); reloading it")
            for listener in self.on_design_change:
                listener()
        verdicts: dict[tuple[str, str], bool] = {}  # _is_ours marks a noted upload as seen: ask it once a row
        touched: dict[str, list[logrows.Change]] = {}
        for change in changes:
            if change.record and not self._wholly_ours(change, verdicts):
                touched[change.record] = []
        for change in changes:
            if change.record in touched:
                touched[change.record].append(change)
        if not touched:
            return 0  # only our own uploads and deletes: the slot model has them, nothing to re-read
        records = sorted(touched)
        before = self.records.files_of(records)
        started = time.monotonic()
        rows = self.client.export_records(records=records, fields=self.shape.export_fields())
        self.records.replace_records(records, rows, started)
        after = self.records.files_of(records)
        for slot in set(before) | set(after):
            self._slot_changed(slot, before.get(slot), after.get(slot), touched[slot.record], verdicts)
        log.debug("change feed: %d record(s) re-read", len(records))
        return len(records)

    def _wholly_ours(self, change: logrows.Change, verdicts: dict[tuple[str, str], bool]) -> bool:
        """A row of ours naming only file fields: the records export it would cost says nothing new.

        REDCap logs an Import File as "Update record (API) R" with the field in
        its details, so the action does not tell an upload; the fields do.
        """
        if not change.fields or not all(self.shape.has_field(f) for f in change.fields):
            return False
        return all(self._ours_once(change, f, verdicts) for f in change.fields)

    def _ours_once(self, change: logrows.Change, field: str, verdicts: dict[tuple[str, str], bool]) -> bool:
        key = (change.fingerprint, field)
        if key not in verdicts:
            verdicts[key] = self._is_ours(change, field)
        return verdicts[key]

    def _slot_changed(self, slot: Slot, old: str | None, new: str | None, changes: list[logrows.Change],
                      verdicts: dict[tuple[str, str], bool]) -> None:
        mine = [c for c in changes if self._names_slot(c, slot)]
        theirs = [c for c in mine if not self._ours_once(c, slot.field, verdicts)]
        if mine and not theirs:
            return  # only our own upload or delete: the slot model has it already
        if not theirs and old == new:
            return  # a change elsewhere in the record (a text field): the file stayed
        when = max((c.stamp for c in theirs), default="")
        self.slots.changed_elsewhere(slot, old, new, self.clock.stamp_ns(when) if when else None)

    def _names_slot(self, change: logrows.Change, slot: Slot) -> bool:
        """Whether the row may be about this slot's file (unnamed details: any file of the record)."""
        if change.fields:
            if slot.field not in change.fields:
                return False
        elif not change.upload:
            return False
        if change.event is not None and slot.event is not None and change.event != slot.event:
            return False
        return change.instance is None or change.instance == (slot.instance or 1)
