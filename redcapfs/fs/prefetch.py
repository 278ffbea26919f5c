"""Sizes asked ahead: once a ``stat`` follows a listing, the record's other files are asked in parallel.

``ls -l`` and rsync list a directory, then ``stat`` every entry one by one; a
file never seen costs one file-info call each, so N new files cost N round
trips in a row. A plain ``ls`` or ``find`` lists without a ``stat`` of a file
(the kernel has each entry's type from the listing) and must stay free. So a
listing only marks its directory; the first ``stat`` of a file in a marked
directory starts the size lookups of the files around it (``others``: in
this layout a slot directory holds one file, so Tree gives the other files of
the same record, which ``ls -lR`` and rsync visit next), several in flight at
once (``workers``, chosen from the rate limit: the HTTP client paces them).
The kernel's later ``stat`` calls find the sizes known or the lookup in flight
(``ServerContent.size`` makes concurrent lookups of one file share one call).

Lock: ``_lock`` guards the table of listed directories; a leaf. No lookup runs
under it.

A server without the file-info fast path (the undocumented ``fileinfo`` flag,
docs/redcap-api.md) can only tell a size by sending the file: ``sizes_notice``
says so at mount, with how many of the project's files that is. What the
client learns of it (at the first size lookup, no call of its own) is kept in
the manifest by ``remember_fileinfo``, so every later mount knows at once.
"""

from __future__ import annotations

import bisect
import functools
import logging
import posixpath
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from redcapfs.client.base import RedcapClient
from redcapfs.fs.base import FileNode
from redcapfs.fs.content import ServerContent
from redcapfs.fs.slots import SlotModel
from redcapfs.manifest import Manifest
from redcapfs.recordcache import RecordCache
from redcapfs.shape import DOCUMENT_PLACEHOLDER

log = logging.getLogger(__name__)

AHEAD_RECORDS = 8  # in a walk of the tree, the records after the current one whose sizes are asked ahead

MAX_DIRS = 64  # listed directories remembered, newest kept
WALK_GAP = 10.0  # seconds between two stats after listings that still make one walk of the tree


class SizePrefetch:
    """Remembers listings; the first file ``stat`` after one asks the other sizes ahead."""

    def __init__(self, others: Callable[[str], list[Callable[[], object]]], workers: int) -> None:
        self._others = others  # path -> the size lookups to run ahead (no I/O in making the list)
        self._workers = workers
        self._lock = threading.Lock()
        self._listed: OrderedDict[str, bool] = OrderedDict()
        self._started: set[str] = set()  # records already asked ahead in this mount
        self._last_trigger = float("-inf")
        self._pool: ThreadPoolExecutor | None = None

    def listed(self, directory: str, has_files: bool) -> None:
        """A listing of ``directory`` (``has_files``: it showed a file)."""
        if self._workers <= 0 or not has_files:
            return
        with self._lock:
            self._listed[directory] = True
            self._listed.move_to_end(directory)
            while len(self._listed) > MAX_DIRS:
                self._listed.popitem(last=False)

    def stat(self, path: str) -> None:
        """A ``stat`` of the file at ``path``: the first one after a listing of its directory starts the rest."""
        if self._workers <= 0:
            return
        with self._lock:
            if self._listed.pop(posixpath.dirname(path), None) is None:
                return
        jobs = self._others(path)
        if not jobs:
            return
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self._workers, thread_name_prefix="sizes-ahead")
            pool = self._pool
        for job in jobs:
            pool.submit(self._safe, job)

    @staticmethod
    def _safe(job: Callable[[], object]) -> None:
        try:
            job()
        except Exception as exc:  # the kernel's own stat will ask again and report it
            log.debug("size ahead: %s", exc)

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
            self._listed.clear()
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)

    def walking(self) -> bool:
        """Whether stats after listings come in a row (``ls -lR``, rsync): then sizes are asked further ahead."""
        now = time.monotonic()
        with self._lock:
            previous, self._last_trigger = self._last_trigger, now
        return now - previous < WALK_GAP

    def first_time(self, key: str) -> bool:
        """True once per ``key`` (a record) in this mount: its files are asked ahead once, not per listing."""
        with self._lock:
            if key in self._started:
                return False
            self._started.add(key)
            return True


def _counts(records: RecordCache, slots: SlotModel, load: bool) -> tuple[int, int]:
    """(files without a known size, files) in the index; ``load``: read it first if this mount has none."""
    with (records.view() if load else records.current()) as index:
        files = list(index.slots_with_files())
    return sum(1 for slot, name in files if slots.size(slot, name) is None), len(files)


def sizes_notice(records: RecordCache, slots: SlotModel, manifest: Manifest) -> str:
    """At mount, after the log: the line to say when this server's sizes need downloads, else "" (no call).

    Known from an earlier mount of the project (``remember_fileinfo``); a
    first mount cannot know without a call of its own, so it says nothing and
    logs it the moment the first size lookup shows it.
    """
    if manifest.meta("fileinfo") != "no":
        return ""
    unknown, total = _counts(records, slots, load=True)  # the index the mount reads next anyway
    return (f"note: this REDCap server has no file-info call, so a file's size needs a download of the file: "
            f"{unknown} of the {total} files known now (ls -l, stat and rsync read them once; "
            "the bytes stay in the cache)")


def remember_fileinfo(client: RedcapClient, records: RecordCache, slots: SlotModel, manifest: Manifest) -> None:
    """What the client has learnt of the file-info call, kept for the next mount's notice; logged once."""
    supported = getattr(client, "fileinfo_supported", None)
    if supported is None:
        return
    value = "yes" if supported else "no"
    if manifest.meta("fileinfo") == value:
        return
    manifest.set_meta("fileinfo", value)
    if not supported:
        unknown, total = _counts(records, slots, load=False)  # a size was looked up: the index is there
        log.warning("this REDCap server has no file-info call: a file's size needs a download of the file "
                    "(%d of the %d files known now); later mounts say so at mount", unknown, total)


def ahead_jobs(path: str, ahead: SizePrefetch, records: RecordCache, slots: SlotModel,
               content: ServerContent) -> list[Callable[[], object]]:
    """Size lookups of the record's other server files whose size is unknown (from memory, no I/O).

    In a walk of the tree (``ahead.walking()``) the next records in the walk's
    order are included, so ``ls -lR`` finds their sizes on the way.
    """
    record = path.strip("/").split("/", 1)[0]
    wanted = [record] if ahead.first_time(record) else []
    if ahead.walking():
        order = records.walk_order()
        at = bisect.bisect_right(order, record)
        wanted += [r for r in order[at:at + AHEAD_RECORDS] if ahead.first_time(r)]
    jobs: list[Callable[[], object]] = []
    for slot, raw in records.files_of(wanted).items():
        if raw != DOCUMENT_PLACEHOLDER and slots.size(slot, raw) is None:
            jobs.append(functools.partial(content.size, FileNode(slot, raw, raw)))
    return jobs
