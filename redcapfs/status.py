"""The status file each mount keeps, and how ``redcapfs status`` reads it.

A mount process writes ``STATE/mounts/<key>.status.json`` (``key``: a hash of
the mountpoint, the same one that names its pid file) every second or so, and
at once when a transfer starts or ends; it removes the file at a clean
unmount. ``redcapfs status`` only reads these files, so it makes no API call
and needs no token, and a mount whose process died is still listed: its file
stays, and the pid check marks it ``dead``.

What the file holds is listed in ``docs/status.md``. It names records and
files being transferred, so like the spool it is 0600 in a 0700 folder,
created without following symlinks (``O_NOFOLLOW``, ``O_EXCL`` on a temp name)
and replaced atomically (rename), so a reader never sees half a file. It never
holds the token: nothing here is given it.

Keys are added by later features; readers take what is there
(``doc.get(key, default)``), and ``FORMAT`` changes only if a key changes meaning.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
import os
import re
import stat
import sys
import threading
from collections import Counter
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from redcapfs import __version__
from redcapfs.client.stats import ClientStats
from redcapfs.locations import normalize_url, private_dir, project_dir, state_root, state_root_path
from redcapfs.spool import pid_alive, process_start

log = logging.getLogger(__name__)

FORMAT = 1
INTERVAL = 1.0  # seconds between refreshes while mounted
MIN_GAP = 0.2  # at most this often when transfers start and end quickly
SUFFIX = ".status.json"


# ------------------------------------------------------------------ paths and files


def mounts_dir() -> Path:
    """``STATE/mounts``: pid files and status files, 0700."""
    return private_dir(state_root() / "mounts")


def mount_key(mountpoint: Path | str) -> str:
    """The file-name key of a mount: a hash, so no path shows in a folder listing."""
    return hashlib.sha256(str(mountpoint).encode()).hexdigest()[:16]


def status_path(mountpoint: Path | str) -> Path:
    return mounts_dir() / f"{mount_key(mountpoint)}{SUFFIX}"


def write_private_json(path: Path, data: Mapping[str, Any]) -> None:
    """Replace ``path`` atomically with 0600 JSON; never follows a symlink planted at either name."""
    folder = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    tmp = f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp"
    try:
        try:
            os.unlink(tmp, dir_fd=folder)  # a leftover of a crashed write
        except FileNotFoundError:
            pass
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600, dir_fd=folder)
        try:
            os.fchmod(fd, 0o600)  # exact, whatever the umask
            os.write(fd, json.dumps(data, indent=1, sort_keys=True).encode() + b"\n")
        finally:
            os.close(fd)
        os.replace(tmp, path.name, src_dir_fd=folder, dst_dir_fd=folder)
    finally:
        os.close(folder)


def read_private_json(path: Path) -> dict[str, Any] | None:
    """The JSON object in ``path`` if it is a regular file of ours that no one else can read; else None."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None  # gone (unmounted meanwhile) or a symlink
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o077:
            log.warning("ignoring %s: not a private regular file of ours", path)
            return None
        with os.fdopen(os.dup(fd), "rb") as fh:
            data = json.loads(fh.read())
    except (OSError, ValueError) as exc:
        log.warning("ignoring unreadable status file %s: %s", path, exc)
        return None
    finally:
        os.close(fd)
    return data if isinstance(data, dict) else None


# ------------------------------------------------------------------ what the writer measures


def folder_bytes(path: Path) -> int:
    """Bytes of the regular files under ``path`` (0 if it does not exist)."""
    total = 0
    try:
        with os.scandir(path) as it:
            for entry in it:
                try:
                    if entry.is_dir(follow_symlinks=False):
                        total += folder_bytes(Path(entry.path))
                    elif entry.is_file(follow_symlinks=False):
                        total += entry.stat(follow_symlinks=False).st_size
                except OSError:
                    continue  # removed while we looked
    except OSError:
        return 0
    return total


def spool_counts(spool: Path) -> dict[str, int]:
    """Spool entries by state; an ``open`` entry whose process died counts as ``unsent``.

    Read straight from the entries' JSON rather than through ``Spool`` so that
    states added later (``incomplete``, ``conflict``, …) are counted as they are
    named, and an entry without a state counts as ``unsent``: never hidden.
    """
    counts: Counter[str] = Counter()
    try:
        names = sorted(p for p in spool.glob("*.json"))
    except OSError:
        return {}
    for path in names:
        try:
            meta = json.loads(path.read_text())
        except FileNotFoundError:
            continue
        except (OSError, ValueError):
            counts["unreadable"] += 1
            continue
        state = str(meta.get("state") or "unsent") if isinstance(meta, dict) else "unreadable"
        if state == "open":
            try:
                alive = pid_alive(int(meta.get("pid", 0)), meta.get("pid_start"))
            except (TypeError, ValueError):
                alive = False
            state = "writing" if alive else "unsent"
        counts[state] += 1
    return dict(sorted(counts.items()))


