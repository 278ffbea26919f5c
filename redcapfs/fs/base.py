"""Values every piece of the tree shares: the mount's options, the answer to ``stat``, a file found in a slot."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from redcapfs.shape import Slot
from redcapfs.tempnames import TempNames

if TYPE_CHECKING:
    from redcapfs.fs.localfiles import LocalFile

WRITE_FLAGS = os.O_WRONLY | os.O_RDWR


class ByteSource(Protocol):
    """A write's bytes that copy themselves where they go: the FUSE layer's are still in libfuse's buffer."""

    size: int

    def into_fd(self, fd: int, offset: int) -> int:
        """Write them at ``offset`` of ``fd``; how many were written."""

    def take(self) -> bytes:
        """The bytes, as one object (for writes that are not to a file)."""


@dataclass
class TreeOptions:
    """Mount options that change what the tree does."""

    read_only: bool = False
    records_ttl: float = 15.0
    content_ttl: float = 300.0
    poll: float = 0.0  # change-feed poll (seconds; 0: no feed, TTL refreshes); the mount's default is 30
    poll_idle: float = 600.0
    metadata_ttl: float = 0.0  # without the change feed: read the design again this often (0: never)
    slot_check: str = "recent"  # before a replace/delete: a poll begun within 2 s (recent), ask (always), feed
    sizes_ahead: int = 0  # sizes asked in parallel once a stat follows a listing (0: off); the mount sets it
    empty_grace: float = 0.0  # seconds a truncation to empty closed unwritten waits (0: none); the mount sets it
    stream_upload: int = 0  # bytes after which a new file's upload starts while it is written (0: off; fs/streaming.py)
    batch: int = 0
    arm: int | None = None
    timeout: float | None = None  # longest wait for a records refresh a decision needs (-o timeout)
    uid: int = field(default_factory=os.getuid)
    gid: int = field(default_factory=os.getgid)
    umask: int = 0o022  # -o umask: bits taken away from every file's and folder's mode
    temp_names: TempNames = field(default_factory=TempNames)


@dataclass(frozen=True)
class Stat:
    """The attributes the FUSE layer reports."""

    is_dir: bool
    size: int
    mode: int
    mtime_ns: int
    uid: int
    gid: int


@dataclass(frozen=True)
class FileNode:
    """A file found in a slot directory: the server's (``raw`` set), a writer's, or a temporary one.

    ``raw`` is the records index's value for a server file ("[document]" on old
    servers); ``local`` the local copy that answers for the file, if any.
    """

    slot: Slot
    name: str
    raw: str | None = None
    local: LocalFile | None = None

