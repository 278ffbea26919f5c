"""Server content: the real names behind "[document]", exact sizes, and downloads into the content cache.

Every call here may go to the server, so none of it runs under a shared lock.
What it learns goes into the :class:`~redcapfs.fs.slots.SlotModel`.

Lock: ``_lock`` guards the table of per-file size locks only. A per-file size
lock is held across that one file's file-info call or download, so concurrent
``stat`` calls of one file ask the server once; other files never wait on it.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
from collections.abc import Callable
from typing import BinaryIO

from redcapfs.cache import ContentCache, Entry, Flight
from redcapfs.client.base import RedcapClient
from redcapfs.errors import LocalIOError, NotFound, RedcapError
from redcapfs.fs.base import FileNode
from redcapfs.fs.rules import describe
from redcapfs.fs.slots import SlotModel
from redcapfs.shape import DOCUMENT_PLACEHOLDER, Slot

log = logging.getLogger(__name__)


class ServerContent:
    """Names, sizes and bytes of server files, each asked of the server at most once at a time."""

    def __init__(self, client: RedcapClient, cache: ContentCache, slots: SlotModel) -> None:
        self.client = client
        self.cache = cache
        self.slots = slots
        self._lock = threading.Lock()
        self._size_locks: dict[tuple[Slot, str], threading.Lock] = {}

    def display_name(self, slot: Slot, raw: str) -> str:
        """The real name; older servers only say "[document]", so ask once (file-info or a download)."""
        if raw != DOCUMENT_PLACEHOLDER:
            return raw
        known = self.slots.server_file(slot, current=True)
        if known is not None and known.raw == raw and known.name is not None:
            return known.name
        info = self.client.file_info(slot.record, slot.field, event=slot.event, repeat_instance=slot.instance)
        if info is None or not info.name:
            self.fetch(FileNode(slot, raw, raw))  # the download's headers carry the name
            known = self.slots.server_file(slot, current=True)
            name = known.name if known is not None and known.name is not None else raw
        else:
            name = info.name
            if info.size is not None:
                self.slots.learned_size(slot, name, info.size)
        self.slots.learned_name(slot, name)
        return name

    def size(self, node: FileNode) -> int:
        """The exact size; concurrent lookups of one file share one question to the server."""
        key = (node.slot, node.name)
        size = self.slots.size(*key)
        if size is not None:
            return size
        with self._lock:
            lock = self._size_locks.setdefault(key, threading.Lock())
        with lock:
            try:
                return self._discover_size(node)
            finally:
                with self._lock:
                    self._size_locks.pop(key, None)

    def _discover_size(self, node: FileNode) -> int:
        size = self.slots.size(node.slot, node.name)
        if size is not None:
            return size  # found by the thread we waited for
        entry = self.cache.lookup(self.key(node))
        if entry is None:
            slot = node.slot
            info = self.client.file_info(slot.record, slot.field, event=slot.event, repeat_instance=slot.instance)
            if info is not None and info.size is not None:
                self.slots.learned_size(slot, node.name, info.size)
                return info.size
            entry = self.fetch(node)
        self.slots.learned_size(node.slot, node.name, entry.size, "download")
        return entry.size

    def key(self, node: FileNode) -> str:
        return self.slots.content_key(node.slot, node.raw or node.name)

    def fetch(self, node: FileNode) -> Entry:
        """The complete cached file, downloaded once however many readers ask."""
        entry = self.cache.fetch(self.key(node), self.downloader(node), self.answer_check(node))
        self.slots.learned_size(node.slot, node.name, entry.size, "download")
        return entry

    def start(self, node: FileNode) -> Entry | Flight:
        """The cached file, or the download filling it (readers are served as bytes arrive)."""
        return self.cache.start(self.key(node), self.downloader(node), self.answer_check(node))

    def answer_check(self, node: FileNode) -> Callable[[str | None, int | None], None]:
        """Refuse an answer that is another version than the one opened: checked when its headers
        arrive (before a reader gets a byte of it) and again at its end."""
        slot = node.slot
        reported = self.slots.size(slot, node.name)  # what stat already told: a different body is another version

        def check(name: str | None, length: int | None) -> None:
            if name and node.raw != DOCUMENT_PLACEHOLDER and name != node.name:  # replaced since our listing
                log.warning("download of %s refused: the slot now holds %r", describe(slot, node.name), name)
                raise NotFound(f"replaced on the server by {name!r}; list the folder again")
            if reported is not None and length is not None and length != reported:
                self.slots.forget_content(slot, node.name)  # the next stat asks again
                log.warning("download of %s refused: %d bytes, but %d were reported before (replaced on the "
                            "server meanwhile)", describe(slot, node.name), length, reported)
                raise LocalIOError(f"the file changed on the server while it was opened ({length} bytes, "
                                   f"{reported} reported before); open it again")

        return check

    def downloader(self, node: FileNode) -> Callable[[BinaryIO], None]:
        """One Export File into the cache's file object; logs a failure once, however many readers wait."""
        slot = node.slot
        check = self.answer_check(node)

        def download(out: BinaryIO) -> None:
            try:
                info = self.client.export_file(slot.record, slot.field, out, event=slot.event,
                                               repeat_instance=slot.instance)
            except RedcapError as exc:
                log.error("download of %s failed: %s", describe(slot, node.name), exc)
                raise
            if node.raw == DOCUMENT_PLACEHOLDER and info.name:
                self.slots.learned_name(slot, info.name)
            check(info.name, out.tell())  # for clients that do not announce the answer before its body
            self.slots.learned_size(slot, node.name, out.tell(), "download")

        return download

    def copy_into(self, node: FileNode, fd: int) -> None:
        """The server's bytes of ``node`` into the local file ``fd`` (downloaded first if not cached)."""
        entry = self.fetch(node)
        with open(entry.path, "rb") as src, os.fdopen(os.dup(fd), "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
