"""What a slot holds now, for ``retry`` and ``restore``, which must look before they replace anything.

A slot holds one file. Before sending, both commands ask REDCap for the
current file's name and size (the ``fileinfo`` call where the server has it),
and download it when its bytes are needed: to tell an upload that already
arrived from one that did not, and to keep the version a replace removes in
the trash. Downloads go to private scratch files in the trash folder, removed
afterwards (or by the trash's cleanup, should the command die).
"""

from __future__ import annotations

import fcntl
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from redcapfs.client.base import RedcapClient
from redcapfs.errors import EmptySlot, NoSuchRecord
from redcapfs.spool import Target
from redcapfs.trash import sha256_file


@dataclass
class SlotNow:
    """The file a slot holds now; ``copy`` is a downloaded copy once one was needed."""

    name: str
    size: int | None
    copy: Path | None = None
    _sha256: str | None = field(default=None, repr=False)


class Looker:
    """Looks at slots through one client, keeping downloads in ``scratch`` until the ``with`` ends."""

    def __init__(self, client: RedcapClient, scratch: Path) -> None:
        self.client = client
        self.scratch = scratch
        self._files: list[tuple[Path, int]] = []

    def look(self, t: Target) -> SlotNow | None:
        """The slot's current file, or None when it is empty."""
        try:
            info = self.client.file_info(t.record, t.field, event=t.event, repeat_instance=t.instance)
            if info is not None:
                return SlotNow(info.name or "", info.size)
            now = SlotNow("", None)
            self._download(t, now)
            return now
        except (EmptySlot, NoSuchRecord):  # no data in that event yet: the slot is empty
            return None

    def copy(self, t: Target, now: SlotNow) -> Path:
        """A local copy of the slot's current file (downloaded once)."""
        if now.copy is None:
            self._download(t, now)
        assert now.copy is not None
        return now.copy

    def sha256(self, t: Target, now: SlotNow) -> str:
        if now._sha256 is None:
            now._sha256 = sha256_file(self.copy(t, now))
        return now._sha256

    def holds(self, t: Target, now: SlotNow | None, name: str, size: int, sha256: str | None) -> bool:
        """Whether the slot holds exactly this file: name, size, then the bytes when a hash is given."""
        if now is None or now.name != name or (now.size is not None and now.size != size):
            return False
        if sha256 is None:
            return now.size is not None or self._copy_size(t, now) == size
        return self.sha256(t, now) == sha256

    def _copy_size(self, t: Target, now: SlotNow) -> int:
        return self.copy(t, now).stat().st_size

    def _download(self, t: Target, now: SlotNow) -> None:
        """Into ``<random>.part`` (0600), locked while the session lasts: the trash's cleanup removes it
        should this process die, and leaves it alone until then."""
        path = self.scratch / f"{secrets.token_hex(8)}.part"
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        self._files.append((path, fd))
        fcntl.flock(fd, fcntl.LOCK_EX)
        with os.fdopen(os.dup(fd), "wb") as out:
            info = self.client.export_file(t.record, t.field, out, event=t.event, repeat_instance=t.instance)
        now.name = info.name or now.name
        now.size = path.stat().st_size
        now.copy = path

    @contextmanager
    def session(self) -> Iterator[Looker]:
        try:
            yield self
        finally:
            for path, fd in self._files:
                path.unlink(missing_ok=True)
                os.close(fd)
            self._files.clear()


def opened_project(client: RedcapClient) -> str:
    """The id of the project the token opens (record names repeat across projects); RedcapError if unknown."""
    return str(client.project_info().get("project_id", ""))
