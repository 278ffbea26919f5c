"""The spool: bytes written through the mount, on local disk until REDCap has them.

Every writable open gets an entry: ``<id>.json`` (where the bytes go, the state,
the owning process) and ``<id>.data`` (the bytes, written by the mount through
its own descriptor). Both are 0600 in a 0700 folder. Because the data is on
disk from the first ``write``, a crash or ``kill -9`` of the mount loses nothing:

* state ``open``: being written by a live mount;
* state ``unsent``: the upload failed (REDCap's message is kept in ``error``);
* state ``temp``: a tool's temporary file, never meant to be uploaded.

An ``open`` entry whose process is gone (pid dead, or reused by another
process, told apart by the process start time) is unsent too. The json is
always replaced atomically (write, fsync, rename), and it is written before the
data file exists and removed after it, so a data file is never without its target.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from redcapfs.locations import private_dir

log = logging.getLogger(__name__)

VERSION = 1


@dataclass(frozen=True)
class Target:
    """Where the bytes go in REDCap."""

    url: str
    project_id: str
    record: str
    event: str | None
    field: str
    instance: int | None
    name: str

    def describe(self) -> str:
        """``record/event/field[/instance]/name`` for listings and logs."""
        parts = [self.record] + ([self.event] if self.event else []) + [self.field]
        if self.instance is not None:
            parts.append(str(self.instance))
        return "/".join(parts + [self.name])


def process_start(pid: int) -> str | None:
    """The start time of ``pid`` in clock ticks since boot (field 22 of /proc/PID/stat)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text.rsplit(")", 1)[-1].split()[19]


def pid_alive(pid: int, start: str | None) -> bool:
    """Whether the owning process still runs: not gone, not a zombie, not a reused pid."""
    if pid <= 0:
        return False  # os.kill(0, …) would signal our own process group
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()
    except OSError:
        return False
    if fields[0] in ("Z", "X"):  # killed but not yet reaped: dead for our purpose
        return False
    return start is None or fields[19] == start


class SpoolEntry:
    """One spooled file."""

    def __init__(self, root: Path, entry_id: str, meta: dict[str, Any]) -> None:
        self.root = root
        self.id = entry_id
        self.data_path = root / f"{entry_id}.data"
        self.meta_path = root / f"{entry_id}.json"
        self.target = Target(**meta["target"])
        self.state: str = meta["state"]
        self.pid: int = int(meta["pid"])
        self.pid_start: str | None = meta.get("pid_start")
        self.error: str | None = meta.get("error")
        self.created: float = float(meta["created"])
        self.updated: float = float(meta["updated"])

    def size(self) -> int:
        try:
            return self.data_path.stat().st_size
        except FileNotFoundError:
            return 0

    def alive(self) -> bool:
        """Whether the process that owns this entry is still running."""
        return pid_alive(self.pid, self.pid_start)

    def is_unsent(self) -> bool:
        return self.state == "unsent" or (self.state == "open" and not self.alive())

    def mark_unsent(self, error: str) -> None:
        self.state, self.error = "unsent", error
        self._save()

    def mark_open(self) -> None:
        self.state, self.error = "open", None
        self.pid, self.pid_start = os.getpid(), process_start(os.getpid())
        self._save()

    def retarget(self, target: Target, temp: bool) -> None:
        self.target = target
        self.state = "temp" if temp else "open"
        self._save()

    def remove(self) -> None:
        """Data first, then the json: a crash in between leaves a json without data, never the reverse."""
        for path in (self.data_path, self.meta_path):
            try:
                path.unlink()
            except FileNotFoundError:
                pass

    def to_dict(self) -> dict[str, Any]:
        return {"version": VERSION, "target": asdict(self.target), "state": self.state, "pid": self.pid,
                "pid_start": self.pid_start, "error": self.error, "created": self.created,
                "updated": self.updated}

    def _save(self) -> None:
        self.updated = time.time()
        write_json(self.meta_path, self.to_dict())


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Atomically replace ``path`` (0600)."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


class Spool:
    """A folder of spool entries."""

    def __init__(self, root: Path) -> None:
        self.root = private_dir(Path(root))

    def create(self, target: Target, temp: bool = False) -> SpoolEntry:
        entry_id = secrets.token_hex(8)
        now = time.time()
        meta = {"version": VERSION, "target": asdict(target), "state": "temp" if temp else "open",
                "pid": os.getpid(), "pid_start": process_start(os.getpid()), "error": None,
                "created": now, "updated": now}
        write_json(self.root / f"{entry_id}.json", meta)
        fd = os.open(self.root / f"{entry_id}.data", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.close(fd)
        return SpoolEntry(self.root, entry_id, meta)

    def get(self, entry_id: str) -> SpoolEntry:
        path = self.root / f"{entry_id}.json"
        meta = self._read(path)
        if meta is None:
            raise KeyError(entry_id)
        return SpoolEntry(self.root, entry_id, meta)

    def entries(self) -> list[SpoolEntry]:
        found = []
        for path in sorted(self.root.glob("*.json")):
            meta = self._read(path)
            if meta is not None:
                found.append(SpoolEntry(self.root, path.stem, meta))
        return sorted(found, key=lambda e: e.created)

    def orphans(self) -> list[Path]:
        """Data files without a json (should not happen; reported, never deleted)."""
        return [p for p in sorted(self.root.glob("*.data")) if not p.with_suffix(".json").exists()]

    def unsent(self) -> list[SpoolEntry]:
        return [e for e in self.entries() if e.is_unsent()]

    def drop_dead_temps(self) -> int:
        dropped = 0
        for entry in self.entries():
            if entry.state == "temp" and not entry.alive():
                entry.remove()
                dropped += 1
        return dropped

    @staticmethod
    def _read(path: Path) -> dict[str, Any] | None:
        try:
            meta = json.loads(path.read_text())
            SpoolEntry(path.parent, path.stem, meta)  # every field an entry needs, of the right type
            if meta["state"] not in ("open", "unsent", "temp"):
                raise ValueError(meta["state"])
            return meta
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("spool: ignoring unreadable entry %s: %s", path.name, exc)
            return None
