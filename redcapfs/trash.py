"""The local trash: every version a replace or a delete takes out of REDCap, kept byte for byte for a while.

REDCap's API has no undo, and a ``cp`` interrupted with Ctrl-C over an existing
consent form uploads the partial file (FUSE cannot tell that close from a
normal one). So whoever is about to replace or delete a file first calls
:meth:`Trash.keep` with the bytes it removes; ``redcapfs restore ID`` puts a
version back. The bytes are clinical files, so the layout follows the spool's
rules: no record, field or file name in any path.

    <project folder>/trash/          0700
        <id>.data                    0600  the bytes
        <id>.json                    0600  where they were, their name, why, what the change left
        <id>.part                    0600  a version being copied in (locked by its writer)
        settings.json                the last mount's trash options (``retry``/``restore`` use them too)
        .lock                        serialises eviction between processes

Versions expire after ``trash_days`` (default 7) and beyond ``trash_size``
(default 2G), oldest first; a version larger than the whole budget is refused
with :class:`TrashFull` (ENOSPC), never silently skipped, so the caller
refuses the change. ``trash=off`` turns keeping off (what is kept still expires).
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import io
import json
import logging
import math
import os
import secrets
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, BinaryIO

from redcapfs.locations import private_dir
from redcapfs.spool import Target, write_json

log = logging.getLogger(__name__)

VERSION = 1
WHY = ("replaced", "deleted")
DAY = 86400.0
# A source is a path to bytes already on local disk (the content cache), or a
# callable that writes them into the file object it is given (a download).
Source = str | os.PathLike[str] | Callable[[BinaryIO], object]


class TrashFull(OSError):
    """The version is larger than the whole trash budget: the replace or delete must be refused."""

    def __init__(self, message: str) -> None:
        super().__init__(errno.ENOSPC, message)

    def __str__(self) -> str:
        return str(self.strerror)


@dataclass(frozen=True)
class Left:
    """What a replace or delete left in the slot; ``restore`` refuses without ``--force`` if the slot differs.

    ``name`` None: the slot was left empty (a delete). ``sha256`` None: name
    and size are all that is checked.
    """

    name: str | None
    size: int | None = None
    sha256: str | None = None
    doc_id: int | None = None  # File Repository: the document that replaced this version


@dataclass(frozen=True)
class TrashSettings:
    """``-o trash=off``, ``-o trash_days=N``, ``-o trash_size=SIZE``."""

    enabled: bool = True
    days: float = 7.0
    size: int = 2 << 30

    @classmethod
    def from_options(cls, trash: str | None = None, trash_days: str | None = None,
                     trash_size: str | None = None) -> TrashSettings:
        """The mount options' values as given (strings); ValueError names the bad option."""
        enabled = True
        if trash is not None:
            if trash.strip().lower() not in ("on", "off"):
                raise ValueError(f"-o trash={trash}: say on or off")
            enabled = trash.strip().lower() == "on"
        days = cls.days if trash_days is None else _positive(float, "trash_days", trash_days)
        size = cls.size if trash_size is None else int(_positive(parse_size, "trash_size", trash_size))
        return cls(enabled, days, size)

    def describe(self) -> str:
        return f"trash_days={self.days:g}, trash_size={self.size}" if self.enabled else "trash=off"


def _positive(parse: Callable[[str], float], option: str, text: str) -> float:
    try:
        value = parse(text)
    except (ValueError, OverflowError):
        raise ValueError(f"-o {option}={text}: not a number") from None
    if not math.isfinite(value) or value <= 0 or value > 1e15:
        raise ValueError(f"-o {option}={text}: must be a positive, finite number")
    return value


_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def parse_size(text: str) -> float:
    """``512M``, ``2G``, ``1048576`` (as the mount's ``cache_size``)."""
    text = text.strip().upper().removesuffix("B").removesuffix("I")
    unit = text[-1:] if text[-1:] in _UNITS else ""
    return float(text[: len(text) - len(unit)]) * _UNITS[unit]


