"""Write-only handles bypass the kernel's page cache (FOPEN_DIRECT_IO), and no handle beside them is cached.

fs/kernelpages.py's rule: a write-only open of a file nothing else has open is direct; while a direct
handle that writes is open every other open of that file is direct too; a write-only open beside another
handle is cached; once no direct handle that writes is open, opens are cached again. So a reader of a file
being written (``tail -f``, a viewer opened mid-copy) reads what the writer wrote, from the daemon,
however the kernel treats direct writes (before Linux 6.6 it leaves cached pages of the range alone). A
handle's mode shows in its ``mmap(MAP_SHARED)``: ENODEV for a direct one. Each test mounts alone and
reads the count of direct opens from the unmount log; the bytes are checked against PyCap.
"""

from __future__ import annotations

import errno
import mmap
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import redcap

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_stream_upload import status

pytestmark = pytest.mark.smoke  # scripts/test runs these again on libfuse2

SLOT = ("1001", "baseline_arm_1", "radiology_report")
MiB = 1 << 20


def direct_opens(log: str) -> int:
    found = re.search(r"(\d+) opens bypassed the page cache", log)
    assert found is not None, log[-2000:]
    return int(found.group(1))


def in_redcap(sb: Any) -> bytes:
    content, _ = redcap.Project(sb.url, sb.token).export_file(record=SLOT[0], field=SLOT[2], event=SLOT[1])
    return bytes(content)


def test_cp_into_the_mount_is_direct_and_arrives_whole(sandbox: Any, mount: Any, tmp_path: Path) -> None:
    sb = sandbox()
    m = mount(sb)
    data = os.urandom(5 * MiB + 12345)
    (tmp_path / "scan.bin").write_bytes(data)
    subprocess.run(["cp", str(tmp_path / "scan.bin"), str(m.path.joinpath(*SLOT))], check=True)
    assert in_redcap(sb) == data
    assert (m.path.joinpath(*SLOT) / "scan.bin").read_bytes() == data  # a reopen after it: cached, whole
    assert status(m)["direct_writes"] == {"on": True, "opens": 1}
    m.unmount()
    assert direct_opens(m.log) == 1


def test_a_reader_beside_a_direct_writer_reads_each_write_and_cannot_map_it_shared(sandbox: Any, mount: Any
                                                                                   ) -> None:
    sb = sandbox()
    m = mount(sb)
    target = m.path.joinpath(*SLOT) / "growing.bin"
    first, second, patch = os.urandom(2 * MiB), os.urandom(MiB + 7), os.urandom(4096)
    writer = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    reader = -1
    try:
        os.write(writer, first)
        reader = os.open(target, os.O_RDONLY)
        assert os.pread(reader, len(first) + 10, 0) == first
        os.write(writer, second)  # `tail -f`: the reader sees the file grow
        assert os.pread(reader, len(second) + 10, len(first)) == second
        os.pwrite(writer, patch, 4096)  # over a range the reader has read: it must not keep the old bytes
        assert os.pread(reader, 3 * 4096, 0) == first[:4096] + patch + first[8192:12288]
        with pytest.raises(OSError) as shared:
            mmap.mmap(reader, 4096, mmap.MAP_SHARED, mmap.PROT_READ)
        assert shared.value.errno == errno.ENODEV  # the kernel's rule for a direct handle
        with mmap.mmap(reader, 3 * 4096, mmap.MAP_PRIVATE, mmap.PROT_READ) as private:
            assert private[:3 * 4096] == first[:4096] + patch + first[8192:12288]
        os.close(writer)
        writer = -1
        final = first[:4096] + patch + first[8192:] + second
        assert in_redcap(sb) == final
        fd = os.open(target, os.O_RDONLY)  # the writer closed, the direct reader still open: cached again
        try:
            with mmap.mmap(fd, 0, mmap.MAP_SHARED, mmap.PROT_READ) as mapped:
                assert mapped[:] == final
        finally:
            os.close(fd)
        assert os.pread(reader, len(final) + 1, 0) == final
    finally:
        if writer >= 0:
            os.close(writer)
        if reader >= 0:
            os.close(reader)
    m.unmount()
    assert direct_opens(m.log) == 2


def test_a_write_only_open_beside_a_cached_reader_is_cached(sandbox: Any, mount: Any) -> None:
    sb = sandbox()
    m = mount(sb)
    target = m.path.joinpath(*SLOT) / "report.bin"
    old, new = os.urandom(MiB), os.urandom(MiB)
    target.write_bytes(old)  # direct: nothing else had it open
    reader = os.open(target, os.O_RDONLY)
    try:
        assert os.pread(reader, MiB, 0) == old
        writer = os.open(target, os.O_WRONLY)
        try:
            os.pwrite(writer, new, 0)
            probe = os.open(target, os.O_RDONLY)  # direct if the writer were: its shared mapping would fail
            try:
                with mmap.mmap(probe, 4096, mmap.MAP_SHARED, mmap.PROT_READ):
                    pass
            finally:
                os.close(probe)
        finally:
            os.close(writer)
        seen = os.pread(reader, MiB, 0)  # an in-place overwrite, as on a local disk (docs/SEMANTICS.md):
        assert all(seen[i:i + 4096] in (old[i:i + 4096], new[i:i + 4096]) for i in range(0, MiB, 4096))
    finally:
        os.close(reader)
    assert in_redcap(sb) == new
    m.unmount()
    assert direct_opens(m.log) == 1  # the first write only


