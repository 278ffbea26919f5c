"""Bytes in and out of a ``Tree`` for WebDAV: GET streams, PUT bodies, and the empty PUTs desktops send first.

A PUT body is the same thing as a tool writing a file on the mount: its bytes
go to the spool through ``Tree.write`` and are uploaded when the PUT ends (the
mount's close). It is written under a temporary name of the same slot
(rsync's ``.NAME.XXXXXX``, one of the temp-name patterns) and renamed onto
NAME at the end, which is the mount's upload-by-rename: a body that breaks off
half way is then dropped locally and never reaches REDCap, and a refused
upload keeps the bytes as unsent for NAME, exactly as after a failed rsync.

Explorer and Finder create a file with an empty PUT (or a LOCK on an unmapped
URL) and send the real bytes in a second PUT. An empty body therefore never
goes to REDCap: for a new name it leaves a zero-byte *placeholder* that only
this share shows (until a real PUT, a DELETE or the end of the server), and
over an existing file it changes nothing.
"""

from __future__ import annotations

import logging
import os
import posixpath
import secrets
import string
import threading
import time

from redcapfs.errors import FsError
from redcapfs.names import NAME_MAX
from redcapfs.tempnames import TempNames
from redcapfs.tree import Tree
from redcapfs.webdav.statuses import dav_error, status_for

log = logging.getLogger(__name__)

_ALNUM = string.ascii_letters + string.digits


class Placeholders:
    """Zero-byte files an empty PUT or a LOCK made: shown by this share only, never sent to REDCap."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._paths: dict[str, int] = {}

    def add(self, path: str) -> None:
        with self._lock:
            self._paths.setdefault(path, time.time_ns())

    def discard(self, path: str) -> None:
        with self._lock:
            self._paths.pop(path, None)

    def mtime_ns(self, path: str) -> int | None:
        with self._lock:
            return self._paths.get(path)

    def set_mtime(self, path: str, mtime_ns: int) -> None:
        with self._lock:
            if path in self._paths:
                self._paths[path] = mtime_ns

    def names_in(self, folder: str) -> list[str]:
        with self._lock:
            return [posixpath.basename(p) for p in self._paths if posixpath.dirname(p) == folder]


class Reader:
    """A GET body: ``Tree.open`` / ``Tree.read`` / ``Tree.release``, seekable for Range requests."""

    def __init__(self, tree: Tree, path: str) -> None:
        self._tree = tree
        try:
            self._fh: int | None = tree.open(path, os.O_RDONLY)
        except Exception as exc:
            raise dav_error(exc) from None
        self._pos = 0

    def read(self, size: int = -1) -> bytes:
        if self._fh is None:
            return b""
        if size is None or size < 0:
            chunks = []
            while chunk := self.read(1 << 20):
                chunks.append(chunk)
            return b"".join(chunks)
        try:
            data = self._tree.read(self._fh, size, self._pos)
        except Exception as exc:  # a download that failed half way: the GET must not end as if complete
            raise dav_error(exc) from None
        self._pos += len(data)
        return data

    def seek(self, offset: int, whence: int = 0) -> int:
        if whence != 0:
            raise OSError("only absolute seeks")
        self._pos = offset
        return offset

    def tell(self) -> int:
        return self._pos

    def close(self) -> None:
        if self._fh is not None:
            fh, self._fh = self._fh, None
            self._tree.release(fh)


class Writer:
    """A PUT body: written to the spool as it arrives, uploaded when the PUT ends."""

    def __init__(self, tree: Tree, temp_names: TempNames, placeholders: Placeholders, path: str,
                 exists: bool, made_placeholder: bool) -> None:
        self._tree = tree
        self._placeholders = placeholders
        self._path = path
        self._exists = exists  # the Tree has a file at ``path`` (not just a placeholder)
        self._made_placeholder = made_placeholder
        self._fh: int | None = None
        self._written = 0
        name = posixpath.basename(path)
        self._direct = temp_names.is_temp(name)  # a side file stays local anyway: write it in place
        temp = None if self._direct else _temp_path(path, temp_names)
        if temp is None:
            self._direct = True  # a side file, or no temporary name fits: write in place
        self._temp_path: str = temp or path
        self._closed = False

    def write(self, data: bytes) -> int:
        if not data:
            return 0
        try:
            if self._fh is None:
                self._fh = self._open()
            written = self._tree.write(self._fh, data, self._written)
        except Exception as exc:
            raise dav_error(exc) from None
        self._written += written
        return written

    def _open(self) -> int:
        if self._direct and self._exists:
            return self._tree.open(self._temp_path, os.O_WRONLY | os.O_TRUNC)
        return self._tree.create(self._temp_path, 0o644)

    def close(self) -> None:
        """The end of the body: upload (the mount's close). An error here fails the PUT."""
        self._closed = True
        if self._fh is None:
            self._close_empty()
            return
        fh, self._fh = self._fh, None
        try:
            self._tree.flush(fh)
        except Exception as exc:
            self._tree.release(fh)
            raise dav_error(exc) from None
        self._tree.release(fh)
        if not self._direct:
            self._commit()
        self._placeholders.discard(self._path)
        log.info("PUT %s: %d bytes", self._path, self._written)

    def _commit(self) -> None:
        """The rename onto the real name is the upload; a refusal before it drops the temporary copy."""
        try:
            self._tree.rename(self._temp_path, self._path)
        except Exception as exc:
            if isinstance(exc, FsError):  # a slot rule refused it: nothing was sent, nothing to keep
                self._drop_temp()
            else:
                log.error("PUT %s: the upload failed (%s); the bytes are kept as unsent", self._path, exc)
            raise dav_error(exc) from None

    def _close_empty(self) -> None:
        if self._direct and not self._exists:
            fh = self._tree.create(self._path, 0o644)  # a side file: local, as on the mount
            self._tree.release(fh)
        elif self._exists:
            log.info("empty PUT on %s ignored: REDCap keeps its file (delete it to remove it)", self._path)
        else:
            self._placeholders.add(self._path)

    def abort(self) -> None:
        """The body broke off (or the upload failed): nothing half-received is sent or kept as complete."""
        if self._fh is not None:
            fh, self._fh = self._fh, None
            self._tree.release(fh)
            if not self._direct:
                self._drop_temp()
        if self._made_placeholder:
            self._placeholders.discard(self._path)

    def _drop_temp(self) -> None:
        try:
            self._tree.unlink(self._temp_path)
        except Exception as exc:
            if status_for(exc) != 404:
                log.warning("could not remove the temporary copy %s: %s", self._temp_path, exc)


def _temp_path(path: str, temp_names: TempNames) -> str | None:
    """rsync's ``.NAME.XXXXXX`` beside ``path``, if that is a temporary name here and fits."""
    folder, name = posixpath.split(path)
    temp = f".{name}.{''.join(secrets.choice(_ALNUM) for _ in range(6))}"
    if len(temp.encode()) > NAME_MAX or not temp_names.is_temp(temp):
        return None
    return posixpath.join(folder, temp)
