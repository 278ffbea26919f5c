"""The filesystem's semantics (``Tree``) over the sandbox's API in-process: fast checks of the rules.

The real-mount tests (tests/mount) prove the same rules through the kernel and
the sandbox; these pin the decisions themselves and run in milliseconds.
"""

from __future__ import annotations

import errno
import os
import threading
from pathlib import Path

import pytest

from redcapfs.attrs import AttrStore
from redcapfs.cache import ContentCache
from redcapfs.errors import errno_for
from redcapfs.fs.localfiles import FileState
from redcapfs.fs.slots import Origin
from redcapfs.sandbox.inprocess import InProcessClient
from redcapfs.shape import ProjectShape, Slot
from redcapfs.spool import Spool
from redcapfs.tree import Tree, TreeOptions


def meta(name: str, form: str, ftype: str = "text", validation: str = "") -> dict:
    return {"field_name": name, "form_name": form, "field_type": ftype,
            "text_validation_type_or_show_slider_number": validation}


METADATA = [meta("record_id", "main"), meta("doc", "main", "file"), meta("sig", "main", "file", "signature"),
            meta("att", "attachments", "file")]


def make(tmp_path: Path, **client_kw) -> tuple[Tree, InProcessClient]:
    kw = dict(metadata=METADATA, repeating=[{"form_name": "attachments", "custom_form_label": ""}],
              records=[{"record_id": "1"}, {"record_id": "2"}, {"record_id": "3"}],
              files={("1", None, "doc", 1): ("a.pdf", b"original")})
    kw.update(client_kw)
    read_only = kw.pop("read_only", False)
    client = InProcessClient.build(tmp_path / "redcap", **kw)
    shape = ProjectShape.from_api(client.project_info(), client.metadata(), client.arms(), client.events(),
                                  client.form_event_mapping(), client.repeating_forms_events())
    tree = Tree(client, shape, cache=ContentCache(tmp_path / "cache", 1 << 20, 60), attrs=AttrStore(None),
                spool=Spool(tmp_path / "spool"), url="mem://", project_id="1",
                options=TreeOptions(read_only=read_only))
    return tree, client


def write_file(tree: Tree, path: str, data: bytes) -> None:
    fh = tree.create(path, 0o100644)
    tree.write(fh, data, 0)
    tree.flush(fh)
    tree.release(fh)


def err(fn) -> int:
    with pytest.raises(Exception) as info:
        fn()
    return errno_for(info.value)


def test_listing_and_reading(tmp_path: Path) -> None:
    tree, client = make(tmp_path)
    assert [n for n, _ in tree.readdir("/")] == [".repository", "1", "2", "3"]  # the File Repository first
    assert tree.readdir("/1/doc") == [("a.pdf", False)]
    assert client.calls[("file", "export")] == 0, "listing downloads nothing"
    assert tree.getattr("/1/doc/a.pdf").size == 8
    fh = tree.open("/1/doc/a.pdf", os.O_RDONLY)
    assert tree.read(fh, 100, 0) == b"original"
    tree.release(fh)
    assert err(lambda: tree.getattr("/9")) == errno.ENOENT
    assert err(lambda: tree.getattr("/1/doc/b.pdf")) == errno.ENOENT


def test_upload_on_close_and_one_file_per_slot(tmp_path: Path) -> None:
    tree, client = make(tmp_path)
    write_file(tree, "/2/doc/new.pdf", b"new")
    assert client.calls[("file", "import")] == 1
    assert tree.readdir("/2/doc") == [("new.pdf", False)]
    assert err(lambda: tree.create("/2/doc/other.pdf", 0o100644)) == errno.EEXIST
    assert err(lambda: tree.create("/1/sig/s.png", 0o100644)) == errno.EPERM


def test_a_handle_that_only_truncated_uploads_once_at_release(tmp_path: Path) -> None:
    tree, client = make(tmp_path)
    fh = tree.open("/1/doc/a.pdf", os.O_WRONLY | os.O_TRUNC)
    tree.flush(fh)  # a shell closing its duplicate descriptor before writing
    assert client.calls[("file", "import")] == 0
    tree.write(fh, b"replaced", 0)
    tree.flush(fh)
    tree.release(fh)
    assert client.calls[("file", "import")] == 1