def test_a_copy_just_closed_maps_shared_at_once_however_late_its_release(sandbox: Any, mount: Any,
                                                                          tmp_path: Path) -> None:
    """The kernel sends ``cp``'s RELEASE after its close returns; the next open must not see it as open."""
    sb = sandbox()
    m = mount(sb)
    target = m.path.joinpath(*SLOT) / "scan.bin"
    for round_ in range(12):
        data = os.urandom(200_000 + round_)
        (tmp_path / "scan.bin").write_bytes(data)
        subprocess.run(["cp", str(tmp_path / "scan.bin"), str(target)], check=True)
        fd = os.open(target, os.O_RDONLY)
        try:
            with mmap.mmap(fd, 0, mmap.MAP_SHARED, mmap.PROT_READ) as mapped:
                assert mapped[:] == data, round_
        finally:
            os.close(fd)
    assert in_redcap(sb) == data
    m.unmount()
    assert direct_opens(m.log) == 12  # the copies only


def test_a_writer_closed_once_but_still_open_keeps_its_readers_direct(sandbox: Any, mount: Any) -> None:
    sb = sandbox()
    m = mount(sb)
    target = m.path.joinpath(*SLOT) / "log.bin"
    first, more = os.urandom(300_000), os.urandom(70_001)
    writer = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    kept = os.dup(writer)
    os.write(writer, first)
    os.close(writer)  # a FLUSH (and an upload), no RELEASE: `kept` still holds the file
    reader = os.open(target, os.O_RDONLY)  # waits a moment for a release that does not come, then direct
    try:
        assert os.pread(reader, len(first) + 1, 0) == first
        os.write(kept, more)
        assert os.pread(reader, len(more) + 1, len(first)) == more
        with pytest.raises(OSError) as shared:
            mmap.mmap(reader, 4096, mmap.MAP_SHARED, mmap.PROT_READ)
        assert shared.value.errno == errno.ENODEV
    finally:
        os.close(kept)
        os.close(reader)
    assert in_redcap(sb) == first + more
    m.unmount()
    assert direct_opens(m.log) == 2


def test_direct_writes_off_keeps_every_handle_cached(sandbox: Any, mount: Any, tmp_path: Path) -> None:
    sb = sandbox()
    m = mount(sb, "direct_writes=off")
    data = os.urandom(3 * MiB)
    target = m.path.joinpath(*SLOT) / "scan.bin"
    writer = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        os.write(writer, data)
        reader = os.open(target, os.O_RDONLY)
        try:
            with mmap.mmap(reader, len(data), mmap.MAP_SHARED, mmap.PROT_READ) as mapped:
                assert mapped[:] == data
        finally:
            os.close(reader)
    finally:
        os.close(writer)
    assert in_redcap(sb) == data
    assert status(m)["direct_writes"] == {"on": False, "opens": 0}
    m.unmount()
    assert direct_opens(m.log) == 0


def assert_direct_reader(path: Path, data: bytes) -> None:
    """A reader opened at ``path`` is direct (its shared mapping fails with ENODEV) and reads ``data``."""
    reader = os.open(path, os.O_RDONLY)
    try:
        with pytest.raises(OSError) as shared:
            mmap.mmap(reader, 4096, mmap.MAP_SHARED, mmap.PROT_READ)
        assert shared.value.errno == errno.ENODEV
        assert os.pread(reader, len(data) + 1, 0) == data
    finally:
        os.close(reader)


def test_a_refused_rename_leaves_a_direct_writer_where_it_was(sandbox: Any, mount: Any) -> None:
    """The rename onto a slot that holds another file is refused: the writer is still at its old name,
    so a reader opened there is direct too (its shared mapping fails), and the bytes reach REDCap whole."""
    sb = sandbox()
    m = mount(sb)
    target = m.path.joinpath(*SLOT) / "growing.bin"
    taken = m.path / "1001" / "screening_arm_1" / "consent_form"
    assert [p.name for p in taken.iterdir()], "the other slot must hold a file"
    data = os.urandom(MiB)
    writer = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        os.write(writer, data)
        with pytest.raises(OSError) as refused:
            os.rename(target, taken / "growing.bin")
        assert refused.value.errno in (errno.EEXIST, errno.EPERM, errno.EINVAL), refused.value
        assert_direct_reader(target, data)
    finally:
        os.close(writer)
    assert in_redcap(sb) == data
    m.unmount()
    assert direct_opens(m.log) == 2


def test_a_refused_unlink_leaves_a_direct_writer_where_it_was(sandbox: Any, mount: Any) -> None:
    """REDCap answers every Delete File with a 500: the `rm` fails, the writer rewriting the file is still
    at its name, so a reader opened there is direct too (its shared mapping fails), and the writer's bytes
    reach REDCap whole at its close."""
    sb = sandbox("--fault", "content=file,action=delete,do=500")
    m = mount(sb)
    taken = ("1001", "screening_arm_1", "consent_form")
    folder = m.path.joinpath(*taken)
    names = [p.name for p in folder.iterdir()]
    assert len(names) == 1, "the slot must hold a file"
    target = folder / names[0]
    data = os.urandom(MiB)
    writer = os.open(target, os.O_WRONLY | os.O_TRUNC)
    try:
        os.write(writer, data)
        with pytest.raises(OSError) as refused:
            os.unlink(target)
        assert refused.value.errno in (errno.EIO, errno.EAGAIN, errno.EBUSY, errno.EPERM), refused.value
        assert_direct_reader(target, data)
    finally:
        os.close(writer)
    content, _ = redcap.Project(sb.url, sb.token).export_file(record=taken[0], field=taken[2], event=taken[1])
    assert bytes(content) == data
    m.unmount()
    assert direct_opens(m.log) == 2
