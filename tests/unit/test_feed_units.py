"""The change feed, the manifest and sizes asked ahead, over the sandbox's API in-process (issue 11).

The real-mount tests (tests/mount/test_change_feed.py) prove the same through
the kernel; these pin the decisions: which log rows are a colleague's, what a
poll re-reads, what a remount trusts, and that sizes ahead really overlap.
"""

from __future__ import annotations

import errno
import os
import threading
from pathlib import Path

import pytest

from redcapfs.attrs import AttrStore
from redcapfs.cache import ContentCache
from redcapfs.errors import FileChanged, errno_for
from redcapfs.fs import logrows
from redcapfs.manifest import Manifest
from redcapfs.sandbox.inprocess import InProcessClient
from redcapfs.shape import ProjectShape, Slot
from redcapfs.spool import Spool
from redcapfs.tree import Tree, TreeOptions


def meta(name: str, form: str, ftype: str = "text") -> dict:
    return {"field_name": name, "form_name": form, "field_type": ftype,
            "text_validation_type_or_show_slider_number": ""}


METADATA = [meta("record_id", "main"), meta("note", "main"), meta("doc", "main", "file"),
            meta("att", "attachments", "file")]
DOC = Slot("1", None, "doc", None)


def make(tmp_path: Path, manifest: Manifest | None = None, **opts) -> tuple[Tree, InProcessClient]:
    """A project with four files in record 1, and a Tree over it (the feed not started)."""
    client = InProcessClient.build(
        tmp_path / "redcap", metadata=METADATA, repeating=[{"form_name": "attachments", "custom_form_label": ""}],
        records=[{"record_id": "1"}, {"record_id": "2"}],
        files={("1", None, "doc", 1): ("a.pdf", b"original"), ("1", None, "att", 1): ("x1.txt", b"one"),
               ("1", None, "att", 2): ("x2.txt", b"two"), ("1", None, "att", 3): ("x3.txt", b"three")})
    return build_tree(client, tmp_path, manifest, **opts), client


def build_tree(client: InProcessClient, tmp_path: Path, manifest: Manifest | None = None, **opts) -> Tree:
    """A Tree (a mount) over ``client``'s project; its local stores under ``tmp_path``."""
    shape = ProjectShape.from_api(client.project_info(), client.metadata(), client.arms(), client.events(),
                                  client.form_event_mapping(), client.repeating_forms_events())
    options = TreeOptions(poll=opts.pop("poll", 3600.0), **opts)
    tree = Tree(client, shape, cache=ContentCache(tmp_path / "cache", 1 << 20, 60), attrs=AttrStore(None),
                spool=Spool(tmp_path / "spool"), url="mem://", project_id="1", options=options,
                manifest=manifest)
    with tree.records.view():
        pass
    return tree


def upload(client: InProcessClient, tmp_path: Path, name: str, data: bytes) -> None:
    src = tmp_path / f"src-{name}"
    src.write_bytes(data)
    client.import_file("1", "doc", str(src), name)


def read_all(tree: Tree, path: str) -> bytes:
    fh = tree.open(path, os.O_RDONLY)
    try:
        return tree.read(fh, 1 << 20, 0)
    finally:
        tree.release(fh)


def test_log_rows_name_the_files_they_change() -> None:
    rows = [{"timestamp": "2026-01-02 10:05", "username": "bob", "action": "Update record (API) 1",
             "details": "doc = '17', instance = 1", "record": "1"},
            {"timestamp": "2026-01-02 10:04", "username": "bob", "action": "Download file (API)",
             "details": "doc = '17'", "record": "1"},
            {"timestamp": "2026-01-02 10:06", "username": "bob", "action": "Manage/Design ",
             "details": "Edit project field", "record": ""}]
    changes = logrows.parse(rows)
    assert [(c.record, sorted(c.fields), c.instance, c.design) for c in changes] == [
        ("1", ["doc"], 1, False), ("", [], None, True)]
    assert logrows.stamp_ns("2026-01-02 10:05") is not None


def test_a_colleagues_replace_with_same_name_and_size_is_seen_by_the_next_poll(tmp_path: Path) -> None:
    tree, client = make(tmp_path)
    assert tree.start_feed() == "" and tree.feed.mode == "log"
    assert read_all(tree, "/1/doc/a.pdf") == b"original"
    before = tree.getattr("/1/doc/a.pdf").mtime_ns
    upload(client.with_token(username="bob"), tmp_path, "a.pdf", b"ORIGINAL")  # same name and size
    assert tree.feed.poll_now() == 1  # one record re-read
    assert read_all(tree, "/1/doc/a.pdf") == b"ORIGINAL"
    assert tree.getattr("/1/doc/a.pdf").mtime_ns > before
    assert tree.feed.poll_now() == 0  # nothing new: the cursor's minute is not applied twice


