"""``redcapfs status`` against real mounts of the sandbox.

What status says is checked against independent sources: the sandbox's
request log for the call count, PyCap's project info for URL and title, the
daemon's pid from /proc, ``redcapfs unsent`` for unsent files, and the kernel's
mount table. Waiting is always for a condition (a status refresh newer than
the moment the calls ended, an upload that reached the server), never a sleep
that hopes to be long enough.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mounthelp import REPO, daemon_pids, is_mounted, settle

redcap = pytest.importorskip("redcap")

SLOT = ("1001", "baseline_arm_1", "radiology_report")  # empty in the demo project
KEYS = {"mountpoint", "url", "project_id", "title", "options", "in_flight", "unsent", "incomplete", "conflict",
        "calls", "rate", "cache_bytes", "trash_bytes", "pid", "started", "binding", "state"}


def cli(mnt: Any, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "redcapfs", *args], capture_output=True, text=True,
                          env=mnt.env, cwd=str(REPO), timeout=60)


def status_json(mnt: Any, *args: str) -> list[dict[str, Any]]:
    result = cli(mnt, "status", "--json", *args)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def mine(mnt: Any) -> dict[str, Any]:
    """This mount's status object."""
    docs = [d for d in status_json(mnt) if d["mountpoint"] == str(mnt.path)]
    assert len(docs) == 1, docs
    return docs[0]


def refreshed_after(mnt: Any, moment: float, limit: float = 30.0) -> dict[str, Any]:
    """The mount's status once it was written after ``moment`` (epoch seconds)."""
    deadline = time.monotonic() + limit
    while True:
        doc = mine(mnt)
        if doc["updated_epoch"] > moment:
            return doc
        assert time.monotonic() < deadline, f"status never refreshed after {moment}: {doc}"
        time.sleep(0.1)


def wait_status(mnt: Any, cond: Any, what: str, limit: float = 30.0) -> dict[str, Any]:
    deadline = time.monotonic() + limit
    while True:
        doc = mine(mnt)
        if cond(doc):
            return doc
        assert time.monotonic() < deadline, f"status never showed {what}: {doc}"
        time.sleep(0.05)


def status_file(mnt: Any) -> Path:
    folder = Path(mnt.env["REDCAPFS_STATE_DIR"]) / "mounts"
    files = [p for p in folder.glob("*.status.json")
             if json.loads(p.read_text())["mountpoint"] == str(mnt.path)]
    assert len(files) == 1
    return files[0]


def test_status_json_describes_the_mount(sandbox, mount) -> None:
    sb = sandbox()
    mnt = mount(sb, "rate=50,timeout=30")
    doc = mine(mnt)
    assert not KEYS - set(doc), KEYS - set(doc)
    assert doc["state"] == "mounted" and doc["kernel_mounted"] is True
    assert doc["url"] == sb.url
    assert [doc["pid"]] == daemon_pids(mnt.path)
    assert doc["options"]["rate"] == 50.0 and doc["options"]["timeout"] == 30.0
    assert doc["options_given"] == ["rate=50,timeout=30"]
    assert doc["rate"]["limit"] == 50.0
    assert "fusepy" in doc["binding"] and "libfuse" in doc["binding"]
    assert doc["in_flight"] == [] and doc["unsent"] == 0 and doc["trash_bytes"] == 0
    path = status_file(mnt)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert sb.token not in path.read_text()

    target = next(p for p in sorted(mnt.path.rglob("*")) if p.is_file())
    data = target.read_bytes()
    calls = settle(lambda: len(sb.calls()))
    doc = refreshed_after(mnt, time.time())
    assert doc["calls"]["total"] == calls, (doc["calls"], sb.calls())
    exports = len(sb.calls(content="file", action="export"))
    assert doc["calls"]["by_kind"].get("file/export", 0) == exports
    assert doc["transfers"]["download"]["bytes"] == len(data)
    assert doc["cache_bytes"] == len(data)

    info = redcap.Project(sb.url, sb.token).export_project_info()  # after the count: PyCap calls are logged too
    assert doc["title"] == info["project_title"]
    assert doc["project_id"] == str(info["project_id"])
    only = status_json(mnt, str(mnt.path))
    assert len(only) == 1 and only[0]["mountpoint"] == str(mnt.path)
    text = cli(mnt, "status", str(mnt.path))
    assert text.returncode == 0 and info["project_title"] in text.stdout and "mounted" in text.stdout


def test_an_unsent_upload_is_counted(sandbox, mount, tmp_path) -> None:
    sb = sandbox("--fault", "content=file,action=import,nth=1,do=500")
    mnt = mount(sb)
    src = tmp_path / "ecg.bin"
    src.write_bytes(os.urandom(100_000))
    cp = subprocess.run(["cp", str(src), str(mnt.path.joinpath(*SLOT))], capture_output=True, text=True)
    assert cp.returncode != 0
    unsent = json.loads(cli(mnt, "unsent", "--json").stdout)
    assert len(unsent) == 1
    doc = refreshed_after(mnt, time.time())
    assert doc["unsent"] == 1 and doc["spool"].get("unsent") == 1
    assert doc["calls"]["failed"] >= 1
    text = cli(mnt, "status").stdout
    assert "unsent 1" in text


