"""Open files whose name is gone: what a handle reads and reports after `rm` of its path, on both bindings.

libfuse passes no path for such a file (libfuse3 always, libfuse2 with ``flag_nullpath_ok``), so each
answer must come from the handle alone. Checked against the bytes uploaded with PyCap beforehand. (An
``fstat`` of such a file gets ESTALE from libfuse itself: the kernel sends that GETATTR without the handle.)
"""

from __future__ import annotations

import errno
import io
import os
import time
from pathlib import Path
from typing import Any

import pytest

redcap = pytest.importorskip("redcap")

pytestmark = pytest.mark.smoke

FULL = "A" * 32
EMPTY = ("1001", "baseline_arm_1", "radiology_report")  # an empty slot of the demo project


def read_all(fd: int) -> bytes:
    parts = []
    while chunk := os.read(fd, 1 << 20):
        parts.append(chunk)
    return b"".join(parts)


def test_a_repository_document_removed_while_open_is_read_to_its_end(sandbox: Any,
                                                                                     mount: Any) -> None:
    sb = sandbox("--token", f"{FULL}:full:alice")
    data = os.urandom(300_001)
    redcap.Project(sb.url, FULL).import_file_into_repository("notes.bin", io.BytesIO(data))
    m = mount(sb, env={"REDCAP_API_TOKEN": FULL})
    path = m.path / ".repository" / "notes.bin"
    fd = os.open(path, os.O_RDONLY)
    try:
        first = os.read(fd, 1000)
        os.unlink(path)
        time.sleep(1.2)  # past the attribute timeout: reads near the end ask for the size by handle, no path
        assert first + read_all(fd) == data
    finally:
        os.close(fd)
    assert not path.exists()


def test_a_reader_of_a_writers_unfilled_copy_never_reads_an_empty_file_after_rm(sandbox: Any, mount: Any,
                                                                               tmp_path: Path) -> None:
    """A writer's copy of a large uncached file is filled at its first use; a reader of that copy whose
    path is removed first gets the whole file or EIO, never an empty or short read."""
    sb = sandbox()
    data = os.urandom(3 << 20)
    source = tmp_path / "big.bin"
    source.write_bytes(data)
    with open(source, "rb") as fh:
        redcap.Project(sb.url, sb.token).import_file(record=EMPTY[0], field=EMPTY[2], event=EMPTY[1],
                                                     file_name="big.bin", file_object=fh)
    m = mount(sb)
    path = m.path.joinpath(*EMPTY) / "big.bin"
    writer = os.open(path, os.O_WRONLY)  # no O_TRUNC: the copy is filled only when first used
    reader = os.open(path, os.O_RDONLY)
    try:
        os.unlink(path)
        try:
            got = read_all(reader)
        except OSError as exc:
            assert exc.errno in (errno.EIO, errno.ENOENT), exc  # the fill found the file gone: loud
        else:
            assert got == data, (len(got), len(data))
    finally:
        os.close(reader)
        os.close(writer)


def test_an_open_folder_removed_by_rmdir(sandbox: Any, mount: Any) -> None:
    """`rmdir` of a local instance folder that a process holds open: the folder is gone at once, REDCap is
    never asked to delete anything, and the descriptor's own listing is ESTALE (libfuse3's high-level API
    answers a removed folder's GETATTR, which carries no handle, with it; libfuse2 with ENOENT:
    docs/SEMANTICS.md), on one that had
    listed the folder and on a fresh one; the same name can be made again and lists empty."""
    sb = sandbox()
    m = mount(sb)
    ae = m.path / "1002" / "week_12_arm_1" / "ae_photo"
    os.mkdir(ae / "4")
    os.mkdir(ae / "5")
    fresh = os.open(ae / "4", os.O_RDONLY | os.O_DIRECTORY)
    listed = os.open(ae / "5", os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert os.listdir(listed) == []
        os.rmdir(ae / "4")
        os.rmdir(ae / "5")
        assert sorted(os.listdir(ae)) == ["1", "2", "3"]
        for fd in (fresh, listed):
            with pytest.raises(OSError) as caught:
                os.listdir(fd)
            assert caught.value.errno == (errno.ESTALE if os.environ.get("REDCAPFS_FUSE") != "2" else errno.ENOENT)
    finally:
        os.close(fresh)
        os.close(listed)
    assert not (ae / "4").exists() and not (ae / "5").exists()
    os.mkdir(ae / "4")
    assert os.listdir(ae / "4") == []
    assert [c for c in sb.calls() if c.get("action") == "delete"] == []
