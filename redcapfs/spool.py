"""The spool: bytes written through the mount, on local disk until REDCap has them.

Every writable open gets an entry: ``<id>.json`` (where the bytes go, the state,
the owning process) and ``<id>.data`` (the bytes, written by the mount through
its own descriptor). Both are 0600 in a 0700 folder. Because the data is on
disk from the first ``write``, a crash or ``kill -9`` of the mount loses nothing.

The json's ``state``:

* ``open``: being written (or uploaded) by a live mount;
* ``unsent``: the upload failed (REDCap's message is kept in ``error``);
* ``temp``: a tool's temporary file, never meant to be uploaded;
* ``conflict``: not to be sent without ``retry --force`` (set by whoever finds
  the slot changed behind the writer's back).

Beside it, three facts tell a complete file from a half-written one, each
written before the bytes or the server can move past it:

* ``final``: the data file holds a version its writer closed (or fsynced: that
  is when the mount uploads) of ``final_size`` bytes; cleared by
  :meth:`SpoolEntry.writing` before any byte changes. ``synced`` says those
  bytes are also flushed to disk; an upload does not wait for that (the fsync
  of a large file costs about as much as sending it on loopback, so it runs
  beside the upload) and ``boot`` names the boot they were written in: until
  ``synced`` only that boot's page cache holds them, which outlives a killed
  mount but not a power cut (then they are ``incomplete``);
* ``attempted``: when an upload of these bytes began; once set, REDCap may
  have them even if no answer came, so ``retry`` looks at the slot first;
* ``delivered``: REDCap accepted these bytes.

:meth:`SpoolEntry.status` turns them into what ``redcapfs unsent`` shows:
``unsent`` (complete, refused or not delivered), ``incomplete`` (its writer
never closed it: the owner died first, or the bytes on disk are not the size
recorded at close) or ``conflict``. A crash at any point leaves ``final``
false or a state that says an upload may have happened, never a half-written
file marked complete. An owner is dead when its pid is gone, a zombie, or
reused by another process (told apart by the process start time). The json is
always replaced atomically (write, fsync, rename), and it is written before the
data file exists and removed after it, so a data file is never without its target.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from redcapfs.locations import private_dir
from redcapfs.procid import boot_id, pid_alive, process_start  # re-exported: clean, session, status use them

__all__ = ["Spool", "SpoolEntry", "Target", "boot_id", "pid_alive", "process_start", "write_json"]

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
    # A File Repository document (``.repository``) instead of a slot: ``folder`` is its folder's path below
    # ``.repository`` ("" for the top level), ``folder_id`` REDCap's id of it (None: top level), ``doc_id`` the
    # document (a trash entry's version), ``replaces`` the document an upload is to replace (an overwrite).
    folder: str | None = None
    folder_id: int | None = None
    doc_id: int | None = None
    replaces: int | None = None

    @property
    def is_repository(self) -> bool:
        return self.folder is not None

    def describe(self) -> str:
        """``record/event/field[/instance]/name`` (``.repository/folder/name``) for listings and logs."""
        if self.folder is not None:
            return "/".join([".repository"] + ([self.folder] if self.folder else []) + [self.name])
        parts = [self.record] + ([self.event] if self.event else []) + [self.field]
        if self.instance is not None:
            parts.append(str(self.instance))
        return "/".join(parts + [self.name])


STATES = ("open", "unsent", "temp", "conflict")


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
        # Entries from before these fields: only a refused upload was known complete.
        self.final: bool = bool(meta.get("final", self.state == "unsent"))
        size = meta.get("final_size")
        self.final_size: int | None = None if size is None else int(size)
        attempted = meta.get("attempted")
        self.attempted: float | None = None if attempted is None else float(attempted)
        self.delivered: bool = bool(meta.get("delivered", False))
        self.synced: bool = bool(meta.get("synced", True))  # entries from before the field were fsynced first
        self.boot: str | None = meta.get("boot")
        self._syncing: threading.Thread | None = None  # the fsync running beside an upload
        self._sync_error: OSError | None = None

    def size(self) -> int:
        try:
            return self.data_path.stat().st_size
        except FileNotFoundError:
            return 0

    def alive(self) -> bool:
        """Whether the process that owns this entry is still running."""
        return pid_alive(self.pid, self.pid_start)

    def status(self) -> str | None:
        """``unsent``, ``incomplete`` or ``conflict``; None for entries nobody needs to act on.

        None: a tool's temporary file, bytes REDCap accepted, or a file a live
        mount is still writing or uploading (it owns it until it closes).
        """
        if self.state == "conflict":
            return "conflict"
        if self.delivered:
            return None
        if self.state == "temp" and self.attempted is None:
            return None  # a temporary file; one renamed onto a real name has an upload attempt
        if self.state in ("open", "temp") and self.alive():
            return None
        if not self.final:
            return "incomplete"
        if self.final_size is not None and self.size() != self.final_size:
            return "incomplete"  # the disk lost bytes after the close (power cut): never send as complete
        if not self.synced and self.boot != boot_id():
            return "incomplete"  # never flushed, and the machine restarted since: the bytes may be damaged
        return "unsent"

    def is_unsent(self) -> bool:
        """Kept for someone to act on: unsent, incomplete or conflict."""
        return self.status() is not None

    def may_be_delivered(self) -> bool:
        """An upload of these bytes began: REDCap may have them although no success was recorded."""
        return self.attempted is not None

    # ------------------------------------------------------------ state changes
    def writing(self) -> None:
        """Call before changing the bytes: from now on they are not a closed version.

        Costs one json write only when the entry was marked final or delivered.
        """
        if self.final or self.delivered:
            self.final, self.delivered = False, False
            self._save()

    def mark_sending(self, flush: bool = True) -> None:
        """Call just before an upload: the bytes are final and may reach REDCap.

        Their fsync starts in the background and runs while they are sent: a
        kill of the mount meanwhile loses nothing (the page cache keeps them),
        and a failed upload waits for it before it says they are kept.
        ``flush=False`` (a streamed upload, whose bytes are all but sent
        already) starts none: the upload ends in a moment, and only a failure
        needs them on disk (:meth:`mark_unsent` flushes them then).
        """
        self._make_final(sync=False)
        self.attempted, self.delivered = time.time(), False
        self._save(sync=False)
        if not self.synced and flush:
            self._sync_error = None
            self._syncing = threading.Thread(target=self._fsync_data, name="spool-fsync", daemon=True)
            self._syncing.start()

    def mark_sent(self) -> None:
        """Call when REDCap accepted the upload: nothing is left to send unless the bytes change."""
        self.delivered = True
        thread = self._syncing
        if thread is not None and not thread.is_alive() and self._sync_error is None:
            self.synced, self._syncing = True, None  # REDCap has them: no need to wait for the disk
        self._save(sync=False)

    def mark_unsent(self, error: str) -> None:
        """The upload failed at a close (or fsync): the bytes are what the writer closed, flushed to disk."""
        self._make_final()
        self._wait_synced()
        self.state, self.error = "unsent", error
        self._save()

    def mark_attempt(self) -> None:
        """Call before an upload the user asked for (``retry``): REDCap may have it from now on.

        Unlike :meth:`mark_sending` it leaves ``final`` alone: an incomplete
        file sent with ``--incomplete`` stays incomplete if that send fails.
        """
        self.attempted = time.time()
        self._save()

    def note_error(self, error: str) -> None:
        """Record why the latest send failed, without changing what the entry is."""
        self.error = error
        self._save()

    def mark_conflict(self, error: str) -> None:
        """Not to be sent without ``retry --force`` (the slot changed behind the writer's back)."""
        self.state, self.error = "conflict", error
        self._save()

    def mark_open(self) -> None:
        self.state, self.error = "open", None
        self.final, self.delivered = False, False
        self.synced, self.boot = True, None
        self.pid, self.pid_start = os.getpid(), process_start(os.getpid())
        self._save()

    def retarget(self, target: Target, temp: bool) -> None:
        self.target = target
        self.state = "temp" if temp else "open"
        if temp:
            self.attempted = None  # a temporary file again, not an upload
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
                "updated": self.updated, "final": self.final, "final_size": self.final_size,
                "attempted": self.attempted, "delivered": self.delivered, "synced": self.synced,
                "boot": self.boot}

    def _make_final(self, sync: bool = True) -> None:
        """The bytes are a closed version; with ``sync`` flushed to disk before the json says so.

        Without ``sync`` the json says ``synced: false`` and this boot's id, so
        that after a power cut the version shows as incomplete, never as complete.
        """
        if self.final:
            return
        try:
            fd = os.open(self.data_path, os.O_RDONLY)
        except FileNotFoundError:
            return  # nothing to make final; status() reports the missing bytes as incomplete
        try:
            if sync:
                os.fsync(fd)
            self.final_size = os.fstat(fd).st_size
        finally:
            os.close(fd)
        self.final, self.synced, self.boot = True, sync, None if sync else boot_id()

    def _fsync_data(self) -> None:
        """The background flush of a version being uploaded (its outcome is read by :meth:`_wait_synced`)."""
        try:
            fd = os.open(self.data_path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:  # a later fsync would not report a lost writeback again: remember it
            log.warning("spool: flushing %s to disk failed: %s", self.id, exc)
            self._sync_error = exc

    def _wait_synced(self) -> None:
        """The final bytes on disk: the background fsync's outcome, or a flush now."""
        thread, self._syncing = self._syncing, None
        if thread is not None:
            thread.join()
            if self._sync_error is None:
                self.synced = True
            else:
                self.final = False  # the disk may have lost them: never shown as complete
        elif self.final and not self.synced:
            self.final = False
            self._make_final(sync=True)

    def _save(self, sync: bool = True) -> None:
        """Write the json; ``sync=False`` where losing it to a power cut leaves a more cautious state.

        Each of those writes only moves an entry forward (open -> sending ->
        delivered); the json before it says "incomplete" or "may be on the
        server", both of which ``redcapfs retry`` checks, so its fsync (a
        journal commit, 1-3 ms on the critical path of every small upload)
        buys nothing. A kill of the mount loses no json either way. States a
        user is told about (unsent, conflict) are synced.
        """
        self.updated = time.time()
        write_json(self.meta_path, self.to_dict(), sync=sync)


def write_json(path: Path, data: dict[str, Any], sync: bool = True) -> None:
    """Atomically replace ``path`` (0600); ``sync=False`` skips the fsync (see ``SpoolEntry._save``)."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh)
        fh.flush()
        if sync:
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
                "created": now, "updated": now, "final": False, "final_size": None, "attempted": None,
                "delivered": False}
        write_json(self.root / f"{entry_id}.json", meta, sync=False)  # "open": after a power cut, incomplete
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
        """Entries kept for the user: unsent, incomplete or conflict (see :meth:`SpoolEntry.status`)."""
        return [e for e in self.entries() if e.is_unsent()]

    def drop_dead_temps(self) -> int:
        """Remove what dead mounts left that nobody needs: temporary files, copies REDCap accepted."""
        dropped = 0
        for entry in self.entries():
            temp = entry.state == "temp" and entry.attempted is None
            if (temp or entry.delivered) and entry.state != "conflict" and not entry.alive():
                entry.remove()
                dropped += 1
        return dropped

    @staticmethod
    def _read(path: Path) -> dict[str, Any] | None:
        try:
            meta = json.loads(path.read_text())
            SpoolEntry(path.parent, path.stem, meta)  # every field an entry needs, of the right type
            if meta["state"] not in STATES:
                raise ValueError(meta["state"])
            return meta
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("spool: ignoring unreadable entry %s: %s", path.name, exc)
            return None
