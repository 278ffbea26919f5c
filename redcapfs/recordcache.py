"""The records index, fetched with one records export and kept for a short TTL.

Listing any directory needs to know which records, instances and files exist.
REDCap answers that in one call (a records export of the record-ID and file
fields), so the whole tree costs one call per TTL however big the project is.
Rules:

* One refresh at a time. Once an index exists, every caller keeps reading it
  while a refresh past its TTL runs in a background thread: an ``ls`` never
  waits for the export. Only the very first load blocks (there is nothing to
  show yet), and decisions that could replace someone else's file (the
  slot-empty check of a create or rename, see ``fs/writing.py``) wait for the
  refresh with :meth:`RecordCache.fresh`.
* A failed refresh keeps serving the last good index for a while and logs a
  warning: a slow or flaky server must not make the mount unusable. With no
  index at all the error reaches the caller.
* Our own changes (uploads, deletes, new records, local instances) are applied
  at once and re-applied over a refresh that started before they happened, so
  the tree never flips back to a state the server has already left.
* Big projects: by default one export; if the server times out or fails, the
  export is retried record-batched. ``batch`` forces batching.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from redcapfs.client.base import RedcapClient
from redcapfs.errors import RequestTimeout, ServerError, TransportError
from redcapfs.recordindex import RecordIndex
from redcapfs.shape import ProjectShape, Slot

log = logging.getLogger(__name__)

FALLBACK_BATCH = 2000
STALE_RETRY_SECONDS = 5.0


class RecordCache:
    """Thread-safe access to the current :class:`RecordIndex`.

    Locks: ``_lock`` (a plain lock, never re-entered) guards the index, the
    change log and the local instances, and is held only for in-memory work:
    code inside ``with view()`` must not call out or take another lock.
    ``_refresh_lock`` makes refreshes one at a time and is held across the
    export, by the background refresher or the very first load only.
    """

    def __init__(self, client: RedcapClient, shape: ProjectShape, ttl: float, batch: int = 0,
                 on_refresh: Callable[[], None] | None = None, wait_limit: float | None = None) -> None:
        self.client = client
        self.shape = shape
        self.ttl = ttl
        self.batch = batch
        self.refreshes = 0
        self.on_refresh = on_refresh  # told after each successful refresh (outside every lock)
        self.wait_limit = wait_limit  # longest wait for a refresh in flight (a batch fallback can take long)
        # told (rows, fresh index, old index) under _lock before fresh is published; must call nothing
        self.on_export: Callable[[list[dict], RecordIndex, RecordIndex | None], None] | None = None
        self._lock = threading.Lock()
        self._refresh_lock = threading.Lock()
        self._index: RecordIndex | None = None
        self._fresh_until = 0.0
        self._wait_next = False  # set by invalidate(): the next access waits for the refresh
        self._running: threading.Event | None = None  # set when the background refresh in flight ends
        self._changes: list[tuple[float, Callable[[RecordIndex], None]]] = []
        self._local_instances: set[tuple[str, str | None, str, int]] = set()
        self.partial_refreshes = 0
        self._walk: list[str] = []
        self._walk_key: tuple = ()

    # ------------------------------------------------------------ reading
    def view(self) -> _View:
        """The current index, locked for reading; past its TTL a background refresh starts.

        The caller never waits for the server once an index exists; only the
        very first load blocks. A plain context manager, not a generator one:
        every path looked up passes here, several times a directory in a ``find``.
        """
        self._ensure(wait=False)
        return _View(self)

    @contextmanager
    def fresh(self) -> Iterator[RecordIndex]:
        """Like :meth:`view`, but past the TTL wait for the refresh (in flight or started now).

        For decisions that must not rest on an old index (is this slot empty?).
        A failed refresh still ends the wait: the last good index is served, as
        everywhere else.
        """
        self._ensure(wait=True)
        with self._lock:
            assert self._index is not None
            yield self._index

    @contextmanager
    def current(self) -> Iterator[RecordIndex]:
        """The index as it is, never refreshed: for a re-check under another lock (no I/O there).

        Only for code that already used :meth:`view` (so an index exists).
        """
        with self._lock:
            assert self._index is not None
            yield self._index

    def expire(self) -> None:
        """Treat the index as past its TTL: the next access starts a background refresh."""
        self._fresh_until = 0.0

    def invalidate(self) -> None:
        """Make the next access refetch, and wait for it (our change cannot be applied in memory)."""
        self._wait_next = True
        self._fresh_until = 0.0

    # ------------------------------------------------------------ our changes
    def note_file(self, slot: Slot, name: str | None) -> None:
        """Our upload (``name``) or delete (None) succeeded."""
        self._change(lambda idx: idx.with_file(slot, name))
        if name is not None and slot.instance is not None:
            self._local_instances.discard((slot.record, slot.event, slot.field, slot.instance))

    def note_record(self, record: str, event: str | None) -> None:
        """We created ``record`` (in ``event``'s arm)."""
        self._change(lambda idx: idx.add_record(record, event))

    def add_local_instance(self, record: str, event: str | None, field: str, instance: int) -> None:
        """An instance directory made by ``mkdir``: local until its first upload."""
        with self._lock:  # re-applied over every refresh from this set, not from the change log
            self._local_instances.add((record, event, field, instance))
            if self._index is not None:
                self._index.add_instance(record, event, field, instance)

    def is_local_instance(self, record: str, event: str | None, field: str, instance: int) -> bool:
        return (record, event, field, instance) in self._local_instances

    def remove_local_instance(self, record: str, event: str | None, field: str, instance: int) -> None:
        """rmdir of a local instance: forget it and rebuild from the server next time."""
        with self._lock:
            self._local_instances.discard((record, event, field, instance))
        self.invalidate()

    def _change(self, apply: Callable[[RecordIndex], None]) -> None:
        with self._lock:
            self._changes.append((time.monotonic(), apply))
            if self._index is not None:
                apply(self._index)

    # ------------------------------------------------------------ refreshing
    def _ensure(self, wait: bool) -> None:
        """Load the first index here; later, refresh in the background (and wait if asked)."""
        if time.monotonic() < self._fresh_until:
            return
        if self._index is None:
            with self._refresh_lock:  # nothing to show yet: load in this thread, one at a time
                self._refresh_locked()
            return
        done = self._start_background()
        if (wait or self._wait_next) and not done.wait(self.wait_limit):
            raise RequestTimeout(f"the records list did not arrive within {self.wait_limit:g} s (-o timeout); "
                                 "try again")

    def _start_background(self) -> threading.Event:
        """The refresh in flight, or a new one in its own thread."""
        with self._lock:
            if self._running is None or self._running.is_set():
                self._running = threading.Event()
                threading.Thread(target=self._background, args=(self._running,), daemon=True,
                                 name="records-refresh").start()
            return self._running

    def _background(self, done: threading.Event) -> None:
        try:
            with self._refresh_lock:
                self._refresh_locked()
        except Exception as exc:  # _refresh_locked keeps the old index; never let the thread die loudly
            log.warning("records refresh failed: %s", exc)
        finally:
            done.set()

    def _refresh_locked(self) -> None:
        if time.monotonic() < self._fresh_until:
            return  # another thread refreshed while we waited
        started = time.monotonic()
        try:
            rows = self._export()
        except Exception as exc:
            if self._index is None:
                raise
            log.warning("records export failed (%s); showing the tree as of the last export", exc)
            self._fresh_until = time.monotonic() + STALE_RETRY_SECONDS
            return
        fresh = RecordIndex(self.shape, rows)
        with self._lock:
            self._changes = [(t, fn) for t, fn in self._changes if t >= started - 1.0]
            for _, apply in self._changes:
                try:
                    apply(fresh)
                except Exception as exc:  # a change the server no longer allows (record deleted)
                    log.debug("dropping a local change over a refresh: %s", exc)
            for record, event, field, instance in self._local_instances:
                try:
                    fresh.add_instance(record, event, field, instance)
                except Exception as exc:
                    log.debug("dropping local instance %s: %s", instance, exc)
            if self.on_export is not None:
                self.on_export(rows, fresh, self._index)
            self._index = fresh
            self._fresh_until = time.monotonic() + self.ttl
            self._wait_next = False
            self.refreshes += 1
        if self.on_refresh is not None:
            self.on_refresh()

    def files_of(self, records: list[str]) -> dict[Slot, str]:
        """Every filled slot of ``records`` with its stored name, from the current index (no I/O)."""
        found: dict[Slot, str] = {}
        with self.current() as index:
            for record in records:
                found.update(index.files_in(record))
        return found

    def walk_order(self) -> list[str]:
        """Record names in the order ``ls -R`` and rsync visit them (byte order), kept until the index changes."""
        with self._lock:
            index = self._index
            key = (id(index), self.refreshes, self.partial_refreshes, len(index.records()) if index else 0)
            if self._walk_key != key:
                self._walk = sorted(index.records()) if index is not None else []
                self._walk_key = key
            return self._walk

    def replace_records(self, records: list[str], rows: list[dict], started: float) -> None:
        """The change feed re-read ``records`` (one filtered export): put them in the index as the server has them.

        A record missing from ``rows`` was deleted. Our own changes made since
        the export ``started`` (monotonic) are re-applied over the new rows, as
        after a full refresh; older ones are in those rows already.
        """
        partial = RecordIndex(self.shape, rows)
        with self._lock:
            if self._index is None:
                return
            for record in records:
                if partial.has_record(record):
                    self._index._records[record] = partial._records[record]
                else:
                    self._index._records.pop(record, None)
            self._changes = [(t, fn) for t, fn in self._changes if t >= started - 1.0]
            for _, apply in self._changes:
                try:
                    apply(self._index)
                except Exception as exc:
                    log.debug("dropping a local change over a partial refresh: %s", exc)
            for record, event, field, instance in self._local_instances:
                if record in records:
                    try:
                        self._index.add_instance(record, event, field, instance)
                    except Exception as exc:
                        log.debug("dropping local instance %s: %s", instance, exc)
            self.partial_refreshes += 1

    def keep_fresh(self) -> None:
        """With the change feed, the index is as fresh as the last poll: no TTL refreshes."""
        self.ttl = float("inf")
        if self._index is not None:  # else the first load sets it (now + an infinite TTL)
            self._fresh_until = float("inf")

    def _export(self) -> list[dict]:
        fields = self.shape.export_fields()
        if self.batch > 0:
            return self.client.export_records(fields=fields, batch_size=self.batch)
        try:
            return self.client.export_records(fields=fields)
        except (RequestTimeout, ServerError, TransportError) as exc:
            log.warning("records export failed (%s); retrying in batches of %d records", exc, FALLBACK_BATCH)
            return self.client.export_records(fields=fields, batch_size=FALLBACK_BATCH)


class _View:
    """``with records.view() as index``: the cache's lock held around the current index."""

    __slots__ = ("_cache",)

    def __init__(self, cache: RecordCache) -> None:
        self._cache = cache

    def __enter__(self) -> RecordIndex:
        cache = self._cache
        cache._lock.acquire()
        if cache._index is None:
            cache._lock.release()
            raise AssertionError("the records index is not loaded")
        return cache._index

    def __exit__(self, *exc: object) -> None:
        self._cache._lock.release()
