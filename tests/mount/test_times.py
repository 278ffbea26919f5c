"""File times through a real mount: a time set with `touch` on an existing file sticks, also after a remount.

Issue 10 §4: a time set for the modification time alone sticks on both bindings,
`touch` of a large file downloads nothing, and vim saving again and again never
warns that the file changed since it read it. The server is checked with PyCap
and the sandbox's request log.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from mounthelp import downloads, settle
from sandbox_projects import field, seed

from redcapfs.sandbox.project import ProjectDef, StoredFile

redcap = pytest.importorskip("redcap")


def test_touch_d_on_an_existing_file_sticks_across_a_remount(sandbox: Any, mount: Any) -> None:
    sb = sandbox()
    mnt = mount(sb)
    path = mnt.path / "1002" / "baseline_arm_1" / "radiology_report" / "report.txt"
    path.write_bytes(b"a report\n")
    r = subprocess.run(["touch", "-d", "2020-05-17 10:11:12 UTC", str(path)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    want = 1589710272
    assert int(os.stat(path).st_mtime) == want
    mnt.unmount()
    again = mount(sb)
    path = again.path / "1002" / "baseline_arm_1" / "radiology_report" / "report.txt"
    assert int(os.stat(path).st_mtime) == want
    assert path.read_bytes() == b"a report\n"


# ------------------------------------------------------------------ issue 10 §4: times that are set stick

SLOT = ("1002", "baseline_arm_1", "radiology_report")


def server_bytes(sb: Any, record: str, event: str, fieldname: str) -> bytes:
    content, _ = redcap.Project(sb.url, sb.token).export_file(record=record, field=fieldname, event=event)
    return bytes(content)


@pytest.mark.parametrize("libfuse", ["2", "3"])
def test_a_time_set_for_the_modification_time_alone_sticks(sandbox: Any, mount: Any, tmp_path: Path,
                                                          libfuse: str) -> None:
    """`touch -m -d` and `tar -x` (atime UTIME_OMIT) set mtime only; libfuse2 drops such calls without the flag."""
    sb = sandbox()
    mnt = mount(sb, env={"REDCAPFS_FUSE": libfuse})
    assert f"libfuse{libfuse}" in mnt.log
    slot = mnt.path.joinpath(*SLOT)
    path = slot / "report.txt"
    path.write_bytes(b"a report\n")
    r = subprocess.run(["touch", "-m", "-d", "2019-03-04 05:06:07 UTC", str(path)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert os.stat(path).st_mtime_ns == 1551675967 * 10**9
    r = subprocess.run(["touch", "-a", "-d", "2001-01-01 00:00:00 UTC", str(path)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert os.stat(path).st_mtime_ns == 1551675967 * 10**9  # the access time alone changes nothing kept

    # tar -x into an empty slot restores the member's mtime (GNU tar passes UTIME_OMIT for the atime)
    member = tmp_path / "scan.txt"
    member.write_bytes(b"scan notes\n")
    os.utime(member, ns=(1_600_000_000 * 10**9, 1_500_000_000 * 10**9))
    archive = tmp_path / "in.tar"
    with tarfile.open(archive, "w", format=tarfile.PAX_FORMAT) as tar:
        tar.add(member, arcname="scan.txt")
    target = mnt.path / "1003" / "baseline_arm_1" / "radiology_report"
    r = subprocess.run(["tar", "-xf", str(archive), "-C", str(target)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert os.stat(target / "scan.txt").st_mtime_ns == 1_500_000_000 * 10**9
    assert server_bytes(sb, "1003", "baseline_arm_1", "radiology_report") == b"scan notes\n"
    mnt.unmount()
    again = mount(sb, env={"REDCAPFS_FUSE": libfuse})
    assert os.stat(again.path.joinpath(*SLOT) / "report.txt").st_mtime_ns == 1551675967 * 10**9
    assert os.stat(again.path / "1003" / "baseline_arm_1" / "radiology_report" / "scan.txt").st_mtime_ns == (
        1_500_000_000 * 10**9)


def big_project(tmp: Path, size: int) -> tuple[ProjectDef, Path]:
    """A classic project whose record R1 holds a ``size``-byte file in ``scan``."""
    tmp.mkdir(parents=True, exist_ok=True)
    big = tmp / "big.bin"
    with open(big, "wb") as out:
        for _ in range(size >> 20):
            out.write(os.urandom(1 << 20))
    metadata = [field("record_id", "main"), field("scan", "main", "file")]
    info = {"project_id": 77, "project_title": "big", "is_longitudinal": 0, "has_repeating_instruments_or_events": 0}
    files = [StoredFile("R1", "scan", "big.bin", str(big), None, 1, "application/octet-stream")]
    return ProjectDef(info, metadata, [{"instrument_name": "main", "instrument_label": "Main"}], [], [], [], [],
                      [{"record_id": "R1"}], files), big


def test_touch_of_a_large_existing_file_downloads_nothing(sandbox: Any, mount: Any, tmp_path: Path) -> None:
    project, _ = big_project(tmp_path / "src", 50 << 20)
    seed(tmp_path / "big-data", project)
    sb = sandbox(name="big")
    mnt = mount(sb)
    path = mnt.path / "R1" / "scan" / "big.bin"
    assert path.stat().st_size == 50 << 20
    for argv in (["touch", str(path)], ["touch", "-d", "2021-02-03 04:05:06 UTC", str(path)]):
        r = subprocess.run(argv, capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
    assert int(os.stat(path).st_mtime) == 1612325106
    assert path.stat().st_size == 50 << 20
    settle(lambda: len(sb.calls()))
    assert downloads(sb.calls()) == [], "touch downloaded the file"
    assert sb.calls(content="file", action="import") == []
    mnt.unmount()
    again = mount(sb)
    assert int(os.stat(again.path / "R1" / "scan" / "big.bin").st_mtime) == 1612325106


# ------------------------------------------------------------------ issue 10 §4: vim never sees W11


# `backupskip=`: the mount is under /tmp, which vim's default 'backupskip' exempts from its rename-and-write
# save; in a user's folder vim does that save, so both are run. poll=1: the change feed reads the log's rows
# of our own uploads between the saves (the log's time must never replace our own write's).
@pytest.mark.parametrize("vimrc", ["NONE", "DEFAULTS"])
@pytest.mark.parametrize("skip", ["default", "empty"], ids=["backupskip-default", "backupskip-empty"])
def test_saves_in_a_row_with_vim_never_warn_w11(sandbox: Any, mount: Any, tmp_path: Path, vimrc: str,
                                                skip: str) -> None:
    """Each save right after the previous one reaches the server, and vim never says the file changed."""
    if subprocess.run(["sh", "-c", "command -v vim"], capture_output=True).returncode != 0:
        pytest.skip("vim is not installed")
    settings = ["-c", "set backupskip="] if skip == "empty" else []
    sb = sandbox()
    mnt = mount(sb, "poll=1")
    slot = mnt.path.joinpath(*SLOT)
    path = slot / "notes.txt"
    path.write_bytes(b"line1\nline2\n")
    want = b"line1\nline2\n"
    for n in range(3, 11):
        messages = tmp_path / f"vim-{n}.txt"
        if n % 3 == 0:  # a save by another tool right before vim reads the file
            with open(path, "ab") as out:
                out.write(f"added{n}\n".encode())
            want += f"added{n}\n".encode()
        elif n % 3 == 1:
            (tmp_path / "copy.txt").write_bytes(want + b"copied\n")
            subprocess.run(["cp", str(tmp_path / "copy.txt"), str(path)], check=True)
            want += b"copied\n"
        r = subprocess.run(["vim", "-es", "-N", "-u", vimrc, "-i", "NONE", *settings,
                            "-c", f"redir! > {messages}", "-c", f"normal Goline{n}", "-c", "wq", str(path)],
                           capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL, cwd=str(slot))
        said = messages.read_text() if messages.exists() else ""
        assert r.returncode == 0, f"vim exited {r.returncode}: {r.stdout} {r.stderr} {said}"
        assert "W11" not in said and "changed since reading" not in said, said
        want += f"line{n}\n".encode()
        assert server_bytes(sb, *SLOT) == want, (n, said, mnt.log[-3000:])
        assert path.read_bytes() == want


def test_the_time_a_writer_saw_is_the_time_the_version_keeps(sandbox: Any, mount: Any) -> None:
    """After the last write, fstat of the open handle, stat after the close and stat after a remount agree.

    The close's release reaches the mount after close() returned: a stat in between used to see the
    spool file's time, later the upload's, and vim read that as "changed since reading it" (W11).
    """
    sb = sandbox()
    mnt = mount(sb, "attr_timeout=0")
    path = mnt.path.joinpath(*SLOT) / "seen.txt"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        os.write(fd, b"version one\n")
        os.fsync(fd)  # the upload
        seen = os.fstat(fd).st_mtime_ns
        assert os.stat(path).st_mtime_ns == seen
    finally:
        os.close(fd)
    assert server_bytes(sb, *SLOT) == b"version one\n"
    assert os.stat(path).st_mtime_ns == seen
    with open(path, "rb+") as again:  # opened to modify, nothing written: its time stays the version's
        assert os.fstat(again.fileno()).st_mtime_ns == seen
    mnt.unmount()
    assert os.stat(mount(sb).path.joinpath(*SLOT) / "seen.txt").st_mtime_ns == seen
