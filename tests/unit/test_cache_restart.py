"""A restarted download into the content cache: checked against its first attempt, never spliced (issue 10 §3).

The download functions below do what ``HttpClient.export_file`` does on a retry:
announce the answer (``begin_body``), write some bytes, then rewind (seek and
truncate) and send the body again. Readers of the flight may hold the first
attempt's bytes, so those stay, and the second attempt must match them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from redcapfs.cache import ContentCache
from redcapfs.errors import LocalIOError

OLD = os.urandom(300_000)


def restarted(first: bytes, cut: int, second: bytes, name2: str = "a.bin") -> Any:
    def download(out: Any) -> None:
        out.begin_body("a.bin", len(first))
        out.write(first[:cut])
        out.seek(0)
        out.truncate()
        out.begin_body(name2, len(second))
        for at in range(0, len(second), 65536):
            out.write(second[at:at + 65536])

    return download


def test_a_restart_with_the_same_bytes_completes(tmp_path: Path) -> None:
    cache = ContentCache(tmp_path / "c", 1 << 30, 300)
    entry = cache.fetch("k", restarted(OLD, 100_000, OLD))
    assert Path(entry.path).read_bytes() == OLD and entry.size == len(OLD)


@pytest.mark.parametrize("second, name", [
    (OLD[:50_000] + os.urandom(250_000), "a.bin"),  # same name and length, other bytes: a colleague's replace
    (OLD[:200_000], "a.bin"),  # shorter
    (OLD, "b.bin"),  # another name
], ids=["other-bytes", "shorter", "other-name"])
def test_a_restart_that_answers_another_version_is_eio(tmp_path: Path, second: bytes, name: str) -> None:
    cache = ContentCache(tmp_path / "c", 1 << 30, 300)
    with pytest.raises(LocalIOError):
        cache.fetch("k", restarted(OLD, 100_000, second, name))
    assert cache.lookup("k") is None
    assert [p.name for p in (tmp_path / "c").iterdir()] == []  # the partial file is gone


def test_the_first_answer_is_vetted_before_any_byte(tmp_path: Path) -> None:
    cache = ContentCache(tmp_path / "c", 1 << 30, 300)
    seen: list[tuple[Any, Any]] = []

    def refuse(name: Any, length: Any) -> None:
        seen.append((name, length))
        raise LocalIOError("another length than stat reported")

    with pytest.raises(LocalIOError):
        cache.fetch("k", restarted(OLD, 100_000, OLD), refuse)
    assert seen == [("a.bin", len(OLD))]