def test_temporary_names_stay_local_until_renamed(tmp_path: Path) -> None:
    tree, client = make(tmp_path)
    write_file(tree, "/1/doc/.a.pdf.Ab12Cd", b"v2")
    assert client.calls[("file", "import")] == 0
    tree.rename("/1/doc/.a.pdf.Ab12Cd", "/1/doc/a.pdf")
    assert client.calls[("file", "import")] == 1
    assert tree.readdir("/1/doc") == [("a.pdf", False)]
    assert tree.getattr("/1/doc/a.pdf").size == 2


def test_failed_upload_keeps_the_bytes(tmp_path: Path) -> None:
    tree, _ = make(tmp_path, locked=["2"])
    fh = tree.create("/2/doc/x.pdf", 0o100644)
    tree.write(fh, b"precious", 0)
    assert err(lambda: tree.flush(fh)) == errno.EROFS
    tree.release(fh)
    (entry,) = tree.spool.unsent()
    assert entry.data_path.read_bytes() == b"precious" and "locked" in entry.error
    assert tree.readdir("/2/doc") == []


def test_read_only_and_export_only(tmp_path: Path) -> None:
    tree, _ = make(tmp_path, read_only=True)
    assert err(lambda: tree.create("/2/doc/x.pdf", 0o100644)) == errno.EROFS
    assert err(lambda: tree.unlink("/1/doc/a.pdf")) == errno.EROFS
    tree2, client2 = make(tmp_path / "b", rights="export")
    assert err(lambda: tree2.create("/2/doc/x.pdf", 0o100644)) == errno.EACCES
    assert client2.calls[("file", "import")] == 0


def test_instances_records_and_directory_rules(tmp_path: Path) -> None:
    tree, client = make(tmp_path)
    tree.mkdir("/2/att/1", 0o755)
    assert tree.readdir("/2/att") == [("1", True)]
    write_file(tree, "/2/att/1/p.png", b"png")
    assert client.calls[("file", "import")] == 1
    tree.mkdir("/77", 0o755)
    assert "77" in [n for n, _ in tree.readdir("/")]
    assert err(lambda: tree.mkdir("/1/doc/sub", 0o755)) == errno.EPERM
    assert err(lambda: tree.rename("/1/doc", "/1/doc2")) == errno.EPERM
    tree.unlink("/1/doc/a.pdf")
    assert client.calls[("file", "delete")] == 1 and tree.readdir("/1/doc") == []


def test_a_refused_rename_of_a_temporary_file_keeps_its_bytes_past_unmount(tmp_path: Path) -> None:
    tree, _ = make(tmp_path, locked=["1"])
    write_file(tree, "/1/doc/lu123.tmp", b"the newest save")
    assert err(lambda: tree.rename("/1/doc/lu123.tmp", "/1/doc/a.pdf")) == errno.EROFS
    assert ("lu123.tmp", False) in tree.readdir("/1/doc")
    tree.shutdown()
    (entry,) = tree.spool.unsent()
    assert entry.data_path.read_bytes() == b"the newest save" and entry.target.name == "a.pdf"


# ------------------------------------------------------------------ the pieces behind the facade


def test_a_file_being_written_moves_through_named_states(tmp_path: Path) -> None:
    tree, client = make(tmp_path, locked=["2"])
    fh = tree.create("/3/doc/n.pdf", 0o100644)
    local = tree.handles.get(fh).local
    assert local is not None and local.state is FileState.NEW
    tree.flush(fh)  # nothing written yet: a NEW file is sent at the last close, not at a flush
    assert local.state is FileState.NEW and client.calls[("file", "import")] == 0
    tree.write(fh, b"n", 0)
    assert local.state is FileState.DIRTY
    tree.flush(fh)
    assert local.state is FileState.CLEAN and client.calls[("file", "import")] == 1
    with pytest.raises(AssertionError):
        local.to(FileState.NEW)  # not a transition of the machine
    tree.release(fh)

    fh = tree.open("/3/doc/n.pdf", os.O_WRONLY | os.O_TRUNC)
    local = tree.handles.get(fh).local
    assert local is not None and local.state is FileState.TRUNCATED
    tree.release(fh)  # a bare truncation is sent at the last close
    assert client.calls[("file", "import")] == 2 and local.state is FileState.CLEAN

    fh = tree.create("/2/doc/x.pdf", 0o100644)  # record 2 is locked
    local = tree.handles.get(fh).local
    assert local is not None
    tree.write(fh, b"kept", 0)
    assert err(lambda: tree.flush(fh)) == errno.EROFS
    assert local.state is FileState.UNSENT
    tree.release(fh)
    assert [e.target.name for e in tree.spool.unsent()] == ["x.pdf"]


