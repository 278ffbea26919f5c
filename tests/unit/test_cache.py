"""The content cache: complete files only, one download per key, bounded, private."""

from __future__ import annotations

import os
import stat
import threading
import time
from pathlib import Path

import pytest

from redcapfs.cache import ContentCache, cache_key


def _writer(data: bytes, calls: list, delay: float = 0.0):
    def download(out) -> None:
        calls.append(1)
        time.sleep(delay)
        out.write(data)
    return download


def test_fetch_then_lookup_and_modes(tmp_path: Path) -> None:
    cache = ContentCache(tmp_path / "c", 1 << 20, ttl=60)
    calls: list = []
    entry = cache.fetch("k", _writer(b"hello", calls))
    assert Path(entry.path).read_bytes() == b"hello" and entry.size == 5
    assert cache.fetch("k", _writer(b"other", calls)).path == entry.path
    assert len(calls) == 1 and cache.downloads == 1
    assert stat.S_IMODE(os.stat(tmp_path / "c").st_mode) == 0o700
    assert stat.S_IMODE(os.stat(entry.path).st_mode) == 0o600


def test_concurrent_fetches_share_one_download(tmp_path: Path) -> None:
    cache = ContentCache(tmp_path, 1 << 20, ttl=60)
    calls: list = []
    results: list = []
    threads = [threading.Thread(target=lambda: results.append(cache.fetch("k", _writer(b"x" * 1000, calls, 0.2))))
               for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and len({r.path for r in results}) == 1


def test_failed_download_is_never_served_and_is_retried(tmp_path: Path) -> None:
    cache = ContentCache(tmp_path, 1 << 20, ttl=60)

    def broken(out) -> None:
        out.write(b"partial")
        raise ConnectionError("cut")

    with pytest.raises(ConnectionError):
        cache.fetch("k", broken)
    assert cache.lookup("k") is None
    assert os.listdir(tmp_path) == []  # no partial file left
    assert Path(cache.fetch("k", _writer(b"whole", [])).path).read_bytes() == b"whole"


def test_lru_eviction_and_ttl(tmp_path: Path) -> None:
    cache = ContentCache(tmp_path, 250, ttl=60)
    for key in "abc":
        cache.fetch(key, _writer(b"z" * 100, []))
    assert cache.lookup("a") is None and cache.lookup("c") is not None
    assert cache.total_bytes <= 250
    short = ContentCache(tmp_path / "s", 1000, ttl=0.05)
    short.fetch("k", _writer(b"1", []))
    time.sleep(0.1)
    assert short.lookup("k") is None


def test_put_copies_without_counting_a_download(tmp_path: Path) -> None:
    cache = ContentCache(tmp_path / "c", 1 << 20, ttl=60)
    src = tmp_path / "src"
    src.write_bytes(b"uploaded")
    entry = cache.put("k", str(src))
    assert Path(entry.path).read_bytes() == b"uploaded" and cache.downloads == 0


def test_kept_files_are_adopted_and_partials_dropped(tmp_path: Path) -> None:
    root = tmp_path / "c"
    first = ContentCache(root, 1 << 20, ttl=60)
    first.fetch(cache_key("slot", "a.pdf"), _writer(b"kept", []))
    (root / "x.part-1").write_bytes(b"half")
    second = ContentCache(root, 1 << 20, ttl=60)
    entry = second.lookup(cache_key("slot", "a.pdf"))
    assert entry is not None and Path(entry.path).read_bytes() == b"kept"
    assert not (root / "x.part-1").exists()


def test_wipe_removes_everything(tmp_path: Path) -> None:
    cache = ContentCache(tmp_path / "c", 1 << 20, ttl=60)
    cache.fetch("k", _writer(b"secret", []))
    cache.wipe()
    assert not (tmp_path / "c").exists()
