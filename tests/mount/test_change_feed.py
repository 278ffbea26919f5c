"""REDCap's log as the change feed, and the manifest that makes a remount cost no file calls (issue 11).

Every check is independent of the mount's own view: the sandbox's request log
counts the calls, PyCap (with a second token of another user, "a colleague in
the web page") makes and checks the changes. Waits wait for a cause (a poll
that started after the colleague's change ended), never for a time.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import redcap

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mounthelp import REPO, settle
from test_write import run, server_file

ALICE = "A1" * 16
BOB = "B2" * 16
# The kernel keeps attributes and names for attr_timeout/entry_timeout (1 s by default; mfusepy offers no
# invalidation): these tests look at once after the poll, so they ask the kernel to keep nothing.
NO_KERNEL_CACHE = "poll=1,attr_timeout=0,entry_timeout=0"
SLOT = ("1001", "baseline_arm_1", "radiology_report")


def two_users(sandbox: Any) -> Any:
    return sandbox("--token", f"{ALICE}:full:alice", "--token", f"{BOB}:full:bob")


def file_calls(calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [c for c in calls if c.get("content") == "file"]


def after(sb: Any, mark: float, **match: Any) -> list[dict[str, Any]]:
    return [c for c in sb.calls(**match) if c["time"] > mark]


def wait_for_poll(sb: Any, mark: float, limit: float = 30.0) -> None:
    """Until a log export that started after ``mark`` has ended (the sandbox logs a call when it ends):
    the second one ending after ``mark`` started after it."""
    deadline = time.monotonic() + limit
    while len(after(sb, mark, content="log")) < 2:
        assert time.monotonic() < deadline, "no change-feed poll reached the server"
        time.sleep(0.1)
    settle(lambda: len(sb.calls()))


def listing(root: Path) -> list[tuple[str, int, int]]:
    """(path, size, mtime_ns) of every file, as `ls -lR` and rsync see them."""
    out = []
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            st = os.stat(os.path.join(dirpath, name))
            out.append((os.path.relpath(os.path.join(dirpath, name), root), st.st_size, st.st_mtime_ns))
    return sorted(out)


def colleague(sb: Any) -> redcap.Project:
    return redcap.Project(sb.url, BOB)


def upload_as(sb: Any, token: str, tmp_path: Path, name: str, data: bytes) -> None:
    path = tmp_path / name
    path.write_bytes(data)
    with open(path, "rb") as fh:
        redcap.Project(sb.url, token).import_file(record=SLOT[0], field=SLOT[2], file_name=name, file_object=fh,
                                                  event=SLOT[1])


def test_remount_then_ls_lR_asks_no_file_info(sandbox: Any, mount: Any) -> None:
    sb = sandbox()
    m = mount(sb, "poll=1")
    run("ls", "-lR", str(m.path))
    first = listing(m.path)
    assert first and len(file_calls(sb.calls())) >= len(first)  # sizes were asked once
    m.unmount()
    mark = time.time()
    m2 = mount(sb, "poll=1")
    run("ls", "-lR", str(m2.path))
    assert listing(m2.path) == first  # same sizes and times
    settle(lambda: len(sb.calls()))
    assert file_calls(after(sb, mark)) == [], file_calls(after(sb, mark))
    status = json.loads(subprocess.run([sys.executable, "-m", "redcapfs", "status", str(m2.path), "--json"],
                                       capture_output=True, text=True, cwd=str(REPO), env=m2.env,
                                       timeout=30).stdout)
    doc = status[0] if isinstance(status, list) else status
    assert doc["change_feed"] == "log"


def test_colleague_replace_same_name_and_size_is_seen_within_a_poll(sandbox: Any, mount: Any,
                                                                     tmp_path: Path) -> None:
    sb = two_users(sandbox)
    m = mount(sb, NO_KERNEL_CACHE)
    slot_dir = m.path.joinpath(*SLOT)
    upload_as(sb, ALICE, tmp_path, "report.txt", b"version one\n")
    wait_for_poll(sb, time.time())
    target = slot_dir / "report.txt"
    assert target.read_bytes() == b"version one\n"  # now cached in the mount
    old_mtime = target.stat().st_mtime_ns

    mark = time.time()
    upload_as(sb, BOB, tmp_path, "report.txt", b"version two\n")  # same name, same size
    wait_for_poll(sb, mark)
    assert target.read_bytes() == b"version two\n"
    assert server_file(sb, SLOT[0], SLOT[2], SLOT[1]) == ("report.txt", b"version two\n")
    assert target.stat().st_mtime_ns > old_mtime


def test_colleague_delete_makes_the_file_disappear(sandbox: Any, mount: Any, tmp_path: Path) -> None:
    sb = two_users(sandbox)
    m = mount(sb, NO_KERNEL_CACHE)
    upload_as(sb, ALICE, tmp_path, "gone.txt", b"to be deleted\n")
    wait_for_poll(sb, time.time())
    target = m.path.joinpath(*SLOT) / "gone.txt"
    assert target.read_bytes() == b"to be deleted\n"
    mark = time.time()
    colleague(sb).delete_file(record=SLOT[0], field=SLOT[2], event=SLOT[1])
    wait_for_poll(sb, mark)
    assert "gone.txt" not in os.listdir(m.path.joinpath(*SLOT))
    try:
        data = target.read_bytes()
    except OSError as exc:
        assert exc.errno == errno.ENOENT
    else:
        raise AssertionError(f"a deleted file was served: {data!r}")


def test_rsync_in_remount_rsync_again_copies_nothing_both_ways(sandbox: Any, mount: Any, tmp_path: Path) -> None:
    sb = sandbox()
    src = tmp_path / "src" / "1002" / "baseline_arm_1" / "radiology_report"
    src.mkdir(parents=True)
    (src / "scan.txt").write_bytes(b"scan notes\n" * 100)
    m = mount(sb, "poll=1")
    run("rsync", "-a", f"{tmp_path / 'src'}/", f"{m.path}/")
    out = tmp_path / "out"
    run("rsync", "-a", f"{m.path}/", f"{out}/")
    m.unmount()
    mark = time.time()
    m2 = mount(sb, "poll=1")
    again_in = run("rsync", "-a", "--stats", f"{tmp_path / 'src'}/", f"{m2.path}/")
    assert "Number of regular files transferred: 0" in again_in.stdout, again_in.stdout
    again_out = run("rsync", "-a", "--stats", f"{m2.path}/", f"{out}/")
    assert "Number of regular files transferred: 0" in again_out.stdout, again_out.stdout
    settle(lambda: len(sb.calls()))
    assert file_calls(after(sb, mark)) == [], file_calls(after(sb, mark))


def test_a_records_change_without_files_costs_no_file_call(sandbox: Any, mount: Any) -> None:
    sb = two_users(sandbox)
    m = mount(sb, "poll=1")
    run("ls", "-lR", str(m.path))
    settle(lambda: len(sb.calls()))
    mark = time.time()
    colleague(sb).import_records([{"record_id": "1001", "redcap_event_name": "baseline_arm_1",
                                   "weight_kg": "62"}])
    wait_for_poll(sb, mark)
    records = after(sb, mark, content="record")
    assert records and all(c.get("action") in (None, "export") for c in records)
    run("ls", "-lR", str(m.path))
    settle(lambda: len(sb.calls()))
    assert file_calls(after(sb, mark)) == [], file_calls(after(sb, mark))


def test_two_mounts_one_file_the_later_close_is_estale(sandbox: Any, mount: Any, tmp_path: Path) -> None:
    sb = two_users(sandbox)
    upload_as(sb, ALICE, tmp_path, "shared.txt", b"original\n")
    mine = mount(sb, "poll=1")
    theirs = mount(sb, "poll=1", env={"REDCAP_API_TOKEN": BOB, "REDCAPFS_STATE_DIR": str(tmp_path / "bob")})
    path_mine = mine.path.joinpath(*SLOT) / "shared.txt"
    path_theirs = theirs.path.joinpath(*SLOT) / "shared.txt"

    fd = os.open(path_mine, os.O_WRONLY | os.O_TRUNC)
    os.write(fd, b"alice's edit\n")
    mark = time.time()
    path_theirs.write_bytes(b"bob's edit\n")  # the colleague's close uploads first
    wait_for_poll(sb, mark)
    imports_before = len(sb.calls(content="file", action="import"))
    try:
        os.close(fd)
    except OSError as exc:
        assert exc.errno == errno.ESTALE, exc
    else:
        raise AssertionError("the later close replaced a colleague's newer version")
    assert server_file(sb, SLOT[0], SLOT[2], SLOT[1]) == ("shared.txt", b"bob's edit\n")
    settle(lambda: len(sb.calls()))
    assert len(sb.calls(content="file", action="import")) == imports_before  # nothing was sent
    r = run(sys.executable, "-m", "redcapfs", "unsent", "--json", cwd=str(REPO), env=mine.env)
    entries = [e for e in json.loads(r.stdout) if e["name"] == "shared.txt"]
    assert [e["state"] for e in entries] == ["conflict"], r.stdout
    assert Path(entries[0]["data_path"]).read_bytes() == b"alice's edit\n"


def test_without_the_logging_right_the_mount_falls_back_to_ttls(sandbox: Any, mount: Any) -> None:
    carol = "C3" * 16
    sb = sandbox("--token", f"{ALICE}:full:alice", "--token", f"{carol}:full:carol")
    redcap.Project(sb.url, carol).export_version()  # carol joins the project
    redcap.Project(sb.url, ALICE).import_users([{"username": "carol", "logging": 0}])
    m = mount(sb, "poll=1", env={"REDCAP_API_TOKEN": carol})
    assert "no Logging right" in m.stderr, m.describe()
    status = json.loads(subprocess.run([sys.executable, "-m", "redcapfs", "status", str(m.path), "--json"],
                                       capture_output=True, text=True, cwd=str(REPO), env=m.env,
                                       timeout=30).stdout)
    doc = status[0] if isinstance(status, list) else status
    assert doc["change_feed"] == "ttl"
    run("ls", "-lR", str(m.path))
    m.unmount()
    mark = time.time()
    m2 = mount(sb, "poll=1", env={"REDCAP_API_TOKEN": carol})
    run("ls", "-lR", str(m2.path))
    settle(lambda: len(sb.calls()))
    # Without the log nothing vouches for the stored sizes: they are asked again, never trusted blindly.
    assert file_calls(after(sb, mark)), "sizes from an earlier mount were trusted without the change feed"


def test_a_design_change_in_the_log_reloads_the_design(sandbox: Any, mount: Any) -> None:
    sb = two_users(sandbox)
    m = mount(sb, NO_KERNEL_CACHE)
    event_dir = m.path / "1001" / "baseline_arm_1"
    assert "extra_scan" not in os.listdir(event_dir)
    project = colleague(sb)
    metadata = project.export_metadata()
    form = next(row["form_name"] for row in metadata if row["field_name"] == SLOT[2])
    added = dict(next(row for row in metadata if row["field_name"] == SLOT[2]), field_name="extra_scan",
                 field_label="Extra scan")
    mark = time.time()
    project.import_metadata(metadata + [added])
    assert form in {row["form_name"] for row in project.export_metadata() if row["field_name"] == "extra_scan"}
    wait_for_poll(sb, mark)
    settle(lambda: len(sb.calls()))
    assert "extra_scan" in os.listdir(event_dir)
    assert after(sb, mark, content="metadata"), "the design was not read again"


def test_log_times_in_another_zone_than_the_mounts(sandbox: Any, mount: Any, tmp_path: Path) -> None:
    """The sandbox writes the log in its own zone (this test's, UTC here); the mount runs at UTC+5:45.

    A colleague's upload takes the moment it was made (not one shifted by the zones' difference), and our
    own write is still told from a colleague's: the time we set on it stays.
    """
    sb = two_users(sandbox)
    m = mount(sb, NO_KERNEL_CACHE, env={"TZ": "NPT-5:45"})
    wait_for_poll(sb, time.time())
    slot_dir = m.path.joinpath(*SLOT)
    mark = time.time()
    upload_as(sb, BOB, tmp_path, "zoned.txt", b"from the web page\n")
    made = time.time()
    wait_for_poll(sb, mark)
    mtime = (slot_dir / "zoned.txt").stat().st_mtime
    assert mark - 61 <= mtime <= made + 1, (mtime, mark)  # the log's minute of the upload, in true time

    mark = time.time()
    (slot_dir / "zoned.txt").write_bytes(b"our edit\n")
    os.utime(slot_dir / "zoned.txt", (1_577_836_800, 1_577_836_800))  # 2020-01-01: ours outranks the log's
    wait_for_poll(sb, mark)
    wait_for_poll(sb, time.time())
    assert (slot_dir / "zoned.txt").stat().st_mtime == 1_577_836_800
    assert server_file(sb, SLOT[0], SLOT[2], SLOT[1]) == ("zoned.txt", b"our edit\n")
    (slot_dir / "zoned.txt").write_bytes(b"our second edit\n")  # not refused as a colleague's newer version
    assert server_file(sb, SLOT[0], SLOT[2], SLOT[1]) == ("zoned.txt", b"our second edit\n")


def probes(sb: Any, mark: float) -> list[dict[str, Any]]:
    """File-info calls since ``mark``: what the slot holds asked of REDCap."""
    return [c for c in file_calls(after(sb, mark)) if c.get("fileinfo")]


def kept(mnt: Any) -> list[tuple[str, str, bytes]]:
    """(name, why, bytes) of every version in the mount's local trash."""
    from test_trash_restore import trash_dir, trash_rows

    return sorted((r["name"], r["why"], (trash_dir(mnt) / f"{r['id']}.data").read_bytes()) for r in trash_rows(mnt))


