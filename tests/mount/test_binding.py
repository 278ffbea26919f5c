"""The FUSE binding through a real mount: errno values, rename flags, request sizes, which libfuse.

Every test here is marked ``smoke``: ``scripts/test`` runs them a second time
with ``REDCAPFS_FUSE=2`` (the libfuse2 fallback). Expectations that differ
between the bindings read the one in force from the environment, the same
variable the mount reads.

Demo slots (see test_write.py): ``1001/baseline_arm_1/radiology_report`` is
empty, ``1001/screening_arm_1/consent_form`` holds ``consent_1001.pdf``,
``1003/baseline_arm_1/mri_upload`` holds ``mri_02.png``.
"""

from __future__ import annotations

import ctypes
import errno
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

redcap = pytest.importorskip("redcap")

pytestmark = pytest.mark.smoke

LIBFUSE = 2 if os.environ.get("REDCAPFS_FUSE") == "2" else 3
RENAME_NOREPLACE, RENAME_EXCHANGE = 1, 2
EMPTY = ("1001", "baseline_arm_1", "radiology_report")
FILLED = ("1001", "screening_arm_1", "consent_form", "consent_1001.pdf")


def server_name(sb: Any, record: str, event: str, field: str) -> str | None:
    """The file name PyCap sees in a slot; None for an empty slot."""
    try:
        _, headers = redcap.Project(sb.url, sb.token).export_file(record=record, field=field, event=event)
    except redcap.RedcapError as exc:
        if "no file" in str(exc).lower():
            return None
        raise
    return str(headers["name"])


def errno_of(call: Any, *args: Any) -> int:
    """The errno a real system call gets (0 if it succeeds)."""
    try:
        call(*args)
    except OSError as exc:
        return exc.errno or 0
    return 0


def renameat2(old: Path, new: Path, flags: int) -> int:
    """renameat2(2) through libc: 0 or the errno."""
    libc = ctypes.CDLL(None, use_errno=True)
    at_fdcwd = -100
    result = libc.renameat2(at_fdcwd, str(old).encode(), at_fdcwd, str(new).encode(), flags)
    return ctypes.get_errno() if result != 0 else 0


def test_the_preferred_binding_is_the_one_in_use(sandbox: Any, mount: Any) -> None:
    mnt = mount(sandbox())
    assert f"libfuse{LIBFUSE}" in mnt.log, mnt.log
    mnt.unmount()


def test_errno_values_reach_the_caller_unchanged(sandbox: Any, mount: Any) -> None:
    """The one table in errors.py, through the kernel: missing stays ENOENT, a taken slot EEXIST, …"""
    sb = sandbox()
    mnt = mount(sb)
    root = mnt.path
    empty = root.joinpath(*EMPTY)
    filled = root.joinpath(*FILLED[:3])
    assert errno_of(os.stat, root / "no-such-record") == errno.ENOENT
    assert errno_of(os.stat, empty / "missing.pdf") == errno.ENOENT
    assert errno_of(os.open, filled / "second.pdf", os.O_WRONLY | os.O_CREAT) == errno.EEXIST
    assert errno_of(os.open, filled / FILLED[3], os.O_WRONLY | os.O_CREAT | os.O_EXCL) == errno.EEXIST
    assert errno_of(os.listdir, filled / FILLED[3]) == errno.ENOTDIR
    assert errno_of(os.open, empty, os.O_WRONLY) == errno.EISDIR
    assert errno_of(os.symlink, "x", empty / "link") == errno.EPERM
    assert errno_of(os.rmdir, root / "1001") == errno.EPERM  # records are not removed through the mount
    assert errno_of(os.open, root / "1001" / "no_such_event" / "x", os.O_WRONLY | os.O_CREAT) == errno.ENOENT
    assert "EINVAL" not in mnt.log  # nothing fell through to mfusepy's catch-all
    mnt.unmount()
    ro = mount(sb, "ro")
    assert errno_of(os.open, ro.path.joinpath(*EMPTY) / "new.txt", os.O_WRONLY | os.O_CREAT) == errno.EROFS
    ro.unmount()


