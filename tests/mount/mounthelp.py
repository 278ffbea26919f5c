"""Helpers for the real-mount tests: the expected tree, mount bookkeeping, request-log reading.

The expected tree is computed here from a ``ProjectDef`` alone, on purpose
without ``redcapfs.shape`` / ``redcapfs.paths``: a mount test that derived its
expectation from the code under test could only ever agree with it. The one
product function used is ``redcapfs.names.encode``, which is pure and has its
own unit tests, so using it does not make these tests circular.

The rules written out below are the contract from the issue ("browse and read"):

* records are those in the records export (rows, plus any record a stored file
  implies: the sandbox creates the row for a stored file);
* longitudinal: a record's events are all events of every arm in which it has
  any data; an event holds every file field (signature fields included) whose
  form is designated for that event; classic: every file field;
* an INSTANCE level exists where the field's form repeats in that event or the
  whole event repeats, listing the instances present in the records export;
* a slot directory lists its one file (name encoded) or is empty.
"""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from redcapfs.names import encode
from redcapfs.sandbox.project import ProjectDef, StoredFile

REPO = Path(__file__).resolve().parents[2]


# ------------------------------------------------------------------ expected tree


def _instance(raw: Any) -> int:
    """REDCap's reading of ``redcap_repeat_instance``: a positive whole number, else 1."""
    text = str(raw if raw is not None else "").strip()
    return int(text) if text.isdigit() and int(text) > 0 else 1


def expected_layout(pd: ProjectDef) -> tuple[dict[str, str], dict[str, StoredFile]]:
    """``({relative path: "d" or "f"}, {file path: StoredFile})`` for the whole mount.

    Paths are relative to the mount root, ``/``-separated, without a leading ``./``.
    """
    longitudinal = pd.longitudinal
    rid = pd.record_id_field
    form_of = {m["field_name"]: m["form_name"] for m in pd.metadata}
    file_fields = [m["field_name"] for m in pd.metadata if m["field_type"] == "file"]
    rep_events = {str(r.get("event_name") or "") for r in pd.repeating if not r.get("form_name")} \
        if longitudinal else set()
    rep_forms = {((str(r.get("event_name") or "") if longitudinal else ""), r["form_name"])
                 for r in pd.repeating if r.get("form_name")}

    def kind(event: str, form: str) -> str | None:
        if event in rep_events:
            return "event"
        if (event, form) in rep_forms:
            return "form"
        return None

    # rows[record] = {(event, repeat form or "", instance; 0 = ordinary row)}
    rows: dict[str, set[tuple[str, str, int]]] = {}
    for row in pd.records:
        rec = str(row[rid])
        ev = str(row.get("redcap_event_name") or "") if longitudinal else ""
        rform = str(row.get("redcap_repeat_instrument") or "")
        if rform:
            key = (ev, rform, _instance(row.get("redcap_repeat_instance")))
        elif ev in rep_events:
            key = (ev, "", _instance(row.get("redcap_repeat_instance")))
        else:
            key = (ev, "", 0)
        rows.setdefault(rec, set()).add(key)

    by_slot: dict[tuple[str, str, str, int | None], StoredFile] = {}
    for f in pd.files:
        ev = (f.event or "") if longitudinal else ""
        form = form_of[f.field]
        k = kind(ev, form)
        inst = int(f.repeat_instance or 1)
        if k == "event":
            rows.setdefault(f.record, set()).add((ev, "", inst))
        elif k == "form":
            rows.setdefault(f.record, set()).add((ev, form, inst))
        else:
            rows.setdefault(f.record, set()).add((ev, "", 0))
        by_slot[(f.record, ev, f.field, inst if k else None)] = f

    arm_of = {e["unique_event_name"]: int(e["arm_num"]) for e in pd.events}
    event_forms: dict[str, set[str]] = {}
    for m in pd.form_event_mapping:
        event_forms.setdefault(m["unique_event_name"], set()).add(m["form"])

    tree: dict[str, str] = {}
    files: dict[str, StoredFile] = {}
    for rec, keys in rows.items():
        rdir = encode(rec)
        tree[rdir] = "d"
        if longitudinal:
            arms = {arm_of[ev] for ev, _, _ in keys}
            events = [e["unique_event_name"] for e in pd.events if int(e["arm_num"]) in arms]
        else:
            events = [""]
        for ev in events:
            base = f"{rdir}/{ev}" if longitudinal else rdir
            tree[base] = "d"
            for fld in file_fields:
                form = form_of[fld]
                if longitudinal and form not in event_forms.get(ev, set()):
                    continue
                fdir = f"{base}/{fld}"
                tree[fdir] = "d"
                k = kind(ev, form)
                slots: list[tuple[str, int | None]] = []
                if k is None:
                    slots.append((fdir, None))
                else:
                    want = form if k == "form" else ""
                    for inst in sorted({i for e, rf, i in keys if e == ev and rf == want and i >= 1}):
                        tree[f"{fdir}/{inst}"] = "d"
                        slots.append((f"{fdir}/{inst}", inst))
                for sdir, inst in slots:
                    stored = by_slot.get((rec, ev, fld, inst))
                    if stored is not None:
                        path = f"{sdir}/{encode(stored.name)}"
                        tree[path] = "f"
                        files[path] = stored
    return tree, files


def expected_tree(pd: ProjectDef) -> set[str]:
    """Relative paths of every directory and file the mount of ``pd`` must show.

    The loaded projects have an empty File Repository, which the root lists as ``.repository``.
    """
    return set(expected_layout(pd)[0]) | {".repository"}


def expected_files(pd: ProjectDef) -> dict[str, StoredFile]:
    """Relative path of every file in the mount -> the stored file it shows."""
    return expected_layout(pd)[1]


