"""The trash store on a real folder: modes, names, budget, expiry, refusals, crash leftovers."""

from __future__ import annotations

import errno
import io
import json
import os
import stat
import time
from pathlib import Path
from typing import BinaryIO

import pytest

from redcapfs.spool import Target
from redcapfs.trash import DAY, Left, Trash, TrashFull, TrashSettings, sha256_file

TARGET = Target("http://127.0.0.1:1/api/", "7", "1001", "baseline_arm_1", "consent_form", None, "consent.pdf")


def source(tmp_path: Path, data: bytes, name: str = "src") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_kept_bytes_modes_and_names(tmp_path: Path) -> None:
    trash = Trash(tmp_path / "trash")
    data = os.urandom(70_000)
    entry = trash.keep(TARGET, source(tmp_path, data), "replaced", Left("new.pdf", 3, None))
    assert entry is not None and entry.data_path.read_bytes() == data
    assert entry.bytes == len(data) and entry.sha256 == sha256_file(entry.data_path)
    assert stat.S_IMODE((tmp_path / "trash").stat().st_mode) == 0o700
    for path in (tmp_path / "trash").iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert "consent" not in path.name and "1001" not in path.name
    row = trash.entries()[0].public()
    assert {k: row[k] for k in ("id", "record", "event", "field", "instance", "name", "bytes", "why")} == {
        "id": entry.id, "record": "1001", "event": "baseline_arm_1", "field": "consent_form", "instance": None,
        "name": "consent.pdf", "bytes": len(data), "why": "replaced"}
    assert row["left"] == {"name": "new.pdf", "size": 3, "sha256": None}
    assert trash.get(entry.id) == entry
    trash.remove(entry.id)
    assert trash.entries() == [] and not entry.data_path.exists()
    with pytest.raises(KeyError):
        trash.get(entry.id)


def test_a_download_source_and_a_delete(tmp_path: Path) -> None:
    trash = Trash(tmp_path / "trash")

    def download(out: BinaryIO) -> None:  # like the client: a failed first try rewinds
        out.write(b"partial")
        out.seek(0)
        out.truncate()
        out.write(b"the whole file")

    entry = trash.keep(TARGET, download, "deleted")
    assert entry is not None and entry.data_path.read_bytes() == b"the whole file"
    assert entry.why == "deleted" and entry.left == Left(None)
    with pytest.raises(ValueError):
        trash.keep(TARGET, download, "moved")


def test_oldest_versions_go_first_beyond_the_budget(tmp_path: Path) -> None:
    trash = Trash(tmp_path / "trash", TrashSettings(size=250))
    ids = []
    for n in range(3):
        kept = trash.keep(TARGET, source(tmp_path, bytes([n]) * 100), "replaced")
        assert kept is not None
        ids.append(kept.id)
    assert [e.id for e in trash.entries()] == ids[1:]  # 300 bytes do not fit in 250: the first went
    assert sum(e.bytes for e in trash.entries()) <= 250


def test_a_version_larger_than_the_whole_budget_is_refused(tmp_path: Path) -> None:
    trash = Trash(tmp_path / "trash", TrashSettings(size=1000))
    small = trash.keep(TARGET, source(tmp_path, b"x" * 10), "replaced")
    for src in (source(tmp_path, b"y" * 1001), lambda out: out.write(b"z" * 5000)):
        with pytest.raises(TrashFull) as info:
            trash.keep(TARGET, src, "replaced")
        assert info.value.errno == errno.ENOSPC
        assert "trash_size" in str(info.value) and "trash=off" in str(info.value)
    assert [e.id for e in trash.entries()] == [small.id]  # nothing evicted for a version that cannot fit
    names = {p.name for p in (tmp_path / "trash").iterdir()} - {"settings.json", ".lock"}
    assert names == {f"{small.id}.data", f"{small.id}.json"}  # no partial copy left behind


def test_versions_expire_after_the_days(tmp_path: Path) -> None:
    trash = Trash(tmp_path / "trash", TrashSettings(days=2))
    old = trash.keep(TARGET, source(tmp_path, b"old"), "replaced")
    assert old is not None
    assert trash.expire(now=time.time() + DAY) == 0
    assert trash.expire(now=time.time() + 3 * DAY) == 1
    assert trash.entries() == [] and not old.data_path.exists()


def test_off_keeps_nothing_and_settings_are_shared(tmp_path: Path) -> None:
    root = tmp_path / "trash"
    Trash(root, TrashSettings(enabled=False, days=3, size=1 << 20))  # what a mount with trash=off saves
    trash = Trash(root)  # what retry and restore open
    assert trash.settings == TrashSettings(enabled=False, days=3, size=1 << 20)
    assert trash.keep(TARGET, source(tmp_path, b"data"), "deleted") is None
    assert trash.entries() == []


def test_settings_from_mount_options() -> None:
    assert TrashSettings.from_options() == TrashSettings(True, 7.0, 2 << 30)
    assert TrashSettings.from_options("off", "1.5", "512M") == TrashSettings(False, 1.5, 512 << 20)
    for bad in ({"trash": "maybe"}, {"trash_days": "0"}, {"trash_days": "nan"}, {"trash_size": "-1"},
                {"trash_size": "inf"}, {"trash_size": "lots"}):
        with pytest.raises(ValueError) as info:
            TrashSettings.from_options(**bad)
        assert next(iter(bad)) in str(info.value)


def test_crash_leftovers_are_cleaned_and_bad_entries_skipped(tmp_path: Path) -> None:
    trash = Trash(tmp_path / "trash")
    good = trash.keep(TARGET, source(tmp_path, b"good"), "replaced")
    root = tmp_path / "trash"
    (root / "0000.data").write_bytes(b"copied, json never written")
    (root / "1111.part").write_bytes(b"its writer died")
    (root / "2222.json").write_text("{not json")
    (root / "3333.json").write_text(json.dumps({"why": "eaten"}))
    assert [e.id for e in trash.entries()] == [good.id]
    trash.expire()
    assert not (root / "0000.data").exists() and not (root / "1111.part").exists()
    assert good is not None and good.data_path.exists()


def test_a_failing_source_leaves_nothing(tmp_path: Path) -> None:
    trash = Trash(tmp_path / "trash")

    def broken(out: io.RawIOBase) -> None:
        out.write(b"half")
        raise ConnectionError("the server went away")

    with pytest.raises(ConnectionError):
        trash.keep(TARGET, broken, "replaced")
    assert [p.name for p in (tmp_path / "trash").iterdir() if p.suffix in (".part", ".data", ".json")] == []
