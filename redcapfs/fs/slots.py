"""What each slot holds, as this mount knows it: one model, changed in one place.

A slot (record, event, field, instance) holds at most one file. What the mount
knows about that file comes from several sources: the records index (its name,
or "[document]" on old servers), a file-info call or a download (the real name
behind "[document]", the exact size), our own uploads and deletes, and a local
editor's backup copy that hides the server file (the shadow rule in tree.py).
:class:`SlotModel` keeps all of that, and :meth:`SlotModel.uploaded`,
:meth:`SlotModel.deleted` and :meth:`SlotModel.refreshed` are the only places
that change it after an upload, a delete or a records refresh, so the records
index, the attribute store, the sizes, the hidden flag, the resolved names and
the content cache never disagree. :meth:`SlotModel.changed_elsewhere` is the
change feed's way in (fs/feed.py): a file someone else replaced or deleted.

Sizes live in memory for ``content_ttl`` and, across mounts, in the manifest
(manifest.py); a manifest size is used only while it is trusted (the change
feed covered every change since it was learned), never as a mere hint.

Lock: ``_lock`` guards the in-memory tables below and is a leaf: it is never
held across a call to REDCap, the attribute database or the content cache
(those are called before or after, outside it). The TTL tables are
``cachetools.TTLCache`` objects, which are not thread-safe on their own.
"""

from __future__ import annotations

import dataclasses
import enum
import logging
import threading
from dataclasses import dataclass

from cachetools import TTLCache

from redcapfs.attrs import WRITE, Attr, AttrStore
from redcapfs.cache import ContentCache, cache_key
from redcapfs.manifest import Manifest
from redcapfs.recordcache import RecordCache
from redcapfs.shape import DOCUMENT_PLACEHOLDER, Slot

log = logging.getLogger(__name__)


class Origin(enum.Enum):
    """Where the bytes of a slot's file come from."""

    SERVER = "server"  # seen in a records export (someone uploaded it, maybe us in an earlier mount)
    UPLOAD = "upload"  # our own upload through this mount, since it started
    LOCAL = "local"  # only on this machine: a new file being written, or a temporary file


@dataclass(frozen=True)
class SlotFile:
    """The server file of one slot, as far as it is known without asking the server again.

    ``name`` is None while the real name behind "[document]" is unknown;
    ``size`` is None until a file-info call, a download or our upload told it;
    ``mtime_ns``/``mode`` are filled by :meth:`SlotModel.describe` once the
    size is known (the attribute store keys them by name and size).
    """

    slot: Slot
    raw: str
    name: str | None
    size: int | None
    origin: Origin
    mtime_ns: int | None = None
    mode: int | None = None


