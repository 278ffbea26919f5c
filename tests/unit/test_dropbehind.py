"""One copy in memory (dropbehind.py): a download's pages are let go behind its readers, never ahead.

The arithmetic is checked against interleavings Hypothesis draws (the advice recorded, never made),
against a model kept here of what readers have had; the effect on a real cache file is checked with
util-linux's ``fincore``, and the bytes read back.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import subprocess
import threading
from pathlib import Path
from typing import BinaryIO

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from redcapfs.cache import ContentCache, Flight
from redcapfs.dropbehind import DROP_LAG, PAGE, STEP, WRITEBACK_LAG, DropBehind

MIB = 1 << 20


class Recorded(DropBehind):
    """A DropBehind whose advice is recorded (kind, offset, length, what the test knew at the call)."""

    def __init__(self) -> None:
        super().__init__(advise=lambda fd, offset, length, advice: None)
        self.calls: list[tuple[str, int, int, int]] = []
        self.known = 0  # set by the test before each step: min(written, had) by its own model

    def _advise(self, fd: int, kind: str, offset: int, length: int) -> None:
        self.calls.append((kind, offset, length, self.known))


step = st.one_of(
    st.tuples(st.just("wrote"), st.integers(0, 6 * MIB), st.just(0)),
    # length, and the gap from what was had: mostly none (a reader in order), sometimes back or ahead
    st.tuples(st.just("read"), st.integers(0, 6 * MIB), st.one_of(st.just(0), st.integers(-2 * MIB, 6 * MIB))),
)


@settings(max_examples=400, deadline=None)
@given(st.lists(step, max_size=60))
def test_advice_stays_behind_what_readers_had_and_the_download_wrote(steps: list[tuple[str, int, int]]) -> None:
    pages = Recorded()
    written = had = 0  # the test's model: a read counts when it starts within a step of what was had
    for kind, size, gap in steps:
        if kind == "wrote":
            written += size
        else:
            offset = max(0, had + gap)
            pages.served(-1, offset, offset + size)
            if offset <= had + STEP and offset + size > had:
                had = offset + size
        pages.known = min(written, had) // PAGE * PAGE
        if kind == "wrote":
            pages.wrote(-1, written)
    cursor = {"writeback": 0, "drop": 0}
    for kind, offset, length, known in pages.calls:
        lag = WRITEBACK_LAG if kind == "writeback" else DROP_LAG
        assert offset == cursor[kind] and length >= STEP  # each step walks the file once, in order
        assert (offset + length) % PAGE == 0
        assert offset + length <= known - lag, (kind, offset, length, known)
        cursor[kind] = offset + length
        assert cursor["drop"] <= cursor["writeback"]  # nothing is dropped before its writeback began
    known = min(written, had) // PAGE * PAGE
    if steps and steps[-1][0] == "wrote":  # the download acted last: it has caught up
        assert cursor["writeback"] > known - WRITEBACK_LAG - STEP
        assert cursor["drop"] > known - DROP_LAG - STEP
    if known < WRITEBACK_LAG + STEP:
        assert pages.calls == []


def test_a_read_far_ahead_does_not_make_the_part_it_skipped_look_read() -> None:
    pages = Recorded()
    pages.served(-1, 0, MIB)
    pages.served(-1, 64 * MIB, 65 * MIB)  # a jump: the bytes between were never read
    pages.wrote(-1, 128 * MIB)
    assert pages.calls == []
    for offset in range(MIB, 128 * MIB, MIB):  # now in order, readahead style: two requests out of order
        pages.served(-1, offset + MIB, offset + 2 * MIB)
        pages.served(-1, offset, offset + MIB)
    pages.wrote(-1, 128 * MIB)
    assert [c[:3] for c in pages.calls] == [("writeback", 0, 124 * MIB), ("drop", 0, 96 * MIB)]


def test_nothing_is_advised_for_a_download_nobody_reads() -> None:
    pages = Recorded()
    for end in range(MIB, 256 * MIB, MIB):
        pages.wrote(-1, end)
    pages.finish(-1)
    assert pages.calls == []


def test_the_end_of_a_download_drops_once_more_what_is_behind_the_lag() -> None:
    pages = Recorded()
    pages.served(-1, 0, 100 * MIB)
    pages.wrote(-1, 100 * MIB)
    pages.finish(-1)
    assert [c[:3] for c in pages.calls] == [("writeback", 0, 96 * MIB), ("drop", 0, 68 * MIB),
                                            ("drop", 0, 68 * MIB)]


def test_a_reader_slower_than_the_download_lets_go_behind_itself_once_it_has_ended() -> None:
    pages = Recorded()
    pages.served(-1, 0, 10 * MIB)
    pages.wrote(-1, 100 * MIB)  # the download is done long before the reader
    pages.finish(-1)
    assert [c[:3] for c in pages.calls] == [("writeback", 0, 6 * MIB)]
    for offset in range(10 * MIB, 100 * MIB, MIB):
        pages.served(-1, offset, offset + MIB)
    assert [c[:3] for c in pages.calls[-2:]] == [("writeback", 90 * MIB, 4 * MIB), ("drop", 64 * MIB, 4 * MIB)]
    assert pages._flushed == 94 * MIB and pages._dropped == 68 * MIB  # a step at a time, behind the reader


@pytest.mark.parametrize("code", [errno.ESPIPE, errno.EBADF])
def test_an_advice_that_fails_turns_it_off_and_the_download_goes_on(code: int) -> None:
    made: list[int] = []

    def advise(fd: int, offset: int, length: int, advice: int) -> None:
        made.append(offset)
        raise OSError(code, os.strerror(code))

    pages = DropBehind(advise=advise)
    pages.served(3, 0, 128 * MIB)
    pages.wrote(3, 64 * MIB)  # no exception reaches the download
    assert pages.enabled is False and made == [0]  # the second range of that batch was not tried
    pages.wrote(3, 128 * MIB)
    pages.finish(3)
    assert made == [0]


def resident(path: Path) -> int:
    """Bytes of ``path`` in the page cache, from util-linux's fincore."""
    out = subprocess.run(["fincore", "--bytes", "--noheadings", "--output", "RES", str(path)],
                         capture_output=True, text=True, check=True).stdout
    return int(out.split()[0])


