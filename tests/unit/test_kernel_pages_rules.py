"""The rules of fs/kernelpages.py: when a reopen may keep the kernel's pages, with real cache entries.

Versions are the content cache's own objects: entries of a real :class:`ContentCache` and the flight of
a download in progress (released by the test), so "the same version" means what the mount means by it.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from redcapfs.cache import ContentCache, Entry, Flight
from redcapfs.fs.kernelpages import KernelPages

P = "/1/scan/a.bin"


def entry(cache: ContentCache, key: str, body: bytes) -> Entry:
    cache.invalidate(key)
    return cache.fetch(key, lambda out: out.write(body))


def open_(pages: KernelPages, fh: int, version: Any, path: str = P) -> bool:
    pages.opened(fh, path, version)
    return pages.keeps(fh)


def test_the_same_entry_keeps_and_a_new_one_drops(tmp_path: Path) -> None:
    cache, pages = ContentCache(tmp_path / "c", 1 << 30, 300), KernelPages()
    one = entry(cache, "k", b"one")
    assert open_(pages, 1, one) is False  # the first open drops whatever the kernel had
    pages.closed(1)
    assert open_(pages, 2, one) is True
    pages.closed(2)
    two = entry(cache, "k", b"two")  # a colleague's replace: a new entry for the same key
    assert [open_(pages, 3, two), open_(pages, 4, two)] == [False, True]
    assert pages.keeps(4) is False  # asked once


def test_a_finished_download_is_the_entry_it_became(tmp_path: Path) -> None:
    cache, pages = ContentCache(tmp_path / "c", 1 << 30, 300), KernelPages()
    go = threading.Event()

    def slow(out: Any) -> None:
        go.wait(10)
        out.write(b"body")

    flight = cache.start("k", slow)
    assert isinstance(flight, Flight)
    assert open_(pages, 1, flight) is False  # a cold open never keeps
    go.set()
    done = cache.fetch("k", slow)
    pages.closed(1)
    assert open_(pages, 2, done) is True


def test_a_failed_download_leaves_nothing_to_keep(tmp_path: Path) -> None:
    cache, pages = ContentCache(tmp_path / "c", 1 << 30, 300), KernelPages()

    def broken(out: Any) -> None:
        out.write(b"half")
        raise OSError("broke")

    flight = cache.start("k", broken)
    assert isinstance(flight, Flight)
    flight.done.wait(10)
    assert open_(pages, 1, flight) is False
    pages.closed(1)
    assert open_(pages, 2, entry(cache, "k", b"whole")) is False


def test_an_open_handle_on_another_version_or_a_writer_stops_keeping(tmp_path: Path) -> None:
    cache, pages = ContentCache(tmp_path / "c", 1 << 30, 300), KernelPages()
    one = entry(cache, "k", b"one")
    assert open_(pages, 1, one) is False  # still open: its reads may add pages of one
    two = entry(cache, "k", b"two")
    assert [open_(pages, 2, two), open_(pages, 3, two)] == [False, False]
    for fh in (1, 2, 3):
        pages.closed(fh)
    assert [open_(pages, 4, two), open_(pages, 5, two)] == [False, True]
    assert open_(pages, 6, None) is False  # a writer
    assert open_(pages, 7, two) is False
    pages.closed(6)
    pages.closed(7)
    assert [open_(pages, 8, two), open_(pages, 9, two)] == [False, True]


def test_truncate_unlink_and_rename_make_the_path_dirty(tmp_path: Path) -> None:
    cache, pages = ContentCache(tmp_path / "c", 1 << 30, 300), KernelPages()
    one = entry(cache, "k", b"one")
    other = "/1/scan/b.bin"
    for change in (lambda: pages.changed(P), lambda: pages.moved(P, None), lambda: pages.moved(other, P),
                   lambda: pages.moved(P, other)):
        for fh in (1, 2):
            open_(pages, fh, one)
            pages.closed(fh)
        change()
        assert open_(pages, 3, one) is False, change
        pages.closed(3)


def test_a_handle_renamed_onto_a_path_counts_there(tmp_path: Path) -> None:
    cache, pages = ContentCache(tmp_path / "c", 1 << 30, 300), KernelPages()
    one, other = entry(cache, "k", b"one"), entry(cache, "j", b"other")
    assert open_(pages, 1, other, "/1/scan/b.bin") is False  # stays open while it is renamed
    pages.moved("/1/scan/b.bin", P)
    assert [open_(pages, 2, one), open_(pages, 3, one)] == [False, False]


def test_only_the_latest_paths_are_remembered(tmp_path: Path, monkeypatch: Any) -> None:
    from redcapfs.fs import kernelpages

    monkeypatch.setattr(kernelpages, "KEPT_PATHS", 2)
    cache, pages = ContentCache(tmp_path / "c", 1 << 30, 300), KernelPages()
    one = entry(cache, "k", b"one")
    for fh, path in enumerate(("/a", "/b", "/c"), start=1):
        open_(pages, fh, one, path)
        pages.closed(fh)
    assert [open_(pages, 4, one, "/a"), open_(pages, 5, one, "/c")] == [False, True]


# ------------------------------------------------------------ direct handles (FOPEN_DIRECT_IO)
def test_a_lone_write_only_open_is_direct_and_so_is_every_open_beside_it(tmp_path: Path) -> None:
    cache, pages = ContentCache(tmp_path / "c", 1 << 30, 300), KernelPages()
    one = entry(cache, "k", b"one")
    pages.opened(1, P, None, write_only=True)
    pages.opened(2, P, one)  # a reader while the writer is open: direct too, and it keeps nothing
    pages.opened(3, "/1/scan/b.bin", one)  # another path is another inode
    assert [pages.direct(1), pages.direct(2), pages.direct(3), pages.keeps(2)] == [True, True, False, False]
    pages.closed(1)
    pages.opened(4, P, one)  # the direct reader is still open: still all direct
    assert pages.direct(4)
    for fh in (2, 4):
        pages.closed(fh)
    assert [open_(pages, 5, one), pages.direct(5)] == [False, False]  # cached again; drops what may be there
    pages.closed(5)
    assert open_(pages, 6, one) is True
    assert pages.direct_opens == 3


def test_a_write_only_open_beside_a_cached_handle_is_cached_and_read_write_never_direct(tmp_path: Path) -> None:
    cache, pages = ContentCache(tmp_path / "c", 1 << 30, 300), KernelPages()
    pages.opened(1, P, entry(cache, "k", b"one"))
    pages.opened(2, P, None, write_only=True)
    pages.opened(3, "/1/scan/b.bin", None)  # O_RDWR, alone
    assert [pages.direct(1), pages.direct(2), pages.direct(3)] == [False, False, False]
    assert pages.direct_opens == 0


def test_direct_handles_move_with_their_name_only_once_the_rename_is_done(tmp_path: Path) -> None:
    cache, pages = ContentCache(tmp_path / "c", 1 << 30, 300), KernelPages()
    one, other = entry(cache, "k", b"one"), "/1/scan/b.bin"
    pages.opened(1, P, None, write_only=True)
    pages.moved(P, other)
    pages.opened(2, other, one)
    pages.opened(3, P, one)
    assert [pages.direct(2), pages.direct(3)] == [True, False]
    pages.moved(other, None)  # unlinked while open: its handles touch no path's pages
    pages.opened(4, other, one)
    assert pages.direct(4) is False


class DirectModel(RuleBasedStateMachine):
    """Any opens, closes, renames and unlinks: the handles open on one path are all direct or all cached."""

    def __init__(self) -> None:
        super().__init__()
        self.pages, self.fh = KernelPages(), 0
        self.where: dict[int, str] = {}  # fh -> path, as the kernel has it

    @rule(path=st.sampled_from(["/a", "/b", "/c"]), write_only=st.booleans())
    def open(self, path: str, write_only: bool) -> None:
        self.fh += 1
        self.pages.opened(self.fh, path, None, write_only=write_only)
        alone = all(p != path for p in self.where.values())
        self.where[self.fh] = path
        if write_only and alone:
            assert self.pages.direct(self.fh)

    @rule(data=st.data())
    def close(self, data: st.DataObject) -> None:
        if self.where:
            fh = data.draw(st.sampled_from(sorted(self.where)))
            self.pages.closed(fh)
            del self.where[fh]

    @rule(old=st.sampled_from(["/a", "/b", "/c"]), new=st.sampled_from(["/a", "/b", "/c", None]))
    def move(self, old: str, new: str | None) -> None:
        if old == new:
            return
        self.pages.moved(old, new)
        for fh, path in list(self.where.items()):
            if path == old:
                self.where[fh] = new or f"gone{fh}"
            elif path == new:
                self.where[fh] = f"gone{fh}"

    @invariant()
    def one_mode_per_inode(self) -> None:
        for path in ("/a", "/b", "/c"):
            modes = {self.pages.direct(fh) for fh, p in self.where.items() if p == path}
            assert len(modes) <= 1, (path, self.where)


TestDirectModel = DirectModel.TestCase
TestDirectModel.settings = settings(max_examples=300, stateful_step_count=30, deadline=None)
