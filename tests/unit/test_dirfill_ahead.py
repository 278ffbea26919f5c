"""dirfill.py's listings made ahead: used once, only while nothing changed, only for a moment.

Driven as libfuse drives it (the readdir callback with raw paths, offsets and a filler), over operations
that count their calls, so what is asserted is which requests reach the operations.
"""

from __future__ import annotations

import logging
import stat
from types import SimpleNamespace
from typing import Any

import pytest
from test_tree import make

from redcapfs import binding, dirfill
from redcapfs.fs.changes import ListingChanges
from redcapfs.fuse_ops import RedcapOperations

DOTS = [(".", stat.S_IFDIR, 0), ("..", stat.S_IFDIR, 0)]
FOLDER = {"st_mode": stat.S_IFDIR | 0o755, "st_nlink": 2}


class Ops:
    """A record folder ``/r`` with two slot folders; ``a`` holds ``x.pdf``."""

    def __init__(self) -> None:
        self.changes = ListingChanges()
        self.calls: list[str] = []
        self.used: list[str] = []
        self.files = {"a": ["x.pdf"], "b": []}

    def listing_state(self) -> tuple[int, int]:
        return self.changes.state()

    def readdir_plus(self, path: str, fh: int) -> list[Any]:
        self.calls.append(path)
        if path == "/r":
            return [*DOTS, *((name, FOLDER, 0) for name in self.files)]
        return [*DOTS, *((n, stat.S_IFREG, 0) for n in self.files[path.rsplit("/", 1)[1]])]

    def readdir_plus_below(self, path: str) -> dict[str, list[Any]]:
        if path != "/r":
            return {}
        return {name: [*DOTS, *((n, stat.S_IFREG, 0) for n in names)] for name, names in self.files.items()}

    def listing_used(self, path: str) -> None:
        self.used.append(path)


def fuse_for(ops: Ops) -> Any:
    return SimpleNamespace(operations=ops, encoding="utf-8", errors="surrogateescape", use_ns=True)


def listing(fuse: Any, path: bytes) -> list[str]:
    """One kernel listing: READDIRPLUS from 0, then plain READDIRs until an empty answer."""
    got: list[str] = []

    def filler(buf: Any, name: bytes, st: Any, offset: int, flags: int) -> int:
        got.append(name.decode())
        return 0

    fip = SimpleNamespace(contents=SimpleNamespace(fh=0))
    mfusepy = binding.load()
    offset, flags = 0, dirfill.FUSE_READDIR_PLUS
    while True:
        before = len(got)
        dirfill.readdir(mfusepy, fuse, path, None, filler, offset, fip, flags)
        if len(got) == before:
            return got
        offset, flags = len(got), 0


@pytest.fixture(autouse=True)
def _clean() -> None:
    dirfill._ahead.clear()
    dirfill._listings.clear()


def test_a_slot_folder_listed_just_after_its_record_is_answered_without_the_operations() -> None:
    ops = Ops()
    fuse = fuse_for(ops)
    assert listing(fuse, b"/r") == [".", "..", "a", "b"]
    assert listing(fuse, b"/r/a") == [".", "..", "x.pdf"]
    assert listing(fuse, b"/r/b") == [".", ".."]
    assert ops.calls == ["/r"]
    assert ops.used == ["/r/a"]  # the one that shows a file counts as listed (fs/prefetch.py)
    assert listing(fuse, b"/r/a") == [".", "..", "x.pdf"]  # used once: the next listing asks again
    assert ops.calls == ["/r", "/r/a"]


def test_a_change_between_the_record_listing_and_the_folder_listing_is_seen() -> None:
    ops = Ops()
    fuse = fuse_for(ops)
    listing(fuse, b"/r")
    with ops.changes.changing():  # a create through the mount (fuse_ops counts every such operation)
        ops.files["b"] = ["new.txt"]
    assert listing(fuse, b"/r/b") == [".", "..", "new.txt"]
    assert ops.calls == ["/r", "/r/b"]