def test_with_the_feed_a_cp_asks_no_probe_and_still_keeps_the_old(sandbox: Any, mount: Any,
                                                                   tmp_path: Path) -> None:
    """With the feed on and a recent poll, the index says what a slot holds: no file-info call before a cp."""
    sb = two_users(sandbox)
    m = mount(sb, "poll=1,slot_check=feed")
    slot_dir = m.path.joinpath(*SLOT)
    wait_for_poll(sb, time.time())
    mine = tmp_path / "source-of-mine.txt"
    mine.write_bytes(b"into an empty slot\n")
    mark = time.time()
    run("cp", str(mine), str(slot_dir / "mine.txt"))  # an empty slot, known empty: nothing to keep
    assert server_file(sb, SLOT[0], SLOT[2], SLOT[1]) == ("mine.txt", b"into an empty slot\n")
    settle(lambda: len(sb.calls()))
    assert probes(sb, mark) == [], probes(sb, mark)
    assert kept(m) == []

    theirs = os.urandom(70_000)
    mark = time.time()
    upload_as(sb, BOB, tmp_path, "mine.txt", theirs)  # a colleague replaces it; the next poll shows it
    wait_for_poll(sb, mark)
    assert (slot_dir / "mine.txt").stat().st_size == len(theirs)  # the new size is learnt (cp stats it first)
    mark = time.time()
    run("cp", str(mine), str(slot_dir / "mine.txt"))  # over the colleague's version: kept byte for byte
    settle(lambda: len(sb.calls()))
    assert probes(sb, mark) == [], probes(sb, mark)
    assert len(after(sb, mark, content="file", action="export")) == 1  # the one download the trash needs
    assert server_file(sb, SLOT[0], SLOT[2], SLOT[1]) == ("mine.txt", b"into an empty slot\n")
    assert kept(m) == [("mine.txt", "replaced", theirs)]


