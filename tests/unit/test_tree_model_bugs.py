"""Bugs of today's Tree found with the model test (test_tree_model.py), each as its shortest sequence.

Each is a strict xfail: it fails today, and passes (turning the xfail into an
error) once the bug is fixed, so whoever fixes one removes its mark and the
matching ``KNOWN_BUGS`` guard in test_tree_model.py. The tree is built by the
same factories as the model test (treemodel_project.py, the one place that
names the REDCap emulator).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from treemodel_project import RecordsClock, make_client, make_tree, outcome, server_file

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


@pytest.mark.xfail(strict=True, reason="writes through a temporary file's handle after it was renamed onto the "
                   "real name go nowhere: close() succeeds, the server keeps the older bytes, nothing is unsent")
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


@pytest.mark.xfail(strict=True, reason="the cache keeps an upload as a hard link to the spool file, so a reader "
                   "of the uploaded version sees bytes written later through a handle still open on that file")
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


@pytest.mark.xfail(strict=True, reason="unlink deletes whatever the slot holds now: rm of a name a colleague "
                   "has replaced (listing not yet refreshed) deletes the colleague's file")
def test_rm_of_a_name_a_colleague_replaced_keeps_the_colleagues_file(mount: tuple, tmp_path: Path) -> None:
    tree, client, _ = mount
    assert tree.readdir("/1/doc") == [("a.pdf", False)]
    theirs = tmp_path / "theirs.png"
    theirs.write_bytes(b"the colleague's scan")
    client.import_file("1", "doc", str(theirs), "c.png")  # through the API, not the mount
    outcome(tree.unlink, "/1/doc/a.pdf")  # the user removes a.pdf, which is no longer there
    assert server_file(client, ("1", "doc", None)) == ("c.png", b"the colleague's scan")


@pytest.mark.xfail(strict=True, reason="removing an editor's backup copy (`mv f f~; rm f~`) deletes whatever "
                   "the slot holds now, also a file a colleague uploaded after the backup was made")
def test_rm_of_a_backup_keeps_a_file_a_colleague_uploaded_since(mount: tuple, tmp_path: Path) -> None:
    tree, client, _ = mount
    tree.rename("/1/att/1/b.txt", "/1/att/1/.b.txt.Ab12Cd")  # rsync-style backup: b.txt hidden here
    theirs = tmp_path / "theirs.pdf"
    theirs.write_bytes(b"the colleague's report")
    client.import_file("1", "att", str(theirs), "a.pdf", repeat_instance=1)
    outcome(tree.unlink, "/1/att/1/.b.txt.Ab12Cd")  # meant: delete b.txt
    assert server_file(client, ("1", "att", 1)) == ("a.pdf", b"the colleague's report")


@pytest.mark.xfail(strict=True, reason="a download is of whatever the slot holds now: opening a name a colleague "
                   "has replaced (listing not yet refreshed) serves the colleague's file under the old name")
def test_opening_a_name_a_colleague_replaced_never_serves_the_colleagues_file(mount: tuple, tmp_path: Path) -> None:
    tree, client, _ = mount
    assert tree.readdir("/1/doc") == [("a.pdf", False)]
    theirs = tmp_path / "theirs.png"
    theirs.write_bytes(b"the colleague's scan")
    client.import_file("1", "doc", str(theirs), "c.png")
    got, code = outcome(lambda: tree.read(tree.open("/1/doc/a.pdf", os.O_RDONLY), 100, 0))
    assert code is not None or got != b"the colleague's scan", "c.png's bytes were served as a.pdf"


@pytest.mark.xfail(strict=True, reason="a rename whose download fails (the file was deleted elsewhere) leaves its "
                   "empty spool entry behind; once the mount ends it shows as unsent")
def test_a_failed_rename_leaves_no_spool_entry(mount: tuple) -> None:
    tree, client, spool = mount
    assert tree.readdir("/1/doc") == [("a.pdf", False)]
    client.delete_file("1", "doc")  # a colleague, through the API
    _, code = outcome(tree.rename, "/1/doc/a.pdf", "/1/doc/b.txt")
    assert code is not None
    assert [(e.state, e.target.name) for e in spool.entries()] == []


@pytest.mark.xfail(strict=True, reason="unlinking an editor's backup copy deletes the hidden server file of the "
                   "slot it is in now, matched by name only, even when the copy came from another slot")
def test_rm_of_a_backup_moved_from_another_slot_deletes_nothing_there(mount: tuple) -> None:
    tree, client, _ = mount
    write_file(tree, "/2/doc/a.pdf", b"record two")
    tree.rename("/2/doc/a.pdf", "/2/doc/a.pdf~")  # vim's backup: record 2's a.pdf hidden, kept on the server
    tree.rename("/1/doc/a.pdf", "/1/doc/a.pdf~")  # the same in record 1
    tree.rename("/1/doc/a.pdf~", "/2/doc/.a.pdf.swp")  # record 1's copy moved into record 2's folder
    tree.unlink("/2/doc/.a.pdf.swp")
    assert server_file(client, ("2", "doc", None)) == ("a.pdf", b"record two"), \
        "record 2's file was deleted; its only copy left is the local backup a.pdf~"


@pytest.mark.xfail(strict=True, reason="getattr with a reader's handle describes the file now at the path, not "
                   "the version the reader reads: after an overwrite the size is the new one (the kernel then ends "
                   "the reader's reads there), after an unlink it is ENOENT")
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