@dataclass(frozen=True)
class TrashEntry:
    """One kept version."""

    id: str
    target: Target  # where it was, and its name
    why: str
    left: Left
    bytes: int
    sha256: str
    when: float
    data_path: Path

    def public(self) -> dict[str, Any]:
        """The row of ``redcapfs trash --json``."""
        t = self.target
        return {"id": self.id, "record": t.record, "event": t.event, "field": t.field, "instance": t.instance,
                "name": t.name, "bytes": self.bytes, "when": iso_time(self.when), "why": self.why,
                "url": t.url, "sha256": self.sha256, "left": _left_public(self.left),
                "repository": t.is_repository, "folder": t.folder, "folder_id": t.folder_id, "doc_id": t.doc_id}


def _left_public(left: Left) -> dict[str, Any]:
    """``left`` as listed; ``doc_id`` only for a File Repository version (record slots keep the old shape)."""
    row = asdict(left)
    if row.get("doc_id") is None:
        row.pop("doc_id", None)
    return row


def iso_time(when: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(when))


class _Capped(io.FileIO):
    """A file that refuses to grow past the budget, so an oversized download stops early."""

    limit = 0
    overflowed = False  # remembered: a client may wrap the error or retry before giving up

    def write(self, data: Any) -> int:
        if self.tell() + len(memoryview(data)) > self.limit:
            self.overflowed = True
            raise TrashFull("too large")
        return super().write(data)