def fsync_path(path: Path) -> None:
    """Write the file's dirty pages back (any descriptor of it will do), not the whole machine's."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


needs_fincore = pytest.mark.skipif(shutil.which("fincore") is None, reason="util-linux's fincore is missing")


@needs_fincore
def test_a_read_download_keeps_only_its_last_stretch_in_memory_and_every_byte(tmp_path: Path) -> None:
    """96 MiB downloaded while a reader follows it: the pages behind the reader go, the bytes stay.

    The download writes its file back as it goes (the test's stand-in for writeback finishing in time),
    so the drop calls find clean pages: what stays resident is the last :data:`DROP_LAG` and a step or two.
    """
    size = 96 * MIB
    blocks = [hashlib.sha256(str(i).encode()).digest() * (MIB // 32) for i in range(size // MIB)]
    cache = ContentCache(tmp_path / "c", 1 << 30, ttl=60)
    flights: list[Flight] = []
    ready = threading.Event()

    def download(out: BinaryIO) -> None:
        ready.wait(10)
        for i, block in enumerate(blocks):
            out.write(block)
            if i % 4 == 3:
                fsync_path(flights[0].part)
            flights[0].served(-1, i * MIB, (i + 1) * MIB)  # a reader has had every byte so far

    flight = cache.start("k", download)
    assert isinstance(flight, Flight)
    flights.append(flight)
    ready.set()
    entry = cache.fetch("k", download)
    kept = resident(Path(entry.path))
    assert kept <= DROP_LAG + 2 * STEP, f"{kept >> 20} MiB of {size >> 20} MiB still in memory"
    assert Path(entry.path).read_bytes() == b"".join(blocks)
    assert cache.downloads == 1


@needs_fincore
def test_a_download_nobody_read_keeps_its_pages(tmp_path: Path) -> None:
    cache = ContentCache(tmp_path / "c", 1 << 30, ttl=60)
    block = os.urandom(MIB)
    parts: list[Path] = []

    def download(out: BinaryIO) -> None:
        for i in range(64):
            out.write(block)
            if i % 4 == 3:
                parts[:] = list((tmp_path / "c").glob("*.part-*"))
                fsync_path(parts[0])

    entry = cache.fetch("k", download)
    assert resident(Path(entry.path)) >= 60 * MIB  # all 64 MiB, unless something else reclaimed a few