def test_without_the_feed_a_cp_over_a_file_probes_first(sandbox: Any, mount: Any, tmp_path: Path) -> None:
    """Today's behaviour without the log: the slot is asked of REDCap before the replace (one file-info call)."""
    sb = two_users(sandbox)
    upload_as(sb, BOB, tmp_path, "old.txt", b"old version\n")
    m = mount(sb, "poll=0")
    src = tmp_path / "new.txt"
    src.write_bytes(b"new version\n")
    assert (m.path.joinpath(*SLOT) / "old.txt").stat().st_size == len(b"old version\n")  # size learnt first
    mark = time.time()
    run("cp", str(src), str(m.path.joinpath(*SLOT) / "old.txt"))
    settle(lambda: len(sb.calls()))
    assert len(probes(sb, mark)) == 1
    assert kept(m) == [("old.txt", "replaced", b"old version\n")]


def project_file_count(sb: Any) -> int:
    """Filled file fields in the project, counted through PyCap (not through the mount)."""
    project = redcap.Project(sb.url, sb.token)
    fields = {f["field_name"] for f in project.export_metadata() if f["field_type"] == "file"}
    return sum(1 for row in project.export_records() for k, v in row.items() if k in fields and v)


def test_a_server_without_file_info_is_said_once_at_mount_with_how_many_files(sandbox: Any, mount: Any,
                                                                              tmp_path: Path) -> None:
    """The first size lookup shows the server lacks the call (no call of its own); every later mount says so."""
    sb = sandbox("--no-fileinfo")
    upload_as(sb, sb.token, tmp_path, "one.txt", b"one\n")
    total = project_file_count(sb)
    assert total >= 2
    m = mount(sb, "poll=1")
    assert "no file-info call" not in m.stderr  # a first mount cannot know without asking
    assert (m.path.joinpath(*SLOT) / "one.txt").stat().st_size == 4  # its size needs the file itself
    m.unmount()
    assert "no file-info call" in m.log, m.describe()  # said in the log the moment it showed
    mark = time.time()
    m2 = mount(sb, "poll=1")
    notes = [line for line in m2.stderr.splitlines() if "no file-info call" in line]
    assert len(notes) == 1 and f"{total - 1} of the {total} files" in notes[0], m2.describe()
    settle(lambda: len(sb.calls()))
    assert file_calls(after(sb, mark)) == []  # said from what the last mount learnt: no call to know it


def test_a_server_with_file_info_says_nothing_of_sizes(sandbox: Any, mount: Any) -> None:
    sb = sandbox()
    m = mount(sb, "poll=1")
    assert "no file-info call" not in m.stderr, m.describe()