def test_a_listing_made_ahead_is_good_only_for_a_moment(monkeypatch: pytest.MonkeyPatch) -> None:
    ops = Ops()
    fuse = fuse_for(ops)
    now = [1000.0]
    monkeypatch.setattr(dirfill.time, "monotonic", lambda: now[0])
    listing(fuse, b"/r")
    now[0] += dirfill.AHEAD_FOR + 0.01
    ops.files["a"] = []  # a change learnt from REDCap, which moves no generation
    assert listing(fuse, b"/r/a") == [".", ".."]
    assert ops.calls == ["/r", "/r/a"]


def test_operations_without_generations_never_get_listings_made_ahead() -> None:
    ops = Ops()
    ops.listing_state = None  # type: ignore[assignment,method-assign]  # the bench's passthrough has neither
    fuse = fuse_for(ops)
    listing(fuse, b"/r")
    listing(fuse, b"/r/a")
    assert ops.calls == ["/r", "/r/a"]
    assert dirfill._ahead == {}


def test_nothing_is_made_ahead_while_a_change_runs_nor_used_after_one_began() -> None:
    """A change running when the record is listed (a rename still deleting its source) may land after the
    record's listing: nothing is made ahead then. One that begins after it voids what was made."""
    ops = Ops()
    fuse = fuse_for(ops)
    ops.changes.begin()
    listing(fuse, b"/r")
    assert dirfill._ahead == {}
    ops.files["b"] = ["moved.pdf"]
    ops.changes.end()
    assert listing(fuse, b"/r/b") == [".", "..", "moved.pdf"]
    listing(fuse, b"/r")
    ops.changes.begin()  # begun, not yet ended: what was made is not used, even for a slot it has not touched
    assert listing(fuse, b"/r/a") == [".", "..", "x.pdf"]
    ops.changes.end()
    assert ops.calls == ["/r", "/r/b", "/r", "/r/a"]


def test_many_records_listed_and_never_entered_keep_the_store_bounded() -> None:
    ops = Ops()
    fuse = fuse_for(ops)
    for _ in range(dirfill._AHEAD_KEPT):  # the same record again and again: its entries move to the end
        listing(fuse, b"/r")
    assert len(dirfill._ahead) == 2
    assert listing(fuse, b"/r/a") == [".", "..", "x.pdf"]
    assert ops.calls.count("/r/a") == 0


def test_a_tree_that_fails_to_list_ahead_leaves_the_parents_listing_alone(tmp_path: Any, monkeypatch: Any,
                                                                         caplog: Any) -> None:
    """fuse_ops over a real Tree (the in-process sandbox): a failure while making the listings ahead, or
    while noting one was used, is logged and answers nothing ahead; the folders then list as usual."""
    tree, _ = make(tmp_path)
    ops = RedcapOperations(tree)
    record = "/1"  # a classic project: a record's folders are its slot folders
    ops.readdir_plus(record, 0)  # the parent's own listing comes first, as in dirfill
    made = ops.readdir_plus_below(record)
    assert made and all(entries[:2] == DOTS for entries in made.values())

    def broken(*args: Any) -> Any:
        raise OSError("disk gone")

    monkeypatch.setattr(tree.listings, "below", broken)
    monkeypatch.setattr(tree.listings, "used", broken)
    with caplog.at_level(logging.DEBUG, logger="redcapfs.fuse_ops"):
        assert ops.readdir_plus_below(record) == {}
        ops.listing_used(record + "/" + next(iter(made)))  # bookkeeping only: never raises
    assert sum("disk gone" in r.getMessage() for r in caplog.records) == 2
    for component in made:  # each folder's own listing still answers
        names = [entry[0] for entry in ops.readdir_plus(f"{record}/{component}", 0)]
        assert names[:2] == [".", ".."]