def test_rename_flags(sandbox: Any, mount: Any) -> None:
    """RENAME_NOREPLACE is honoured where the binding passes flags (libfuse3); EINVAL where it cannot."""
    sb = sandbox()
    mnt = mount(sb)
    slot = mnt.path.joinpath(*EMPTY)
    (slot / "draft.txt").write_bytes(b"first version\n")
    assert server_name(sb, EMPTY[0], EMPTY[1], EMPTY[2]) == "draft.txt"
    filled = mnt.path.joinpath(*FILLED)
    assert renameat2(slot / "draft.txt", filled, RENAME_EXCHANGE) == errno.EINVAL
    if LIBFUSE == 3:
        assert renameat2(slot / "draft.txt", slot / "draft.txt", RENAME_NOREPLACE) == errno.EEXIST
        assert renameat2(slot / "draft.txt", slot / "final.txt", RENAME_NOREPLACE) == 0
        assert os.listdir(slot) == ["final.txt"]
        assert server_name(sb, EMPTY[0], EMPTY[1], EMPTY[2]) == "final.txt"
    else:
        assert renameat2(slot / "draft.txt", slot / "final.txt", RENAME_NOREPLACE) == errno.EINVAL
        assert os.listdir(slot) == ["draft.txt"]
    # mv asks renameat2 for NOREPLACE first; a slot that is taken reads "Operation not permitted" (EPERM),
    # the same every time (EEXIST for a name that does not exist made mv's message random).
    other = mnt.path / "1003" / "baseline_arm_1" / "mri_upload"
    moved = subprocess.run(["mv", str(next(slot.iterdir())), str(other) + "/"], capture_output=True, text=True,
                           env=dict(os.environ, LC_ALL="C"))
    assert moved.returncode != 0 and "Operation not permitted" in moved.stderr, moved.stderr
    mnt.unmount()


def _sizes(log: str, kind: str) -> dict[int, int]:
    """``{request size: count}`` from the summary line the mount logs at unmount."""
    line = re.search(rf"{kind} sizes ([^;\n]*)", log)
    assert line, log
    return {int(size): int(n) for size, n in re.findall(r"(\d+)x(\d+)", line.group(1))}


def test_request_sizes_that_arrive(sandbox: Any, mount: Any, tmp_path: Path) -> None:
    """libfuse3: cp's writes and reads reach the daemon as 1 MiB requests; libfuse2 splits them at 128 KiB.

    Reads need the mount's readahead raised, which only root may do; the log says whether it was.
    """
    sb = sandbox()
    mnt = mount(sb)
    source = tmp_path / "big.bin"
    source.write_bytes(os.urandom(8 << 20))
    target = mnt.path.joinpath(*EMPTY) / "big.bin"
    subprocess.run(["cp", str(source), str(target)], check=True)
    mnt.unmount()
    again = mount(sb, mountpoint=mnt.path)  # a new daemon: the read is a cold one, from the server
    subprocess.run(["cp", str(target), str(tmp_path / "back.bin")], check=True)
    assert (tmp_path / "back.bin").read_bytes() == source.read_bytes()
    again.unmount()
    writes, reads = _sizes(mnt.log, "write"), _sizes(again.log, "read")
    expected = 1 << 20 if LIBFUSE == 3 else 128 << 10
    assert max(writes) == expected, writes
    assert sum(size * n for size, n in writes.items()) == 8 << 20
    count = sum(writes.values())  # every one went from libfuse's buffer into the spool (redcapfs/writebuf.py)
    assert f"{count} of {count} writes from libfuse's buffer" in mnt.log, mnt.log[-2000:]
    if LIBFUSE == 3 and "readahead 1024 KiB" in again.log:
        assert max(reads) == 1 << 20, reads
    else:
        assert max(reads) <= 256 << 10, reads