def test_our_own_upload_is_not_taken_for_a_colleagues(tmp_path: Path) -> None:
    tree, _client = make(tmp_path)
    tree.start_feed()
    fh = tree.open("/1/doc/a.pdf", os.O_WRONLY | os.O_TRUNC)
    tree.write(fh, b"mine", 0)
    tree.flush(fh)
    tree.release(fh)
    tree.feed.poll_now()
    assert tree.slots.version(DOC) == 0
    assert tree.slots.size(DOC, "a.pdf") == 4  # still known: no file call needed


def test_a_close_over_a_colleagues_newer_version_is_estale_and_kept_as_conflict(tmp_path: Path) -> None:
    tree, client = make(tmp_path)
    tree.start_feed()
    fh = tree.open("/1/doc/a.pdf", os.O_WRONLY | os.O_TRUNC)
    tree.write(fh, b"alice", 0)
    upload(client.with_token(username="bob"), tmp_path, "a.pdf", b"bob's")
    tree.feed.poll_now()
    imports = client.calls[("file", "import")]
    for _attempt in range(2):  # the close, and a retry of it: refused both times, nothing sent
        with pytest.raises(FileChanged) as info:
            tree.flush(fh)
        assert errno_for(info.value) == errno.ESTALE
    tree.release(fh)
    assert client.calls[("file", "import")] == imports
    out = tmp_path / "check"
    with open(out, "wb") as fh_out:
        client.export_file("1", "doc", fh_out)
    assert out.read_bytes() == b"bob's"
    assert [e.status() for e in tree.spool.unsent()] == ["conflict"]


def test_a_remount_trusts_sizes_only_while_the_log_covers_the_gap(tmp_path: Path) -> None:
    manifest = Manifest(tmp_path / "manifest.sqlite")
    tree, client = make(tmp_path, manifest=manifest)
    tree.start_feed()
    assert tree.getattr("/1/doc/a.pdf").size == 8
    assert tree.getattr("/1/att/1/x1.txt").size == 3
    assert oct((tmp_path / "manifest.sqlite").stat().st_mode & 0o777) == "0o600"
    assert b"a.pdf" not in (tmp_path / "manifest.sqlite").read_bytes()  # hashed keys only
    tree.feed.stop()
    upload(client.with_token(username="bob"), tmp_path, "a.pdf", b"12345678901")  # while unmounted
    tree2 = build_tree(client, tmp_path / "remount", Manifest(tmp_path / "manifest.sqlite"))
    asked = sum(n for (content, _), n in client.calls.items() if content == "file")
    tree2.start_feed()  # reads the gap: record 1 changed, its entry goes; the others stay trusted
    assert tree2.getattr("/1/doc/a.pdf").size == 11
    assert sum(n for (c, _), n in client.calls.items() if c == "file") == asked + 1  # the changed file only
    assert tree2.getattr("/1/att/1/x1.txt").size == 3
    assert sum(n for (c, _), n in client.calls.items() if c == "file") == asked + 1


def test_sizes_ahead_are_in_flight_together(tmp_path: Path) -> None:
    tree, client = make(tmp_path, poll=0.0, sizes_ahead=4)
    barrier = threading.Barrier(4, timeout=10)
    met = []
    real = client.file_info

    def file_info(*args, **kw):  # 4 lookups must be in flight at once to pass
        try:
            barrier.wait()
            met.append(True)
        except threading.BrokenBarrierError:
            met.append(False)
        return real(*args, **kw)

    client.file_info = file_info  # type: ignore[method-assign]
    tree.readdir("/1/doc")
    assert tree.getattr("/1/doc/a.pdf").size == 8  # waits at the barrier until three lookups joined it
    tree.ahead.close()
    for path, size in (("/1/att/1/x1.txt", 3), ("/1/att/2/x2.txt", 3), ("/1/att/3/x3.txt", 5)):
        assert tree.getattr(path).size == size
    assert met == [True] * 4


def test_a_plain_listing_asks_nothing_ahead(tmp_path: Path) -> None:
    """`ls` and `find`: listings and stats of directories, never a file's size."""
    tree, client = make(tmp_path, poll=0.0, sizes_ahead=4)
    calls: list[tuple] = []
    real = client.file_info

    def file_info(*args, **kw):
        calls.append(args)
        return real(*args, **kw)

    client.file_info = file_info  # type: ignore[method-assign]
    for path in ("/", "/1", "/1/doc", "/1/att", "/1/att/1", "/1/att/2"):
        tree.readdir(path)
        assert tree.getattr(path).is_dir
    tree.ahead.close()
    assert calls == []
