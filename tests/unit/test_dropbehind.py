"""One copy in memory (dropbehind.py): a download's pages are let go behind its readers, never ahead.

The arithmetic is checked against every interleaving Hypothesis finds, with ``posix_fadvise`` recorded;
the effect on a real cache file is checked with util-linux's ``fincore``, and the bytes read back.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import threading
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from redcapfs import dropbehind
from redcapfs.cache import ContentCache, Flight
from redcapfs.dropbehind import DROP_LAG, STEP, WRITEBACK_LAG, DropBehind

MIB = 1 << 20


class Advice:
    """``os.posix_fadvise`` recorded: (offset, length) of each call, with what was known when it came."""

    def __init__(self, pages: DropBehind) -> None:
        self.pages = pages
        self.calls: list[tuple[int, int, int]] = []  # offset, length, min(written, served) at the call

    def __call__(self, fd: int, offset: int, length: int, advice: int) -> None:
        assert advice == os.POSIX_FADV_DONTNEED
        self.calls.append((offset, length, min(self.pages._written, self.pages._served)))


events = st.lists(st.tuples(st.sampled_from(["wrote", "served"]), st.integers(0, 8 * MIB)), max_size=60)


@settings(max_examples=300, deadline=None)
@given(events)
def test_advice_only_ever_covers_bytes_served_and_written_well_behind(steps: list[tuple[str, int]]) -> None:
    pages = DropBehind()
    advice = Advice(pages)
    written = served = 0
    orig = os.posix_fadvise
    os.posix_fadvise = advice  # type: ignore[assignment]
    try:
        for kind, grow in steps:
            if kind == "wrote":
                written += grow
                pages.wrote(-1, written)
            else:
                served += grow
                pages.served(served)
    finally:
        os.posix_fadvise = orig  # type: ignore[assignment]
    for offset, length, limit in advice.calls:
        assert length >= STEP and offset >= 0
        assert offset + length <= limit - WRITEBACK_LAG  # never at or near bytes a reader has not had
    # every byte is advised at most twice (writeback, then drop), and the walk keeps up with the reads
    assert sum(length for _, length, _ in advice.calls) == pages._flushed + pages._dropped
    assert pages._dropped <= pages._flushed
    limit = min(written, served)
    if steps and steps[-1][0] == "wrote":  # the download acted last: it has caught up
        assert pages._flushed > limit - WRITEBACK_LAG - STEP
        assert pages._dropped > limit - DROP_LAG - STEP
    if limit < WRITEBACK_LAG + STEP:
        assert advice.calls == []


def test_nothing_is_advised_for_a_download_nobody_reads() -> None:
    pages = DropBehind()
    advice = Advice(pages)
    orig = os.posix_fadvise
    os.posix_fadvise = advice  # type: ignore[assignment]
    try:
        for end in range(MIB, 256 * MIB, MIB):
            pages.wrote(-1, end)
    finally:
        os.posix_fadvise = orig  # type: ignore[assignment]
    assert advice.calls == []


def test_an_advice_the_filesystem_refuses_turns_it_off(tmp_path: Path) -> None:
    pages = DropBehind()
    pages.served(128 * MIB)
    r, w = os.pipe()  # posix_fadvise on a pipe: ESPIPE
    try:
        pages.wrote(r, 64 * MIB)
    finally:
        os.close(r)
        os.close(w)
    assert pages.enabled is False
    pages.wrote(-1, 128 * MIB)  # and no call is made any more (an fd of -1 would raise EBADF)


def resident(path: Path) -> int:
    """Bytes of ``path`` in the page cache, from util-linux's fincore."""
    out = subprocess.run(["fincore", "--bytes", "--noheadings", "--output", "RES", str(path)],
                         capture_output=True, text=True, check=True).stdout
    return int(out.split()[0])


@pytest.mark.skipif(shutil.which("fincore") is None, reason="util-linux's fincore is missing")
def test_a_read_download_keeps_only_its_last_stretch_in_memory_and_every_byte(tmp_path: Path) -> None:
    """96 MiB downloaded while a reader follows it: the pages behind the reader go, the bytes stay.

    The download syncs as it goes (the test's stand-in for writeback finishing in time), so the drop
    calls find clean pages: what stays resident is the last :data:`DROP_LAG` and a step or two.
    """
    size = 96 * MIB
    blocks = [hashlib.sha256(str(i).encode()).digest() * (MIB // 32) for i in range(size // MIB)]
    cache = ContentCache(tmp_path / "c", 1 << 30, ttl=60)
    flights: list[Flight] = []
    ready = threading.Event()

    def download(out) -> None:
        ready.wait(10)
        for i, block in enumerate(blocks):
            out.write(block)
            if i % 4 == 3:
                os.sync()
            flights[0].served((i + 1) * MIB)  # a reader has had every byte so far

    flight = cache.start("k", download)
    assert isinstance(flight, Flight)
    flights.append(flight)
    ready.set()
    entry = cache.fetch("k", download)
    kept = resident(Path(entry.path))
    assert kept <= DROP_LAG + 2 * STEP + MIB, f"{kept >> 20} MiB of {size >> 20} MiB still in memory"
    assert Path(entry.path).read_bytes() == b"".join(blocks)
    assert cache.downloads == 1


@pytest.mark.skipif(shutil.which("fincore") is None, reason="util-linux's fincore is missing")
def test_a_download_nobody_read_keeps_its_pages(tmp_path: Path) -> None:
    cache = ContentCache(tmp_path / "c", 1 << 30, ttl=60)
    block = os.urandom(MIB)

    def download(out) -> None:
        for i in range(64):
            out.write(block)
            if i % 4 == 3:
                os.sync()

    entry = cache.fetch("k", download)
    assert resident(Path(entry.path)) == 64 * MIB


def test_the_lags_keep_the_pages_a_close_reader_needs() -> None:
    assert WRITEBACK_LAG >= STEP and DROP_LAG > WRITEBACK_LAG
    assert dropbehind.DROP_LAG % STEP == 0
