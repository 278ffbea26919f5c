"""The rules of fs/kernelpages.py: when a reopen may keep the kernel's pages, with real cache entries.

Versions are the content cache's own objects: entries of a real :class:`ContentCache` and the flight of
a download in progress (released by the test), so "the same version" means what the mount means by it.
"""

from __future__ import annotations

import os
import threading
import time
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
W, R, RW = os.O_WRONLY, os.O_RDONLY, os.O_RDWR


def test_a_lone_write_only_open_is_direct_and_so_is_every_open_beside_it(tmp_path: Path) -> None:
    cache, pages = ContentCache(tmp_path / "c", 1 << 30, 300), KernelPages()
    one = entry(cache, "k", b"one")
    pages.opened(1, P, None, W)
    pages.opened(2, P, one, R)  # a reader while the writer is open: direct too, and it keeps nothing
    pages.opened(3, P, None, RW)  # a read-write open beside it: direct, and a writer in its turn
    pages.opened(4, "/1/scan/b.bin", one)  # another path is another inode
    assert [pages.direct(h) for h in (1, 2, 3, 4)] == [True, True, True, False]
    assert pages.keeps(2) is False
    pages.closed(1)
    pages.opened(5, P, one)  # the read-write one is still open
    assert pages.direct(5)
    pages.closed(3)
    pages.opened(6, P, one)  # only direct readers left: they write nothing, so this one is cached
    assert [pages.direct(6), pages.keeps(6)] == [False, False]
    for fh in (2, 5, 6):
        pages.closed(fh)
    assert [open_(pages, 7, one), pages.direct(7)] == [False, False]  # drops what a mapping may have left
    pages.closed(7)
    assert open_(pages, 8, one) is True
    assert pages.direct_opens == 4


def test_a_write_only_open_beside_another_handle_is_cached_and_read_write_alone_never_direct(
        tmp_path: Path) -> None:
    cache, pages = ContentCache(tmp_path / "c", 1 << 30, 300), KernelPages()
    pages.opened(1, P, entry(cache, "k", b"one"), R)
    pages.opened(2, P, None, W)
    pages.opened(3, "/1/scan/b.bin", None, RW)
    pages.opened(4, "/1/scan/c.bin", None)  # no access given: a reader
    assert [pages.direct(h) for h in (1, 2, 3, 4)] == [False] * 4
    off = KernelPages(direct_writes=False)  # -o direct_writes=off
    off.opened(1, P, None, W)
    assert off.direct(1) is False and off.direct_opens == 0


def test_direct_handles_move_with_their_name(tmp_path: Path) -> None:
    cache, pages = ContentCache(tmp_path / "c", 1 << 30, 300), KernelPages()
    one, other = entry(cache, "k", b"one"), "/1/scan/b.bin"
    pages.opened(1, P, None, W)
    pages.moved(P, other)
    pages.opened(2, other, one)
    pages.opened(3, P, one)
    assert [pages.direct(2), pages.direct(3)] == [True, False]
    pages.moved(other, None)  # unlinked while open: its handles touch no path's pages
    pages.opened(4, other, one)
    assert pages.direct(4) is False


def test_an_open_waits_for_a_closed_writers_release_but_only_once_for_one_that_stays(monkeypatch: Any) -> None:
    from redcapfs.fs import kernelpages

    monkeypatch.setattr(kernelpages, "RELEASE_WAIT", 5.0)
    pages = KernelPages()
    pages.opened(1, P, None, W)
    pages.flushed(1)  # its close returned; the RELEASE is on its way
    threading.Timer(0.2, pages.closed, (1,)).start()
    began = time.monotonic()
    pages.opened(2, P, None, R)
    assert 0.15 < time.monotonic() - began < 4 and pages.direct(2) is False  # waited for it, then cached
    pages.closed(2)

    monkeypatch.setattr(kernelpages, "RELEASE_WAIT", 0.2)
    pages.opened(3, P, None, W)
    pages.flushed(3)  # closed once, still held (a duplicate descriptor): no RELEASE comes
    began = time.monotonic()
    pages.opened(4, P, None, R)
    assert time.monotonic() - began >= 0.2 and pages.direct(4)
    began = time.monotonic()
    pages.opened(5, P, None, R)  # waited for in vain once: not again
    assert time.monotonic() - began < 0.15 and pages.direct(5)
    pages.opened(6, "/1/scan/b.bin", None, W)  # an unflushed direct writer: no wait beside it
    began = time.monotonic()
    pages.opened(7, "/1/scan/b.bin", None, R)
    assert time.monotonic() - began < 0.15 and pages.direct(7)


ACCESS = st.sampled_from([R, W, RW])
PATHS = st.sampled_from(["/a", "/b", "/c"])


class DirectModel(RuleBasedStateMachine):
    """Any opens, closes (a flush, then the release at once or later), renames and unlinks: on each path,
    while a direct handle that may write is open, every handle is direct (no cached page beside its writes).
    Renames and unlinks move the handles as libfuse's high-level API moves its nodes."""

    def __init__(self) -> None:
        from redcapfs.fs import kernelpages

        super().__init__()
        self.saved, kernelpages.RELEASE_WAIT = kernelpages.RELEASE_WAIT, 0.0005
        self.pages, self.fh = KernelPages(), 0
        self.where: dict[int, str] = {}  # fh -> path, as the kernel has it
        self.access: dict[int, int] = {}

    def teardown(self) -> None:
        from redcapfs.fs import kernelpages

        kernelpages.RELEASE_WAIT = self.saved

    @rule(path=PATHS, access=ACCESS)
    def open(self, path: str, access: int) -> None:
        self.fh += 1
        alone = all(p != path for p in self.where.values())
        self.pages.opened(self.fh, path, None, access)
        self.where[self.fh], self.access[self.fh] = path, access
        if access == W and alone:
            assert self.pages.direct(self.fh)

    @rule(data=st.data(), release=st.booleans())
    def close(self, data: st.DataObject, release: bool) -> None:
        if self.where:
            fh = data.draw(st.sampled_from(sorted(self.where)))
            self.pages.flushed(fh)
            if release:
                self.pages.closed(fh)
                del self.where[fh]

    @rule(old=PATHS, new=st.sampled_from(["/a", "/b", "/c", None]))
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
    def no_cached_handle_beside_a_direct_writer(self) -> None:
        for path in ("/a", "/b", "/c"):
            here = [fh for fh, p in self.where.items() if p == path]
            if any(self.pages.direct(fh) and self.access[fh] != R for fh in here):
                assert all(self.pages.direct(fh) for fh in here), (path, self.where, self.access)


TestDirectModel = DirectModel.TestCase
TestDirectModel.settings = settings(max_examples=300, stateful_step_count=30, deadline=None)