def test_an_unlinked_new_file_is_never_sent(tmp_path: Path) -> None:
    tree, client = make(tmp_path)
    fh = tree.create("/3/doc/gone.pdf", 0o100644)
    tree.write(fh, b"draft", 0)
    local = tree.handles.get(fh).local
    tree.unlink("/3/doc/gone.pdf")
    assert local is not None and local.state is FileState.UNLINKED
    assert tree.readdir("/3/doc") == []
    tree.write(fh, b"more", 5)  # writes to an unlinked file go nowhere, as on any filesystem
    tree.flush(fh)
    tree.release(fh)
    assert client.calls[("file", "import")] == 0 and tree.spool.entries() == []


def test_the_slot_model_after_an_upload_a_delete_and_a_refresh(tmp_path: Path) -> None:
    tree, client = make(tmp_path)
    server = tree.slots.server_file(Slot("1", None, "doc", None))
    assert server is not None and (server.name, server.size, server.origin) == ("a.pdf", None, Origin.SERVER)
    st = tree.getattr("/1/doc/a.pdf")
    assert st.size == 8
    full = tree.slots.describe(Slot("1", None, "doc", None))
    assert full is not None and (full.size, full.mtime_ns) == (8, st.mtime_ns)

    slot = Slot("2", None, "doc", None)
    assert tree.slots.server_file(slot) is None
    write_file(tree, "/2/doc/new.pdf", b"new")
    ours = tree.slots.server_file(slot)
    assert ours is not None and (ours.name, ours.size, ours.origin) == ("new.pdf", 3, Origin.UPLOAD)
    exports = client.calls[("file", "export")]
    fh = tree.open("/2/doc/new.pdf", os.O_RDONLY)
    assert tree.read(fh, 10, 0) == b"new" and client.calls[("file", "export")] == exports, "read from our upload"
    tree.release(fh)

    tree.unlink("/2/doc/new.pdf")
    assert tree.slots.server_file(slot) is None and tree.readdir("/2/doc") == []

    write_file(tree, "/3/doc/c.pdf", b"c")
    tree.records.invalidate()  # a refresh: the server now lists it too, and it is still known as ours
    assert tree.readdir("/3/doc") == [("c.pdf", False)]
    ours = tree.slots.server_file(Slot("3", None, "doc", None))
    assert ours is not None and (ours.name, ours.size, ours.origin) == ("c.pdf", 1, Origin.UPLOAD)


class _HeldExports:
    """The tree's real client, except that records exports wait until ``gate`` opens (a slow server)."""

    def __init__(self, real: object) -> None:
        self.real = real
        self.gate = threading.Event()
        self.started = threading.Event()

    def __getattr__(self, name: str) -> object:
        return getattr(self.real, name)

    def export_records(self, *args: object, **kwargs: object) -> object:
        self.started.set()
        self.gate.wait(60)
        return self.real.export_records(*args, **kwargs)  # type: ignore[attr-defined]


def test_listings_do_not_wait_for_a_refresh_but_a_create_does(tmp_path: Path) -> None:
    tree, _ = make(tmp_path)
    assert tree.readdir("/1/doc") == [("a.pdf", False)]  # the first index is loaded
    held = _HeldExports(tree.records.client)
    tree.records.client = held  # type: ignore[assignment]
    before = tree.records.refreshes
    tree.records.expire()

    assert [n for n, _ in tree.readdir("/")] == [".repository", "1", "2", "3"]  # answered from the index it has
    assert held.started.wait(30), "the listing started a refresh"
    assert tree.getattr("/1/doc/a.pdf").size == 8
    assert tree.records.refreshes == before, "the listing returned while the export was still held"

    seen: list[int] = []

    def create() -> None:
        write_file(tree, "/2/doc/made.pdf", b"m")
        seen.append(tree.records.refreshes)

    creator = threading.Thread(target=create)
    creator.start()
    held.gate.set()
    creator.join(30)
    assert seen == [before + 1], "the create's slot check waited for the refresh"