def pycap_bytes(url: str, token: str, stored: StoredFile) -> bytes:
    """The file's bytes as PyCap (an independent client) downloads them."""
    from redcap import Project

    content, _headers = Project(url, token).export_file(
        record=stored.record, field=stored.field, event=stored.event, repeat_instance=stored.repeat_instance)
    return content


# ------------------------------------------------------------------ mounts


def _unescape_mountinfo(text: str) -> str:
    """mountinfo writes space, tab, newline and backslash as ``\\ooo``."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), text)


def mounted_paths() -> set[str]:
    """Every mount point in this mount namespace (from /proc/self/mountinfo)."""
    out = set()
    with open("/proc/self/mountinfo") as fh:
        for line in fh:
            parts = line.split(" ")
            if len(parts) > 4:
                out.add(_unescape_mountinfo(parts[4]))
    return out


def is_mounted(path: os.PathLike | str) -> bool:
    """Mounted per the kernel's table; unlike ``os.path.ismount`` also true for a dead FUSE mount."""
    return os.path.abspath(path) in mounted_paths()


def daemon_pids(mountpoint: os.PathLike | str) -> list[int]:
    """PIDs of ``redcapfs mount`` processes (ours) serving ``mountpoint``.

    Mount points are unique tmp paths, so a match is a process this test started.
    """
    target = os.path.abspath(mountpoint).encode()
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                argv = fh.read().split(b"\0")
        except OSError:
            continue
        if b"redcapfs" in b" ".join(argv) and b"mount" in argv and target in argv:
            pids.append(int(entry))
    return pids


def force_unmount(mountpoint: Path, env: dict[str, str] | None = None) -> list[str]:
    """Unmount by every means available and end our daemon; returns what had to be done.

    Order: the product's own ``unmount``; then ``fusermount3 -u -z``; then
    ``umount -l``. A test that failed half-way must still never leave a mount
    behind (a stale FUSE mount breaks later tests and tmp cleanup).
    """
    notes: list[str] = []
    mp = str(mountpoint)
    if is_mounted(mp):
        try:
            r = subprocess.run([sys.executable, "-m", "redcapfs", "unmount", mp], capture_output=True, text=True,
                               timeout=30, cwd=str(REPO), env=env)
            if r.returncode != 0:
                notes.append(f"redcapfs unmount exited {r.returncode}: {r.stderr.strip()}")
        except subprocess.TimeoutExpired:
            notes.append("redcapfs unmount timed out")
    for cmd in (["fusermount3", "-u", "-z", mp], ["umount", "-l", mp]):
        if not is_mounted(mp):
            break
        notes.append("fallback: " + " ".join(cmd[:-1]))
        subprocess.run(cmd, capture_output=True, timeout=30)
    deadline = time.monotonic() + 10
    while daemon_pids(mp) and time.monotonic() < deadline:
        time.sleep(0.1)
    for pid in daemon_pids(mp):
        notes.append(f"daemon {pid} still running after unmount: killed")
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return notes


# ------------------------------------------------------------------ request log


def downloads(calls: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """File-export calls that sent the file (not the ``fileinfo`` size probe)."""
    return [c for c in calls if c.get("content") == "file" and c.get("action") == "export"
            and not c.get("fileinfo")]


def settle(count: Callable[[], int], quiet: float = 0.4, limit: float = 10.0) -> int:
    """Wait until ``count()`` stops changing for ``quiet`` seconds.

    The sandbox writes a request-log line when a call *ends*, which can be just
    after the client already has the last byte; counting at once would race.
    """
    last = count()
    stable_since = time.monotonic()
    deadline = stable_since + limit
    while time.monotonic() < deadline:
        time.sleep(0.05)
        now = count()
        if now != last:
            last, stable_since = now, time.monotonic()
        elif time.monotonic() - stable_since >= quiet:
            break
    return last


def stored_names(sb: Any) -> list[str]:
    """Every document name the sandbox ever stored (deleted ones included), oldest first."""
    con = sqlite3.connect(f"file:{sb.data_dir / 'sandbox.sqlite3'}?mode=ro", uri=True)
    try:
        return [r[0] for r in con.execute("SELECT name FROM docs ORDER BY doc_id")]
    finally:
        con.close()


def errno_of(call: Any, *args: Any) -> int:
    """The errno a system call through the mount fails with (the test fails if it succeeds)."""
    import pytest

    with pytest.raises(OSError) as info:
        call(*args)
    assert info.value.errno is not None
    return info.value.errno


def held_writer(target: Path, block: bytes, count: int) -> subprocess.Popen[str]:
    """A process that writes ``count`` copies of ``block`` to ``target`` (O_CREAT|O_TRUNC), says so, and keeps
    the file open for a minute: the moment to kill the mount daemon mid-write or mid-upload."""
    proc = subprocess.Popen([sys.executable, "-c", f"""
import os, sys, time
block = bytes.fromhex(sys.stdin.readline().strip())
fd = os.open({str(target)!r}, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
for i in range({count}):
    os.write(fd, block)
print("wrote", flush=True)
time.sleep(60)
"""], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdin and proc.stdout
    proc.stdin.write(block.hex() + "\n")
    proc.stdin.flush()
    assert proc.stdout.readline().strip() == "wrote"
    return proc


def kill_mid_write(mnt: Any, writer: subprocess.Popen[str]) -> None:
    """kill -9 the mount daemon while ``writer`` (a :func:`held_writer`) holds its file open, then the writer,
    then clear the dead mount."""
    (pid,) = daemon_pids(mnt.path)
    os.kill(pid, signal.SIGKILL)
    writer.kill()
    writer.wait(10)
    force_unmount(mnt.path, mnt.env)
