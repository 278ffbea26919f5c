"""Bugs of today's Tree found with the model test (test_tree_model.py), each as its shortest sequence.

Each is a strict xfail: it fails today, and passes (turning the xfail into an
error) once the bug is fixed, so whoever fixes one removes its mark and the
matching ``KNOWN_BUGS`` guard in test_tree_model.py. The tree is built by the
same factories as the model test (treemodel_project.py, the one place that
names the REDCap emulator).
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from treemodel_project import RecordsClock, make_client, make_tree, outcome, server_file

from redcapfs.errors import errno_for
from redcapfs.spool import Spool
from redcapfs.tree import Tree


@pytest.fixture
def mount(tmp_path: Path) -> Iterator[tuple[Tree, Any, Spool]]:
    clock = RecordsClock()
    client = make_client()
    tree, spool = make_tree(client, tmp_path, 1)
    try:
        yield tree, client, spool
    finally:
        tree.shutdown()
        clock.restore()
        client.close()


def write_file(tree: Tree, path: str, data: bytes) -> None:
    fh = tree.create(path, 0o100644)
    tree.write(fh, data, 0)
    tree.flush(fh)
    tree.release(fh)


def test_writes_after_renaming_a_temporary_file_onto_its_real_name_are_not_lost(mount: tuple) -> None:
    tree, client, spool = mount
    fh = tree.create("/2/doc/.a.pdf.Ab12Cd", 0o100644)
    tree.write(fh, b"first part ", 0)
    tree.rename("/2/doc/.a.pdf.Ab12Cd", "/2/doc/a.pdf")  # the upload of "first part "
    tree.write(fh, b"second part", 11)  # on a local disk the handle now writes a.pdf
    _, code = outcome(tree.flush, fh)
    tree.release(fh)
    kept = [e.data_path.read_bytes() for e in spool.unsent()]
    assert (code is not None and b"first part second part" in kept) or \
        server_file(client, ("2", "doc", None)) == ("a.pdf", b"first part second part")


def test_a_reader_of_an_uploaded_version_never_sees_bytes_written_after_it(mount: tuple) -> None:
    tree, _, _ = mount
    fh = tree.create("/2/doc/.a.pdf.Ab12Cd", 0o100644)
    tree.write(fh, b"version one", 0)
    tree.rename("/2/doc/.a.pdf.Ab12Cd", "/2/doc/a.pdf")
    reader = tree.open("/2/doc/a.pdf", os.O_RDONLY)
    assert tree.read(reader, 100, 0) == b"version one"
    tree.write(fh, b"NOT SENT", 0)
    assert tree.read(reader, 100, 0) == b"version one", "a reader saw bytes that were never a version"
    tree.release(reader)
    tree.release(fh)


def test_rm_of_a_name_a_colleague_replaced_keeps_the_colleagues_file(mount: tuple, tmp_path: Path) -> None:
    tree, client, _ = mount
    assert tree.readdir("/1/doc") == [("a.pdf", False)]
    theirs = tmp_path / "theirs.png"
    theirs.write_bytes(b"the colleague's scan")
    client.import_file("1", "doc", str(theirs), "c.png")  # through the API, not the mount
    outcome(tree.unlink, "/1/doc/a.pdf")  # the user removes a.pdf, which is no longer there
    assert server_file(client, ("1", "doc", None)) == ("c.png", b"the colleague's scan")


def test_rm_of_a_backup_keeps_a_file_a_colleague_uploaded_since(mount: tuple, tmp_path: Path) -> None:
    tree, client, _ = mount
    tree.rename("/1/att/1/b.txt", "/1/att/1/.b.txt.Ab12Cd")  # rsync-style backup: b.txt hidden here
    theirs = tmp_path / "theirs.pdf"
    theirs.write_bytes(b"the colleague's report")
    client.import_file("1", "att", str(theirs), "a.pdf", repeat_instance=1)
    outcome(tree.unlink, "/1/att/1/.b.txt.Ab12Cd")  # meant: delete b.txt
    assert server_file(client, ("1", "att", 1)) == ("a.pdf", b"the colleague's report")


def test_opening_a_name_a_colleague_replaced_never_serves_the_colleagues_file(mount: tuple, tmp_path: Path) -> None:
    tree, client, _ = mount
    assert tree.readdir("/1/doc") == [("a.pdf", False)]
    theirs = tmp_path / "theirs.png"
    theirs.write_bytes(b"the colleague's scan")
    client.import_file("1", "doc", str(theirs), "c.png")
    got, code = outcome(lambda: tree.read(tree.open("/1/doc/a.pdf", os.O_RDONLY), 100, 0))
    assert code is not None or got != b"the colleague's scan", "c.png's bytes were served as a.pdf"


def test_a_failed_rename_leaves_no_spool_entry(mount: tuple) -> None:
    tree, client, spool = mount
    assert tree.readdir("/1/doc") == [("a.pdf", False)]
    client.delete_file("1", "doc")  # a colleague, through the API
    _, code = outcome(tree.rename, "/1/doc/a.pdf", "/1/doc/b.txt")
    assert code is not None
    assert [(e.state, e.target.name) for e in spool.entries()] == []


def test_rm_of_a_backup_moved_from_another_slot_deletes_nothing_there(mount: tuple) -> None:
    tree, client, _ = mount
    write_file(tree, "/2/doc/a.pdf", b"record two")
    tree.rename("/2/doc/a.pdf", "/2/doc/a.pdf~")  # vim's backup: record 2's a.pdf hidden, kept on the server
    tree.rename("/1/doc/a.pdf", "/1/doc/a.pdf~")  # the same in record 1
    tree.rename("/1/doc/a.pdf~", "/2/doc/.a.pdf.swp")  # record 1's copy moved into record 2's folder
    tree.unlink("/2/doc/.a.pdf.swp")
    assert server_file(client, ("2", "doc", None)) == ("a.pdf", b"record two"), \
        "record 2's file was deleted; its only copy left is the local backup a.pdf~"


def test_fstat_of_a_reader_agrees_with_its_reads_after_an_overwrite(mount: tuple) -> None:
    tree, _, _ = mount
    reader = tree.open("/1/doc/a.pdf", os.O_RDONLY)
    assert tree.read(reader, 100, 0) == b"original"
    fh = tree.open("/1/doc/a.pdf", os.O_WRONLY | os.O_TRUNC)
    tree.write(fh, b"v2", 0)
    tree.flush(fh)
    tree.release(fh)
    assert tree.read(reader, 100, 0) == b"original"  # the old version, whole: as on a local disk
    assert tree.getattr("/1/doc/a.pdf", reader).size == len(b"original")
    tree.release(reader)


def test_a_time_set_through_a_handle_that_wrote_nothing_sticks(mount: tuple) -> None:
    """``touch FILE`` / ``touch -d DATE FILE`` on an existing file: open for writing, set the time, close."""
    tree, client, _ = mount
    when = 1_500_000_000_123_456_789
    fh = tree.open("/1/doc/a.pdf", os.O_WRONLY)
    tree.utimens("/1/doc/a.pdf", when)
    tree.flush(fh)
    tree.release(fh)
    assert tree.getattr("/1/doc/a.pdf").mtime_ns == when
    assert server_file(client, ("1", "doc", None)) == ("a.pdf", b"original")


def test_a_download_of_another_length_than_reported_is_eio_and_not_kept(mount: tuple, tmp_path: Path) -> None:
    """Issue 10 §3: the kernel trusts the size stat reported; a body of another length is another version."""
    tree, client, _ = mount
    assert tree.getattr("/1/doc/a.pdf").size == len(b"original")
    theirs = tmp_path / "a.pdf"
    theirs.write_bytes(b"a longer version, same name")
    client.import_file("1", "doc", str(theirs), "a.pdf")  # a colleague, through the API
    opened: list[int] = []
    with pytest.raises(Exception) as caught:  # at open or at the read, whichever the download's end meets
        opened.append(tree.open("/1/doc/a.pdf", os.O_RDONLY))
        tree.read(opened[0], 100, 0)
    for fh in opened:
        tree.release(fh)
    assert errno_for(caught.value) == errno.EIO
    fh = tree.open("/1/doc/a.pdf", os.O_RDONLY)  # asked again: the whole new version
    assert tree.read(fh, 100, 0) == b"a longer version, same name"
    assert tree.getattr("/1/doc/a.pdf", fh).size == len(b"a longer version, same name")
    tree.release(fh)
