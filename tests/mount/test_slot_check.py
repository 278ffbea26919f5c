"""What the mount knows of a slot before it replaces or deletes (``-o slot_check``, docs/SEMANTICS.md).

``recent`` (the default) takes the records index from a log poll begun at most
2 s before the change, and polls right then when none did; ``always`` asks
REDCap (one file-info call) before every change. Every check here is made
outside the mount: the sandbox's request log counts the calls, PyCap (a second
user's token) makes the colleague's change and reads what REDCap holds.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import redcap

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mounthelp import settle
from test_change_feed import ALICE, BOB, SLOT, after, file_calls, kept, probes, two_users, upload_as
from test_upload_failures import unsent
from test_write import server_file

from redcapfs.fs.recentpoll import RECENT


def imports_and_polls(sb: Any, mark: float) -> list[str]:
    """The order of Import File, Delete File, file-info and log calls since ``mark``."""
    out = []
    for call in after(sb, mark):
        if call.get("content") == "log":
            out.append("log")
        elif call.get("content") == "file":
            out.append("fileinfo" if call.get("fileinfo") else str(call.get("action")))
    return out


def cp(src: Path, dst: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["cp", str(src), str(dst)], capture_output=True, text=True, timeout=60)


def over_a_colleagues_upload(sb: Any, mount: Any, tmp_path: Path, options: str, name: str, theirs: bytes,
                             wait: float = 0.0) -> tuple[Any, float, subprocess.CompletedProcess[str]]:
    """Mount; a colleague fills the empty slot with ``name``; after ``wait`` s our cp of that name into it.
    Returns the mount, the moment just before the cp, and the cp."""
    m = mount(sb, options)
    slot_dir = m.path.joinpath(*SLOT)
    assert list(slot_dir.iterdir()) == []  # the mount sees the slot empty
    upload_as(sb, BOB, tmp_path, name, theirs)
    time.sleep(wait)
    src = tmp_path / name
    src.write_bytes(b"mine\n")
    mark = time.time()
    result = cp(src, slot_dir / name)
    settle(lambda: len(sb.calls()))
    return m, mark, result


def test_recent_polls_before_a_change_once_the_last_poll_is_old(sandbox: Any, mount: Any, tmp_path: Path) -> None:
    """A colleague's upload made after the last poll: the poll made before the close sees it (ESTALE, kept)."""
    sb = two_users(sandbox)
    m = mount(sb, "poll=30")  # no regular poll during the test: every poll below is one made for a change
    slot_dir = m.path.joinpath(*SLOT)
    mine = tmp_path / "mine-source.txt"
    mine.write_bytes(b"my version\n")
    time.sleep(RECENT + 0.3)  # the mount's first poll is now too old to vouch for the index
    mark = time.time()
    assert cp(mine, slot_dir / "mine.txt").returncode == 0
    settle(lambda: len(sb.calls()))
    assert imports_and_polls(sb, mark) == ["log", "import"]  # one poll, then the upload; no file-info call
    assert server_file(sb, SLOT[0], SLOT[2], SLOT[1]) == ("mine.txt", b"my version\n")

    theirs = b"the colleague's newer version\n" * 100
    upload_as(sb, BOB, tmp_path, "mine.txt", theirs)  # same name, after our upload
    time.sleep(RECENT + 0.3)
    mark = time.time()
    again = tmp_path / "second.txt"
    again.write_bytes(b"my second version\n")
    result = cp(again, slot_dir / "mine.txt")
    assert result.returncode != 0 and "Stale file handle" in result.stderr, result
    settle(lambda: len(sb.calls()))
    assert "import" not in imports_and_polls(sb, mark)
    assert server_file(sb, SLOT[0], SLOT[2], SLOT[1]) == ("mine.txt", theirs)  # the colleague's stays
    assert [(e["state"], e["name"]) for e in unsent(m)] == [("conflict", "mine.txt")]


def test_recent_keeps_what_a_poll_made_for_the_change_shows(sandbox: Any, mount: Any, tmp_path: Path) -> None:
    """A colleague fills an empty slot after the last poll: a cp of another name there is refused, a cp of the
    same name replaces it and the trash keeps theirs byte for byte."""
    sb = two_users(sandbox)
    m = mount(sb, "poll=30")
    slot_dir = m.path.joinpath(*SLOT)
    assert list(slot_dir.iterdir()) == []  # the mount sees the slot empty
    theirs = bytes(range(256)) * 300
    upload_as(sb, BOB, tmp_path, "scan.txt", theirs)
    time.sleep(RECENT + 0.3)
    src = tmp_path / "scan.txt"
    src.write_bytes(b"mine\n")
    mark = time.time()
    result = cp(src, slot_dir / "scan.txt")  # the mount still lists the slot as empty: a create
    settle(lambda: len(sb.calls()))
    calls = imports_and_polls(sb, mark)
    assert calls.count("log") == 1 and "fileinfo" not in calls, calls
    if result.returncode == 0:  # the poll came before the create's check? Then it replaced, and kept theirs
        assert server_file(sb, SLOT[0], SLOT[2], SLOT[1]) == ("scan.txt", b"mine\n")
        assert kept(m) == [("scan.txt", "replaced", theirs)]
    else:  # or the close was refused as a conflict: theirs stays on the server
        assert server_file(sb, SLOT[0], SLOT[2], SLOT[1]) == ("scan.txt", theirs), result
    assert theirs in {server_file(sb, SLOT[0], SLOT[2], SLOT[1])[1], *(k[2] for k in kept(m))}