def spool_summary(spool: Path) -> dict[str, Any]:
    """The ``unsent``, ``incomplete``, ``conflict`` and ``spool`` keys."""
    counts = spool_counts(spool)
    return {"unsent": counts.get("unsent", 0), "incomplete": counts.get("incomplete", 0),
            "conflict": counts.get("conflict", 0), "spool": counts}


def fuse_binding() -> str | None:
    """The FUSE binding and libfuse version this process uses, if a binding is loaded."""
    from importlib import metadata

    for name in ("mfusepy", "fuse"):
        module = sys.modules.get(name)
        if module is None:
            continue
        dist = "fusepy" if name == "fuse" else name
        try:
            text = f"{dist} {metadata.version(dist)}"
        except metadata.PackageNotFoundError:
            text = dist
        lib = getattr(module, "_libfuse", None)
        try:
            number = int(lib.fuse_version()) if lib is not None else None
        except (AttributeError, OSError, ValueError):
            number = None
        if number:
            major, minor = divmod(number, 10 if number < 100 else 100)  # 29 is 2.9, 314 is 3.14
            text += f", libfuse {major}.{minor}"
        path = getattr(module, "_libfuse_path", None)
        if path:
            text += f" ({os.path.basename(str(path))})"
        return text
    return None


_SECRET_WORDS = ("password", "secret", "passphrase")


def _is_secret(key: str) -> bool:
    """An option whose value could be a credential (none is today; a later one must not leak here)."""
    key = key.lower()
    return key in ("token", "api_token") or any(word in key for word in _SECRET_WORDS)


def redact_options(options: Mapping[str, Any], given: list[str]) -> tuple[dict[str, Any], list[str]]:
    """``options`` and the ``-o`` strings with any credential-like value replaced by ``***``."""
    clean = {k: ("***" if _is_secret(k) and v not in (None, "") else v) for k, v in options.items()}
    items = []
    for value in given:
        parts = []
        for item in str(value).split(","):
            key, sep, _ = item.partition("=")
            parts.append(f"{key}=***" if sep and _is_secret(key) else item)
        items.append(",".join(parts))
    return clean, items


def _iso(epoch: float) -> str:
    return _dt.datetime.fromtimestamp(epoch).astimezone().isoformat(timespec="seconds")


# ------------------------------------------------------------------ the writer