class SlotModel:
    """The server side of every slot: names, sizes, origins, and which ones a local copy hides."""

    def __init__(self, records: RecordCache, attrs: AttrStore, cache: ContentCache, url: str,
                 ttl: float, manifest: Manifest | None = None) -> None:
        self.records = records
        self.manifest = manifest if manifest is not None else Manifest(None)
        self.attrs = attrs
        self.cache = cache
        self.url = url
        self._lock = threading.Lock()
        self._sizes: TTLCache = TTLCache(maxsize=500_000, ttl=ttl)  # (slot, name) -> exact size
        self._names: TTLCache = TTLCache(maxsize=100_000, ttl=ttl)  # slot -> the name behind "[document]"
        self._ours: dict[Slot, str] = {}  # slots whose file we uploaded, and its name
        self._hidden: dict[Slot, str] = {}  # slots whose server file a local backup copy stands in for
        self._seq = 0  # changes made elsewhere seen so far, all slots (a writer's open notes it)
        self._versions: dict[Slot, int] = {}  # per slot: the count at its last change made elsewhere
        self._log_times: dict[tuple[Slot, str], int] = {}  # the log's time of an upload made elsewhere

    # ------------------------------------------------------------ reading (no I/O but the index)
    def server_file(self, slot: Slot, fresh: bool = False, current: bool = False) -> SlotFile | None:
        """The slot's server file, or None when the index says it is empty.

        ``fresh`` waits for a records refresh past the TTL (for a write
        decision); ``current`` never starts one (for a re-check under a lock).
        """
        view = self.records.fresh if fresh else self.records.current if current else self.records.view
        with view() as index:
            raw = index.file_name(slot)
        if raw is None:
            return None
        with self._lock:
            name = raw if raw != DOCUMENT_PLACEHOLDER else self._names.get(slot)
            size = self._sizes.get((slot, name)) if name is not None else None
        if size is None and name is not None:
            size = self._trusted_size(slot, name)
        with self._lock:
            origin = Origin.UPLOAD if name is not None and self._ours.get(slot) == name else Origin.SERVER
        return SlotFile(slot, raw, name, size, origin)

    def describe(self, slot: Slot) -> SlotFile | None:
        """:meth:`server_file` with the stored mtime and mode (local database, never the network)."""
        known = self.server_file(slot)
        if known is None or known.name is None or known.size is None:
            return known
        attr = self.attr(slot, known.name, known.size)
        return dataclasses.replace(known, mtime_ns=attr.mtime_ns, mode=attr.mode)

    def attr(self, slot: Slot, name: str, size: int) -> Attr:
        """The mtime and mode of one version: first seen now, or the log's time of an upload made elsewhere."""
        with self._lock:
            logged = self._log_times.get((slot, name))
        return self.attrs.get(slot, name, size, logged_ns=logged)

    def set_attr(self, slot: Slot, name: str, size: int, *, mtime_ns: int | None = None,
                 mode: int | None = None) -> None:
        """``touch``/``chmod`` of a server file: kept locally (REDCap has neither)."""
        self.attrs.set(slot, name, size, mtime_ns=mtime_ns, mode=mode)

    def size(self, slot: Slot, name: str) -> int | None:
        with self._lock:
            known = self._sizes.get((slot, name))
        return known if known is not None else self._trusted_size(slot, name)

    def _trusted_size(self, slot: Slot, name: str) -> int | None:
        """A size from the manifest that the change feed vouches for (outside ``_lock``: SQLite)."""
        entry = self.manifest.get(slot, name)
        if entry is None or not entry.trusted:
            return None
        with self._lock:
            self._sizes[(slot, name)] = entry.size
        return entry.size

    def version(self, slot: Slot) -> int:
        """The count of changes made elsewhere at the last one in ``slot``: above a writer's ``seq``, it is newer."""
        with self._lock:
            return self._versions.get(slot, 0)

    def seq(self) -> int:
        """Changes made elsewhere seen so far (noted by every new local copy)."""
        with self._lock:
            return self._seq

    def hidden(self, slot: Slot) -> str | None:
        """The server name a local backup copy hides (``mv f f~``), if any."""
        with self._lock:
            return self._hidden.get(slot)

    # ------------------------------------------------------------ what reads and probes learned
    def learned_size(self, slot: Slot, name: str, size: int, source: str = "fileinfo") -> None:
        """An exact size from a file-info call (``source``), a download or our upload; kept across mounts."""
        with self._lock:
            self._sizes[(slot, name)] = size
        self.manifest.put(slot, name, size, source)

    def learned_name(self, slot: Slot, name: str) -> None:
        """The real name behind "[document]" (from file-info or a download's headers)."""
        with self._lock:
            self._names[slot] = name

    def hide(self, slot: Slot, name: str) -> None:
        """A local backup copy now stands in for the server file ``name``."""
        with self._lock:
            self._hidden[slot] = name

    # ------------------------------------------------------------ the one place for changes
    def uploaded(self, slot: Slot, name: str, size: int, mtime_ns: int, mode: int | None,
                 data_path: str) -> str | None:
        """Our upload of ``name`` (``size`` bytes from ``data_path``) succeeded.

        Returns the content-cache key now sharing ``data_path``'s inode (the
        caller must detach before changing those bytes), or None.
        """
        self.records.note_file(slot, name)
        self.attrs.forget(slot, name)  # a new version: times set for the one it replaces go with it
        self.attrs.set(slot, name, size, mtime_ns=mtime_ns, mode=mode, rank=WRITE)
        with self._lock:
            self._hidden.pop(slot, None)
            self._names.pop(slot, None)
            self._sizes[(slot, name)] = size
            self._ours[slot] = name
        self.manifest.put(slot, name, size, "upload")
        key = self.content_key(slot, name)
        try:
            self.cache.put(key, data_path)
            return key
        except OSError as exc:  # only a lost optimisation: the next read downloads
            log.debug("could not keep the uploaded copy in the cache: %s", exc)
            return None

    def deleted(self, slot: Slot, name: str) -> None:
        """Our Delete File of ``name`` succeeded: the slot is empty."""
        self.records.note_file(slot, None)
        with self._lock:
            self._hidden.pop(slot, None)
            self._ours.pop(slot, None)
        self.forget_content(slot, name)

    def forget_content(self, slot: Slot, name: str) -> None:
        """The bytes of ``name`` changed on the server: drop its size and cached body."""
        with self._lock:
            self._sizes.pop((slot, name), None)
            self._names.pop(slot, None)
        self.manifest.forget(slot, name)
        self.cache.invalidate(self.content_key(slot, name))

    def changed_elsewhere(self, slot: Slot, old: str | None, new: str | None, when_ns: int | None) -> None:
        """The change feed saw someone else replace or delete the file in ``slot`` (``old`` -> ``new``).

        Every size, name, cached body and the old version's time go, whatever
        the names say (a replacement can keep name and size); the new version
        takes the log's time, above a first sighting and never above a time set
        here (utimens, our own write) for a version we made.
        """
        floor = self._previous_time(slot, old)
        with self._lock:
            for key in [k for k in list(self._sizes) if k[0] == slot]:
                self._sizes.pop(key, None)
            self._names.pop(slot, None)
            self._ours.pop(slot, None)
            if new is None:
                self._hidden.pop(slot, None)
            self._seq += 1
            self._versions[slot] = self._seq
            if new is not None and when_ns is not None:
                self._log_times[(slot, new)] = max(when_ns, floor + 1_000_000_000)  # never back in time
        self.manifest.forget(slot)
        for name in {old, new} - {None, DOCUMENT_PLACEHOLDER}:
            assert name is not None
            self.attrs.forget(slot, name)
            self.cache.invalidate(self.content_key(slot, name))
        if old == DOCUMENT_PLACEHOLDER or new == DOCUMENT_PLACEHOLDER:
            self.cache.invalidate(self.content_key(slot, DOCUMENT_PLACEHOLDER))

    def refreshed(self) -> None:
        """A records refresh finished: forget what we knew of slots the server now shows empty."""
        with self._lock:
            slots = set(self._ours) | set(self._names.keys())
        if not slots:
            return
        with self.records.current() as index:
            gone = {slot for slot in slots if index.file_name(slot) is None}
        with self._lock:
            for slot in gone:
                self._ours.pop(slot, None)
                self._names.pop(slot, None)

    def _previous_time(self, slot: Slot, old: str | None) -> int:
        """The mtime shown for the version being replaced (0 if none): the next one must be later."""
        if old is None:
            return 0
        size = self.size(slot, old)
        attr = self.attrs.peek(slot, old, size) if size is not None else None
        return attr.mtime_ns if attr is not None else 0

    # ------------------------------------------------------------ keys
    def content_key(self, slot: Slot, name: str) -> str:
        """The content cache's key for one file version (by its index value or name)."""
        return cache_key(self.url, slot.record, slot.event, slot.field, slot.instance, name)
