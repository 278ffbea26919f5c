"""The rules of fs/kernelpages.py: when a reopen may keep the kernel's pages, with real cache entries.

Versions are the content cache's own objects: entries of a real :class:`ContentCache` and the flight of
a download in progress (released by the test), so "the same version" means what the mount means by it.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

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