class StatusWriter:
    """Keeps one mount's status file fresh from a daemon thread.

    ``facts`` are the keys fixed for the mount's life; ``measure`` returns the
    changing ones. ``poke`` asks for an early refresh (a transfer began or
    ended); refreshes are at most every ``MIN_GAP`` seconds.
    """

    def __init__(self, path: Path, facts: Mapping[str, Any], measure: Callable[[], dict[str, Any]],
                 interval: float = INTERVAL) -> None:
        self.path = path
        self.facts = dict(facts)
        self.measure = measure
        self.interval = interval
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> StatusWriter:
        """Write once now (so ``status`` shows the mount as soon as it is ready), then keep refreshing."""
        self.refresh()
        self._thread = threading.Thread(target=self._run, name="redcapfs-status", daemon=True)
        self._thread.start()
        return self

    def poke(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        """Stop refreshing and remove the file (a clean unmount)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(5)
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:
            log.warning("could not remove the status file %s: %s", self.path, exc)

    def refresh(self) -> None:
        now = _dt.datetime.now().timestamp()
        doc = dict(self.facts)
        try:
            doc.update(self.measure())
        except Exception:
            log.exception("status: measuring failed")  # keep writing what is known
        doc.update(updated=_iso(now), updated_epoch=round(now, 3))
        try:
            write_private_json(self.path, doc)
        except OSError as exc:
            log.warning("could not write the status file %s: %s", self.path, exc)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.interval)
            if self._stop.is_set():
                break
            self._wake.clear()
            self.refresh()
            self._stop.wait(MIN_GAP)


def start_writer(
    *,
    mountpoint: Path | str,
    url: str,
    info: Mapping[str, Any],
    options: Mapping[str, Any],
    options_given: list[str],
    stats: ClientStats,
    cache_dir: Path,
    log_file: Path | None = None,
    extra: Mapping[str, Any] | None = None,
) -> StatusWriter:
    """Start the status file of the mount at ``mountpoint`` (call once FUSE is up); ``extra``: more fixed keys.

    A WebDAV share (``redcapfs serve webdav``) has one too: its ``mountpoint`` is the share's URL and
    ``extra`` says ``mode: webdav`` (see :func:`start_share_writer`).
    """
    project_id = str(info.get("project_id", ""))
    folder = project_dir(url, project_id)
    shown, shown_given = redact_options(options, options_given)
    pid = os.getpid()
    started = _dt.datetime.now().timestamp()
    facts = {
        "format": FORMAT, "mountpoint": str(mountpoint), "url": normalize_url(url), "project_id": project_id,
        "title": str(info.get("project_title", "")), "options": shown, "options_given": shown_given,
        "pid": pid, "pid_start": process_start(pid), "started": _iso(started), "started_epoch": round(started, 3),
        "binding": fuse_binding(), "redcapfs_version": __version__, "state_dir": str(folder),
        "log_file": str(log_file) if log_file else None, "cache_limit": options.get("cache_size"),
        "mode": "mount", **(extra or {}),
    }

    def measure() -> dict[str, Any]:
        values = stats.snapshot()
        values.update(spool_summary(folder / "spool"))
        values.update(cache_bytes=folder_bytes(cache_dir), trash_bytes=folder_bytes(folder / "trash"))
        return values

    writer = StatusWriter(status_path(mountpoint), facts, measure)
    stats.on_change = writer.poke
    return writer.start()


def start_share_writer(share_url: str, **kwargs: Any) -> StatusWriter:
    """The status file of a running ``serve webdav`` share: a mount's keys, ``mountpoint`` = the share's URL."""
    extra = {**(kwargs.pop("extra", None) or {}), "mode": "webdav", "share_url": share_url}
    return start_writer(mountpoint=share_url, extra=extra, **kwargs)


# ------------------------------------------------------------------ the reader


def mount_table() -> set[str] | None:
    """Mount points the kernel lists for this namespace, or None where there is no /proc."""
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as fh:
            lines = fh.read().splitlines()
    except OSError:
        return None
    points = set()
    for line in lines:
        parts = line.split(" ")
        if len(parts) > 4:
            points.add(re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), parts[4]))
    return points


def with_state(doc: dict[str, Any], table: set[str] | None) -> dict[str, Any]:
    """Add ``state`` (mounted / unmounting / dead) and ``kernel_mounted``; a dead mount's spool is re-read."""
    try:
        alive = pid_alive(int(doc.get("pid", 0)), doc.get("pid_start"))
    except (TypeError, ValueError):
        alive = False
    mountpoint = str(doc.get("mountpoint", ""))
    in_table = mountpoint in table if table is not None else os.path.ismount(mountpoint)
    doc = dict(doc)
    share = doc.get("mode") == "webdav"
    doc["kernel_mounted"] = in_table and not share  # a share's "mountpoint" is its URL
    if not alive:
        doc["state"] = "dead"
        doc["in_flight"] = []  # whatever it was sending died with it
        if doc.get("state_dir"):
            doc.update(spool_summary(Path(doc["state_dir"]) / "spool"))  # its open files are unsent now
    elif share:
        doc["state"] = "serving"
    else:
        doc["state"] = "mounted" if in_table else "unmounting"
    return doc


def read_all() -> list[dict[str, Any]]:
    """Every mount of this user (under this state folder), live or dead, by mountpoint."""
    if not (state_root_path() / "mounts").is_dir():
        return []  # no mount has run here: a look creates no state folders
    table = mount_table()
    docs = []
    for path in sorted(mounts_dir().glob(f"*{SUFFIX}")):  # mounts_dir() refuses a foreign or symlinked folder
        doc = read_private_json(path)
        if doc is not None:
            docs.append(with_state(doc, table))
    return sorted(docs, key=lambda d: str(d.get("mountpoint", "")))


def find(mountpoint: str) -> dict[str, Any] | None:
    """The status of the mount at ``mountpoint`` (as typed, or resolved), or of the share at that URL, or None."""
    wanted = {os.path.abspath(os.path.expanduser(mountpoint)), mountpoint, mountpoint.rstrip("/") + "/"}
    try:
        wanted.add(str(Path(mountpoint).expanduser().resolve()))
    except OSError:  # a dead FUSE mount answers ENOTCONN
        pass
    for doc in read_all():
        if doc.get("mountpoint") in wanted:
            return doc
    return None