def test_writes_out_of_order_land_byte_for_byte(sandbox: Any, mount: Any) -> None:
    """Writes at any offset, backwards, overlapping and past a hole, reach REDCap exactly (PyCap reads back).

    Each write's bytes go from libfuse's buffer into the spool file with libfuse's own copy
    (``write_buf``); what they must add up to is what a local file would hold.
    """
    sb = sandbox()
    mnt = mount(sb)
    target = mnt.path.joinpath(*EMPTY) / "pieces.bin"
    expected = bytearray(3 << 20)
    fd = os.open(target, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        for start in range((3 << 20) - (192 << 10), -1, -(192 << 10)):  # backwards, 192 KiB at a time
            block = os.urandom(192 << 10)
            assert os.pwrite(fd, block, start) == len(block)
            expected[start:start + len(block)] = block
        patch = os.urandom(300_001)  # overlapping, odd length and offset
        assert os.pwrite(fd, patch, 777_777) == len(patch)
        expected[777_777:777_777 + len(patch)] = patch
        tail = os.urandom(5)  # past a hole of 4 KiB: zeros in between
        assert os.pwrite(fd, tail, len(expected) + 4096) == 5
        expected += bytes(4096) + tail
    finally:
        os.close(fd)
    content, headers = redcap.Project(sb.url, sb.token).export_file(record=EMPTY[0], field=EMPTY[2], event=EMPTY[1])
    assert headers["name"] == "pieces.bin"
    assert content == bytes(expected)
    assert target.read_bytes() == bytes(expected)


def test_write_only_appends_and_a_shared_writable_mmap_both_reach_redcap(sandbox: Any, mount: Any) -> None:
    """A write-only handle bypasses the kernel's page cache (binding.py); O_APPEND still appends at the
    end, and an O_RDWR handle (which keeps the cache) can still be mapped shared and written through."""
    import mmap

    sb = sandbox()
    mnt = mount(sb)
    slot = mnt.path.joinpath(*EMPTY)
    first, more = os.urandom(300_000), os.urandom(70_001)
    (slot / "log.bin").write_bytes(first)
    fd = os.open(slot / "log.bin", os.O_WRONLY | os.O_APPEND)
    try:
        assert os.write(fd, more) == len(more)
    finally:
        os.close(fd)
    project = redcap.Project(sb.url, sb.token)
    content, _ = project.export_file(record=EMPTY[0], field=EMPTY[2], event=EMPTY[1])
    assert content == first + more

    fd = os.open(slot / "log.bin", os.O_RDWR)
    try:
        with mmap.mmap(fd, len(first), mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE) as mapped:
            mapped[:5] = b"HELLO"
            mapped.flush()
    finally:
        os.close(fd)
    content, headers = project.export_file(record=EMPTY[0], field=EMPTY[2], event=EMPTY[1])
    assert headers["name"] == "log.bin"
    assert content == b"HELLO" + first[5:] + more


def test_a_slot_folder_lists_what_changed_since_its_events_listing(sandbox: Any, mount: Any) -> None:
    """An event's listing makes its slot folders' listings ahead (libfuse3: dirfill.py); a create or an rm
    in a slot folder right after it shows in that folder's next listing, round after round, and the bytes
    reach REDCap."""
    sb = sandbox()
    m = mount(sb)
    event = m.path.joinpath(*EMPTY[:2])
    slot = event / EMPTY[2]
    for n in range(3):
        assert EMPTY[2] in os.listdir(event)
        (slot / f"r{n}.txt").write_bytes(b"round %d" % n)
        assert os.listdir(slot) == [f"r{n}.txt"]
        assert server_name(sb, *EMPTY) == f"r{n}.txt"
        assert EMPTY[2] in os.listdir(event)
        os.unlink(slot / f"r{n}.txt")
        assert os.listdir(slot) == []
        assert server_name(sb, *EMPTY) is None
    filled = event.parent / FILLED[1] / FILLED[2]
    os.listdir(filled.parent)
    assert os.listdir(filled) == [FILLED[3]]  # a listing made ahead that shows a file
    m.unmount()
    used = re.search(r"(\d+) of (\d+) listings made ahead answered a request", m.log)
    assert used is not None, m.log[-2000:]
    if LIBFUSE == 3:  # the first listing of each slot folder after its event's was one made ahead
        assert int(used[1]) >= 1 and int(used[2]) >= int(used[1]), used[0]
    else:  # libfuse2 lists through mfusepy's readdir: nothing is made ahead
        assert used[0].startswith("0 of 0"), used[0]


def test_listings_stay_true_to_each_change_while_finds_run_beside_them(sandbox: Any, mount: Any) -> None:
    """Two `find` processes walk the mount over and over (each event listing makes its slot folders'
    listings ahead) while this process creates and removes a file in a slot, 20 rounds: every listing made
    after a create or an rm returned shows exactly what it left, and REDCap holds the same."""
    sb = sandbox()
    m = mount(sb)
    event = m.path.joinpath(*EMPTY[:2])
    slot = event / EMPTY[2]
    walkers = [subprocess.Popen(["sh", "-c", f'while :; do find "{m.path}" >/dev/null 2>&1; done'],
                                start_new_session=True) for _ in range(2)]
    try:
        for n in range(20):
            os.listdir(event)
            (slot / f"c{n}.txt").write_bytes(b"%d" % n)
            assert os.listdir(slot) == [f"c{n}.txt"], n
            os.unlink(slot / f"c{n}.txt")
            os.listdir(event)
            assert os.listdir(slot) == [], n
    finally:
        for proc in walkers:
            os.killpg(proc.pid, signal.SIGKILL)  # the loop and the find it is running
            proc.wait()
    assert server_name(sb, *EMPTY) is None