class Trash:
    """The trash folder of one project."""

    def __init__(self, root: Path, settings: TrashSettings | None = None) -> None:
        self.root = private_dir(Path(root))
        saved = self.root / "settings.json"
        if settings is None:
            self.settings = self._load_settings(saved)
        else:
            self.settings = settings
            if self._load_settings(saved) != settings:
                write_json(saved, asdict(settings))

    # ------------------------------------------------------------ keeping
    def keep(self, target: Target, source: Source, why: str, left: Left | None = None) -> TrashEntry | None:
        """Keep the version ``target`` names, before it is replaced or deleted; None when the trash is off.

        Raises :class:`TrashFull` when the version is larger than ``trash_size``
        (the caller must refuse the change), or whatever reading ``source`` raised.
        """
        if why not in WHY:
            raise ValueError(f"why must be one of {WHY}")
        self.expire()
        if not self.settings.enabled:
            return None
        left = left if left is not None else Left(None)
        entry_id = secrets.token_hex(8)
        part = self.root / f"{entry_id}.part"
        try:
            size, digest = self._copy_in(part, source, target)
            with self._locked():
                self._make_room(size)
                data = self.root / f"{entry_id}.data"
                os.replace(part, data)
                meta = {"version": VERSION, "target": asdict(target), "why": why, "left": asdict(left),
                        "bytes": size, "sha256": digest, "when": time.time()}
                write_json(self.root / f"{entry_id}.json", meta)
        finally:
            part.unlink(missing_ok=True)
        log.info("kept the %s version of %s in the trash as %s (%d bytes)", why, target.describe(), entry_id, size)
        return self._entry(entry_id, meta)

    def _copy_in(self, part: Path, source: Source, target: Target) -> tuple[int, str]:
        """Copy or download into ``part`` (locked while it is written); return size and sha256."""
        fd = os.open(part, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        out = _Capped(fd, "r+b", closefd=True)
        out.limit = self.settings.size
        fcntl.flock(out.fileno(), fcntl.LOCK_EX)  # tells expire() the .part is not abandoned
        with out:
            try:
                if callable(source):
                    source(out)
                else:
                    with open(source, "rb") as src:
                        shutil.copyfileobj(src, out, 1 << 20)
            except Exception as exc:
                if out.overflowed or isinstance(exc, TrashFull):
                    raise self._too_large(target) from None
                raise
            if out.overflowed:
                raise self._too_large(target)
            out.truncate()
            out.flush()
            os.fsync(out.fileno())
            return out.tell(), _sha256_of(out)

    def _too_large(self, target: Target) -> TrashFull:
        return TrashFull(f"{target.describe()} is larger than the whole trash (trash_size={self.settings.size} "
                         "bytes), so it cannot be kept before it is replaced or deleted; raise -o trash_size, "
                         "or turn the trash off with -o trash=off")

    def _make_room(self, size: int) -> None:
        """Evict the oldest versions until ``size`` more bytes fit (caller holds the lock)."""
        entries = self.entries()
        total = sum(e.bytes for e in entries)
        for old in entries:  # oldest first
            if total + size <= self.settings.size:
                break
            self._remove_files(old.id)
            total -= old.bytes
            log.info("trash: %s (%s, %d bytes) expired to make room", old.id, old.target.describe(), old.bytes)

    # ------------------------------------------------------------ reading and removing
    def entries(self) -> list[TrashEntry]:
        """Every kept version, oldest first (unreadable entries are skipped with a warning)."""
        found = []
        for path in self.root.glob("*.json"):
            if path.name == "settings.json":
                continue
            try:
                found.append(self._entry(path.stem, json.loads(path.read_text())))
            except FileNotFoundError:
                continue
            except (OSError, ValueError, KeyError, TypeError) as exc:
                log.warning("trash: ignoring unreadable entry %s: %s", path.name, exc)
        return sorted(found, key=lambda e: e.when)

    def get(self, entry_id: str) -> TrashEntry:
        try:
            return self._entry(entry_id, json.loads((self.root / f"{entry_id}.json").read_text()))
        except (FileNotFoundError, ValueError, KeyError, TypeError):
            raise KeyError(entry_id) from None

    def remove(self, entry_id: str) -> None:
        with self._locked():
            self._remove_files(entry_id)

    def expire(self, now: float | None = None) -> int:
        """Remove versions older than ``trash_days`` and leftovers of dead writers; return how many versions."""
        limit = (time.time() if now is None else now) - self.settings.days * DAY
        with self._locked():
            old = [e for e in self.entries() if e.when < limit]
            for entry in old:
                self._remove_files(entry.id)
            self._drop_leftovers()
        if old:
            log.info("trash: %d version(s) older than %g days removed", len(old), self.settings.days)
        return len(old)

    def _drop_leftovers(self) -> None:
        """Data without a json (a crash before it was written) and parts no live writer holds."""
        for data in self.root.glob("*.data"):
            if not data.with_suffix(".json").exists():
                data.unlink(missing_ok=True)
        for part in self.root.glob("*.part"):
            try:
                fd = os.open(part, os.O_RDONLY | os.O_NOFOLLOW)
            except OSError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                part.unlink(missing_ok=True)
            except BlockingIOError:
                pass  # still being written
            finally:
                os.close(fd)

    def _remove_files(self, entry_id: str) -> None:
        """Data first, then the json, as in the spool."""
        (self.root / f"{entry_id}.data").unlink(missing_ok=True)
        (self.root / f"{entry_id}.json").unlink(missing_ok=True)

    def _entry(self, entry_id: str, meta: dict[str, Any]) -> TrashEntry:
        if meta.get("why") not in WHY:
            raise ValueError(f"unknown why {meta.get('why')!r}")
        return TrashEntry(entry_id, Target(**meta["target"]), meta["why"], Left(**meta["left"]),
                          int(meta["bytes"]), str(meta["sha256"]), float(meta["when"]),
                          self.root / f"{entry_id}.data")

    @contextmanager
    def _locked(self) -> Iterator[None]:
        fd = os.open(self.root / ".lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    @staticmethod
    def _load_settings(path: Path) -> TrashSettings:
        try:
            raw = json.loads(path.read_text())
            return TrashSettings(bool(raw["enabled"]), float(raw["days"]), int(raw["size"]))
        except FileNotFoundError:
            return TrashSettings()
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("trash: unreadable %s (%s); using the defaults", path, exc)
            return TrashSettings()


def _sha256_of(fh: BinaryIO) -> str:
    fh.seek(0)
    digest = hashlib.sha256()
    for chunk in iter(lambda: fh.read(1 << 20), b""):
        digest.update(chunk)
    return digest.hexdigest()


def sha256_file(path: str | os.PathLike[str]) -> str:
    """The sha256 of a local file, for :class:`Left` and comparisons."""
    with open(path, "rb") as fh:
        return _sha256_of(fh)
