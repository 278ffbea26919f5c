"""The records index, fetched with one records export and kept for a short TTL.

Listing any directory needs to know which records, instances and files exist.
REDCap answers that in one call (a records export of the record-ID and file
fields), so the whole tree costs one call per TTL however big the project is.
Rules:

* One refresh at a time (others wait for it and use its result).
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
from redcapfs.shape import ProjectShape, RecordIndex, Slot

log = logging.getLogger(__name__)

FALLBACK_BATCH = 2000
STALE_RETRY_SECONDS = 5.0


class RecordCache:
    """Thread-safe access to the current :class:`RecordIndex`."""

    def __init__(self, client: RedcapClient, shape: ProjectShape, ttl: float, batch: int = 0) -> None:
        self.client = client
        self.shape = shape
        self.ttl = ttl
        self.batch = batch
        self.refreshes = 0
        self._lock = threading.RLock()
        self._refresh_lock = threading.Lock()
        self._index: RecordIndex | None = None
        self._fresh_until = 0.0
        self._changes: list[tuple[float, Callable[[RecordIndex], None]]] = []
        self._local_instances: set[tuple[str, str | None, str, int]] = set()

    # ------------------------------------------------------------ reading
    @contextmanager
    def view(self) -> Iterator[RecordIndex]:
        """The current index, locked for reading; refreshed first (outside the lock) when past its TTL.

        While one thread refreshes, others keep reading the previous index
        instead of waiting for a slow server; only the very first load blocks.
        """
        if time.monotonic() >= self._fresh_until:
            self._refresh()
        with self._lock:
            assert self._index is not None
            yield self._index

    def invalidate(self) -> None:
        """Make the next access refetch (e.g. after an error that suggests the tree changed)."""
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
    def _refresh(self) -> None:
        if not self._refresh_lock.acquire(blocking=self._index is None):
            return  # another thread is refreshing: serve the previous index meanwhile
        try:
            self._refresh_locked()
        finally:
            self._refresh_lock.release()

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
        fresh = self.shape.index(rows)
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
            self._index = fresh
            self._fresh_until = time.monotonic() + self.ttl
            self.refreshes += 1

    def _export(self) -> list[dict]:
        fields = self.shape.export_fields()
        if self.batch > 0:
            return self.client.export_records(fields=fields, batch_size=self.batch)
        try:
            return self.client.export_records(fields=fields)
        except (RequestTimeout, ServerError, TransportError) as exc:
            log.warning("records export failed (%s); retrying in batches of %d records", exc, FALLBACK_BATCH)
            return self.client.export_records(fields=fields, batch_size=FALLBACK_BATCH)