def test_always_asks_before_each_change_even_a_moment_after_a_poll(sandbox: Any, mount: Any,
                                                                   tmp_path: Path) -> None:
    """``slot_check=always``: a colleague's upload a moment before our cp is kept (one file-info call each)."""
    sb = two_users(sandbox)
    theirs = b"uploaded a moment ago\n" * 50
    m, mark, result = over_a_colleagues_upload(sb, mount, tmp_path, "poll=30,slot_check=always", "report.txt",
                                               theirs)
    assert result.returncode == 0, result.stderr
    assert len(probes(sb, mark)) == 1
    assert server_file(sb, SLOT[0], SLOT[2], SLOT[1]) == ("report.txt", b"mine\n")
    assert kept(m) == [("report.txt", "replaced", theirs)]


def empty_slots(sb: Any, limit: int) -> list[tuple[str, str, str]]:
    """(record, event, field) of empty imaging slots, read through PyCap."""
    project = redcap.Project(sb.url, sb.token)
    rows = project.export_records(fields=["record_id", "mri_upload", "radiology_report"],
                                  events=["baseline_arm_1", "week_12_arm_1"])
    out = []
    for row in rows:
        if row.get("redcap_repeat_instrument"):
            continue
        for field in ("mri_upload", "radiology_report"):
            if not row.get(field):
                out.append((row["record_id"], row["redcap_event_name"], field))
    return sorted(set(out))[:limit]


def test_a_sequential_cp_r_shares_polls_instead_of_asking_per_file(sandbox: Any, mount: Any,
                                                                   tmp_path: Path) -> None:
    """``cp -r`` of many small files into empty slots: about one log poll per 2 s, no file-info call, every file
    stored with its bytes."""
    sb = two_users(sandbox)
    slots = empty_slots(sb, 12)
    assert len(slots) >= 8, slots
    m = mount(sb, "poll=30")
    src = tmp_path / "src"
    want = {}
    for n, (record, event, field) in enumerate(slots):
        folder = src / record / event / field
        folder.mkdir(parents=True)
        data = f"file {n} of the copy\n".encode() * (n + 1)
        (folder / f"f{n}.txt").write_bytes(data)
        want[(record, event, field)] = (f"f{n}.txt", data)
    mark = time.time()
    started = time.monotonic()
    result = subprocess.run(["cp", "-r", f"{src}/.", str(m.path)], capture_output=True, text=True, timeout=120)
    took = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    settle(lambda: len(sb.calls()))
    calls = imports_and_polls(sb, mark)
    assert calls.count("import") == len(slots) and "fileinfo" not in calls, calls
    assert calls.count("log") <= 1 + int(took / RECENT) + 1, (calls, took)
    assert [c for c in file_calls(after(sb, mark)) if c.get("action") == "export"] == []
    for (record, event, field), (name, data) in want.items():
        assert server_file(sb, record, field, event) == (name, data)


def test_a_failed_poll_falls_back_to_asking(sandbox: Any, mount: Any, tmp_path: Path) -> None:
    """The log export before a change fails: the slot is asked of REDCap (file-info) and nothing is lost."""
    faults = [a for n in range(2, 7) for a in ("--fault", f"content=log,nth={n},do=500")]  # every retry too
    sb = sandbox("--token", f"{ALICE}:full:alice", "--token", f"{BOB}:full:bob", *faults)
    theirs = b"theirs\n" * 40
    m, mark, result = over_a_colleagues_upload(sb, mount, tmp_path, "poll=30", "r.txt", theirs, RECENT + 0.3)
    assert result.returncode == 0, result.stderr
    assert len(probes(sb, mark)) == 1
    assert 1 <= len(after(sb, mark, content="log")) <= 5  # the poll (and retries), refused; not tried again
    assert server_file(sb, SLOT[0], SLOT[2], SLOT[1]) == ("r.txt", b"mine\n")
    assert kept(m) == [("r.txt", "replaced", theirs)]