def test_an_upload_in_flight_shows_bytes_done(sandbox, mount, tmp_path) -> None:
    sb = sandbox("--fault", "content=file,action=import,nth=1,do=hang,seconds=8")
    mnt = mount(sb, "timeout=30")
    src = tmp_path / "scan.bin"
    src.write_bytes(os.urandom(4 << 20))
    cp = subprocess.Popen(["cp", str(src), str(mnt.path.joinpath(*SLOT))], stderr=subprocess.PIPE, text=True)
    try:
        doc = wait_status(mnt, lambda d: any(t["kind"] == "upload" and t["bytes_done"] > 0 for t in d["in_flight"]),
                          "an upload in flight")
        upload = next(t for t in doc["in_flight"] if t["kind"] == "upload")
        assert upload["name"] == "scan.bin" and upload["record"] == SLOT[0]
        assert upload["event"] == SLOT[1] and upload["field"] == SLOT[2]
        assert upload["bytes_total"] == src.stat().st_size
        assert 0 < upload["bytes_done"] <= upload["bytes_total"]
        text = cli(mnt, "status", str(mnt.path)).stdout
        assert "upload " in text and "scan.bin" in text
        assert doc["spool"].get("writing") == 1  # its bytes are safe in the spool meanwhile
    finally:
        _, err = cp.communicate(timeout=60)
    assert cp.returncode != 0 and "Input/output error" in err  # the hang ended without an answer
    doc = refreshed_after(mnt, time.time())
    assert doc["in_flight"] == [] and doc["unsent"] == 1


def test_a_download_in_flight_shows_its_slot(sandbox, mount) -> None:
    # The server ignores the fileinfo flag, so the first export (the size probe) tells the mount that a size
    # needs the download itself; that second export hangs, its retry succeeds.
    sb = sandbox("--no-fileinfo", "--fault", "content=file,action=export,nth=2,do=hang,seconds=6")
    mnt = mount(sb, "timeout=30")
    rel = ("1001", "baseline_arm_1", "mri_upload", "mri_00.png")
    cat = subprocess.Popen(["cat", str(mnt.path.joinpath(*rel))], stdout=subprocess.PIPE)
    try:
        doc = wait_status(mnt, lambda d: any(t["kind"] == "download" for t in d["in_flight"]), "a download")
        down = next(t for t in doc["in_flight"] if t["kind"] == "download")
        assert (down["record"], down["event"], down["field"]) == rel[:3]
        assert "download 1001/baseline_arm_1/mri_upload" in cli(mnt, "status").stdout
    finally:
        out, _ = cat.communicate(timeout=60)
    assert cat.returncode == 0
    content, _headers = redcap.Project(sb.url, sb.token).export_file(record=rel[0], field=rel[2], event=rel[1])
    assert out == content
    doc = refreshed_after(mnt, time.time())
    assert doc["in_flight"] == [] and doc["transfers"]["download"]["bytes"] == len(content)
    assert doc["calls"]["failed"] == len([c for c in sb.calls(content="file") if c.get("fault") == "hang"]) == 1


def test_a_killed_mount_shows_dead_with_its_unsent_file(sandbox, mount) -> None:
    sb = sandbox()
    mnt = mount(sb)
    (pid,) = daemon_pids(mnt.path)
    fd = os.open(mnt.path.joinpath(*SLOT, "half.txt"), os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        os.write(fd, b"written, never closed\n")
        wait_status(mnt, lambda d: d["spool"].get("writing") == 1, "the file being written")
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while daemon_pids(mnt.path):
            assert time.monotonic() < deadline, "the killed daemon did not go away"
            time.sleep(0.05)
        doc = mine(mnt)
        assert doc["state"] == "dead" and doc["kernel_mounted"] is True and is_mounted(mnt.path)
        assert doc["unsent"] == 1  # what it was writing is unsent now
        assert doc["pid"] == pid
        text = cli(mnt, "status", str(mnt.path))
        assert text.returncode == 0 and "dead" in text.stdout and "fusermount3 -u" in text.stdout
    finally:
        try:
            os.close(fd)
        except OSError:
            pass  # the mount is gone: the close cannot reach it


def test_clean_unmount_removes_it_and_leaves_the_others(sandbox, mount, tmp_path) -> None:
    sb1 = sandbox(name="one")
    sb2 = sandbox(project="tests/data/classic-project.xml", name="two")
    first, second = mount(sb1), mount(sb2)
    assert sorted(d["mountpoint"] for d in status_json(first)) == sorted([str(first.path), str(second.path)])
    assert [d["url"] for d in status_json(first, str(second.path))] == [sb2.url]
    path = status_file(first)
    first.unmount()
    assert not path.exists()
    assert [d["mountpoint"] for d in status_json(first)] == [str(second.path)]
    gone = cli(first, "status", str(first.path))
    assert gone.returncode == 1 and "is not a redcapfs mount" in gone.stderr
    other = tmp_path / "plain"
    other.mkdir()
    assert cli(first, "status", str(other)).returncode == 1
