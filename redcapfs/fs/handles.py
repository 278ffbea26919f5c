"""Open files: the table of file handles, and reads (from the content cache, a download, or a local file).

Lock: ``_lock`` guards the fh -> Handle table and is a leaf (dict updates
only; a local file's handle count is changed through the registry after it).
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from redcapfs.cache import Entry, Flight
from redcapfs.errors import FsError, LocalIOError
from redcapfs.fs.base import FileNode
from redcapfs.fs.content import ServerContent
from redcapfs.fs.localfiles import LocalFile, LocalFiles


@dataclass
class Handle:
    """An open file: a cache file for reading, or a LocalFile."""

    fd: int = -1
    local: LocalFile | None = None
    writable: bool = False
    flight: Flight | None = None  # the download still filling ``fd``, if any
    node: FileNode | None = None  # the server file a cache handle reads (its fstat is that version's)
    size: int | None = None  # that version's size as known at open, for fstat during its download
    version: Entry | Flight | None = None  # the cache entry (or its download) a server file's handle reads


class Handles:
    """fh -> :class:`Handle`; a local file counts its handles so its last close is known."""

    def __init__(self, local: LocalFiles) -> None:
        self.local = local
        self._lock = threading.Lock()
        self._handles: dict[int, Handle] = {}
        self._next_fh = itertools.count(1)

    def add(self, handle: Handle) -> int:
        if handle.local is not None:
            self.local.acquire(handle.local)
        with self._lock:
            fh = next(self._next_fh)
            self._handles[fh] = handle
        return fh

    def get(self, fh: int) -> Handle:
        with self._lock:
            handle = self._handles.get(fh)
        if handle is None:
            raise FsError("bad file handle")
        return handle

    def find(self, fh: int | None) -> Handle | None:
        """The open handle ``fh``, or None (getattr without a handle, or one already closed)."""
        if fh is None:
            return None
        with self._lock:
            return self._handles.get(fh)

    def local_of(self, fh: int | None) -> LocalFile | None:
        """The local file behind ``fh``, if it is an open handle on one."""
        if fh is None:
            return None
        with self._lock:
            handle = self._handles.get(fh)
        return handle.local if handle is not None else None

    def pop(self, fh: int) -> Handle | None:
        with self._lock:
            return self._handles.pop(fh, None)

    def all(self) -> list[int]:
        with self._lock:
            return list(self._handles)


def open_cached(content: ServerContent, node: FileNode) -> Handle:
    """A read handle on a server file: the cached copy, or the download filling it."""
    started = content.start(node)
    if isinstance(started, Flight):
        try:  # reads are served as the bytes arrive
            return Handle(fd=os.open(started.part, os.O_RDONLY), flight=started, node=node,
                          size=content.slots.size(node.slot, node.name), version=started)
        except FileNotFoundError:  # it ended meanwhile
            started.done.wait()
            if started.entry is None:
                raise started.error or LocalIOError("download failed") from None
            started = started.entry
    return Handle(fd=os.open(started.path, os.O_RDONLY), node=node, version=started)


def read_size(handle: Handle) -> int | None:
    """The size of the version a cache handle reads: its own file's, or during its download as known at open."""
    flight = handle.flight
    if flight is not None and not (flight.done.is_set() and flight.error is None):
        return handle.size
    return os.fstat(handle.fd).st_size


def read(handle: Handle, size: int, offset: int) -> bytes:
    """Bytes from the cache file; during a download, once they have arrived (its error otherwise)."""
    return _served(handle, size, offset, lambda fd: os.pread(fd, size, offset), len)


def read_into(handle: Handle, view: memoryview, offset: int) -> int:
    """:func:`read` straight into ``view`` (the binding's request buffer): no bytes object, no copy of one."""
    return _served(handle, len(view), offset, lambda fd: os.preadv(fd, [view], offset), int)


T = TypeVar("T", bytes, int)


def _served(handle: Handle, size: int, offset: int, pread: Callable[[int], T], count: Callable[[T], int]) -> T:
    """``pread(fd)`` of ``size`` bytes at ``offset`` (``count`` says how many it got), once they are there.

    During a download the bytes are waited for (the flight says when they are on disk), and only the
    bytes this read needs: the first read of a file is answered as soon as its first block arrives.
    """
    local = handle.local
    if local is not None:
        if local.fill is not None:  # a writer's copy not yet filled: its first read fetches the bytes
            with local.lock:
                local.ensure_filled(reading=True)
        return pread(local.fd)
    flight = handle.flight
    if flight is None:
        return pread(handle.fd)
    while True:
        flight.wait_for(offset + size)
        data = pread(handle.fd)
        if count(data) == size or (flight.done.is_set() and flight.error is None):
            flight.served(handle.fd, offset, offset + count(data))  # noted: dropbehind.py lets such pages go
            return data  # whole, or the true end of a complete file
        if flight.done.is_set():
            assert flight.error is not None
            raise flight.error
        time.sleep(0.01)  # a retry rewound the file after we looked: wait for the bytes again
