"""The attributes the kernel is shown for folders and files (``Stat``), and the folders' kept times.

Folders have no REDCap counterpart: their mode comes from the mount options
less what the token's rights forbid (fs/rights.py), their time from the mount's
epoch unless ``touch``/``rsync -a`` set one. A listing of a record (or an
event, or a field with instances) shows folders that all belong to one record,
so their mode is worked out once per listing and one ``Stat`` serves every
folder without a time of its own: ``find`` lists 110,000 such folders.
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Sequence

from redcapfs import names
from redcapfs.errors import NotFound
from redcapfs.fs import rules
from redcapfs.fs.base import FileNode, Stat, TreeOptions
from redcapfs.fs.content import ServerContent
from redcapfs.fs.localfiles import LocalFile
from redcapfs.fs.repotree import is_repo_path
from redcapfs.fs.rights import TokenRights
from redcapfs.fs.slots import SlotModel


class Attributes:
    """``Stat`` for folders, server files and local files; the times set on folders."""

    def __init__(self, options: TreeOptions, epoch_ns: int, rights: TokenRights, slots: SlotModel,
                 content: ServerContent) -> None:
        self.options = options
        self.epoch_ns = epoch_ns
        self.rights = rights
        self.slots = slots
        self.content = content
        self._dir_mtimes: dict[str, int] = {}  # set by utimens; a plain dict: one store, one look-up

    # ------------------------------------------------------------ folders
    def set_dir_mtime(self, path: str, when: int) -> None:
        self._dir_mtimes[path.rstrip("/") or "/"] = when

    def dir_stat(self, path: str) -> Stat:
        first = path.strip("/").split("/", 1)[0]
        return self._dir(self._dir_mode(first), path.rstrip("/") or "/")

    def listed_stats(self, path: str, entries: Sequence[tuple[str, bool]]) -> list[tuple[str, bool, Stat | None]]:
        """Each entry of a listing of ``path`` with its attributes if it is a folder (None for files).

        Below the top every folder listed belongs to the record the path starts
        with, so they share one mode, and all those without a time of their own one ``Stat``.
        """
        base = path.rstrip("/")
        if not base:  # the top: records, each with its own mode (a locked record loses its write bits)
            return [(name, is_dir, self.dir_stat(f"/{name}") if is_dir and not is_repo_path(f"/{name}") else None)
                    for name, is_dir in entries]
        mode = self._dir_mode(base[1:].split("/", 1)[0])
        shared = self._dir(mode, None)
        times = self._dir_mtimes
        out: list[tuple[str, bool, Stat | None]] = []
        for name, is_dir in entries:
            if not is_dir:
                out.append((name, False, None))
                continue
            own = times.get(f"{base}/{name}") if times else None
            out.append((name, True, shared if own is None else self._dir(mode, f"{base}/{name}")))
        return out

    def _dir_mode(self, first: str) -> int:
        record = names.decode_record(first) if first else None
        return stat.S_IFDIR | self.rights.dir_mode(rules.dir_mode(self.options), record)

    def _dir(self, mode: int, key: str | None) -> Stat:
        mtime = self._dir_mtimes.get(key, self.epoch_ns) if key is not None else self.epoch_ns
        return Stat(True, 0, mode, mtime, self.options.uid, self.options.gid)

    # ------------------------------------------------------------ files
    def server_stat(self, node: FileNode, size: int | None = None) -> Stat:
        """A server file's attributes; its size is asked or downloaded if unknown and readable."""
        if size is None:
            readable = self.rights.readable(node.slot)  # unexportable: last known size, never a download
            size = self.content.size(node) if readable else (self.slots.size(node.slot, node.name) or 0)
        attr = self.slots.attr(node.slot, node.name, size)
        mode = attr.mode if attr.mode is not None else rules.file_mode(self.options)
        mode = self.rights.file_mode(mode, node.slot)
        return Stat(False, size, stat.S_IFREG | mode, attr.mtime_ns, self.options.uid, self.options.gid)

    def local_stat(self, local: LocalFile) -> Stat:
        """A file being written (or a temporary one, or an editor's lock link): its spool copy's size."""
        st = os.fstat(local.fd) if local.fd >= 0 else None
        size = local.size() if st else 0
        mtime = local.mtime_ns or local.base_mtime_ns or (st.st_mtime_ns if st else time.time_ns())
        mode = local.mode if local.mode is not None else rules.file_mode(self.options)
        kind = stat.S_IFREG if local.link_target is None else stat.S_IFLNK  # an editor's lock link
        return Stat(False, size, kind | mode, mtime, self.options.uid, self.options.gid)

    def open_stat(self, fd: int) -> Stat:
        """The attributes of an open file with no path left (libfuse passes none after an unlink): its own."""
        if fd < 0:
            raise NotFound("the file was removed, and no open file of it is known", "")
        st = os.fstat(fd)
        return Stat(False, st.st_size, stat.S_IFREG | 0o444, st.st_mtime_ns, self.options.uid, self.options.gid)
