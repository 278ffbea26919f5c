"""Mount option parsing and the mountpoint checks (the parts of `redcapfs mount` that need no server)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytest.importorskip("redcapfs.spool")
from redcapfs.attrs import AttrStore
from redcapfs.mount import MountError, check_mountpoint, parse_options, parse_size
from redcapfs.shape import Slot


def test_sizes() -> None:
    assert parse_size("512M") == 512 << 20
    assert parse_size("2G") == 2 << 30
    assert parse_size("1.5k") == 1536
    assert parse_size("4096") == 4096
    assert parse_size("1GiB") == 1 << 30


def test_options() -> None:
    opts = parse_options(["ro,allow_other", "cache_size=1G,rate=20,records_ttl=3", "arm=2,keep_cache"])
    assert opts.read_only and opts.allow_other and opts.keep_cache
    assert opts.cache_size == 1 << 30 and opts.rate == 20 and opts.records_ttl == 3 and opts.arm == 2


@pytest.mark.parametrize("bad", ["colour=blue", "rate=fast", "ro=1", "cache_size", "temp_names=-*.nothing"])
def test_unknown_or_bad_options_are_refused(bad: str) -> None:
    with pytest.raises(MountError):
        parse_options([bad])


def test_mountpoint_checks(tmp_path: Path) -> None:
    with pytest.raises(MountError, match="does not exist"):
        check_mountpoint(str(tmp_path / "missing"))
    (tmp_path / "file").write_text("x")
    with pytest.raises(MountError, match="not a directory"):
        check_mountpoint(str(tmp_path / "file"))
    with pytest.raises(MountError, match="not empty"):
        check_mountpoint(str(tmp_path))
    empty = tmp_path / "empty"
    empty.mkdir()
    assert check_mountpoint(str(empty)) == empty.resolve()


def test_attr_store_keeps_times_across_reopen(tmp_path: Path) -> None:
    path = tmp_path / "attrs.sqlite"
    slot = Slot("patient-x", "baseline_arm_1", "consent_form", None)
    store = AttrStore(path)
    first = store.get(slot, "a.pdf", 10)
    assert store.get(slot, "a.pdf", 10) == first
    assert store.get(slot, "a.pdf", 11).mtime_ns >= first.mtime_ns  # another size: another version
    store.set(slot, "a.pdf", 10, mtime_ns=123, mode=0o600)
    epoch = store.epoch_ns
    store.close()
    again = AttrStore(path)
    assert again.get(slot, "a.pdf", 10).mtime_ns == 123 and again.get(slot, "a.pdf", 10).mode == 0o600
    assert again.epoch_ns == epoch
    assert oct(os.stat(path).st_mode & 0o777) == "0o600"
    assert b"patient-x" not in path.read_bytes() and b"a.pdf" not in path.read_bytes()
