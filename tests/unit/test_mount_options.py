"""Mount option parsing and the mountpoint checks (the parts of `redcapfs mount` that need no server)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytest.importorskip("redcapfs.spool")
from redcapfs.attrs import AttrStore
from redcapfs.mount import MountError, check_mountpoint, parse_options, parse_size
from redcapfs.options import check_url
from redcapfs.session import tls_cause
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
    assert opts.direct_writes is True  # the default
    assert parse_options(["direct_writes=off"]).direct_writes is False
    assert parse_options(["direct_writes=on"]).direct_writes is True


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


@pytest.mark.parametrize("bad", [
    "cache_size=inf", "cache_size=-1", "cache_size=nan", "cache_size=100T", "records_ttl=nan", "records_ttl=-1",
    "content_ttl=-1", "attr_timeout=1e308", "entry_timeout=inf", "batch=-3", "batch=1.5", "rate=0", "rate=-2",
    "rate=nan", "rate=inf", "timeout=0", "timeout=-5", "timeout=1e9", "arm=0", "direct_writes=maybe",
    "direct_writes=1", "direct_writes=OFF",
])
def test_values_out_of_range_are_refused_with_the_option_named(bad: str) -> None:
    key = bad.split("=")[0]
    with pytest.raises(MountError, match=rf"^bad value for -o {key}=") as refused:
        parse_options([bad])
    message = str(refused.value)
    assert "Traceback" not in message and "could not convert" not in message and len(message) < 200


def test_rate_off_means_no_limit_and_ranges_accept_their_ends() -> None:
    assert parse_options(["rate=off"]).rate is None
    assert parse_options(["rate=OFF"]).rate is None
    assert parse_options([]).rate == 5.0
    opts = parse_options(["cache_size=0,records_ttl=0,content_ttl=0,attr_timeout=0,entry_timeout=0,batch=0,"
                          "timeout=0.5,rate=0.5"])
    assert (opts.cache_size, opts.records_ttl, opts.content_ttl, opts.batch, opts.timeout, opts.rate) == (
        0, 0, 0, 0, 0.5, 0.5)


def test_a_word_where_a_number_belongs_is_said_plainly() -> None:
    with pytest.raises(MountError, match="not a number"):
        parse_options(["records_ttl=soon"])


@pytest.mark.parametrize("url", ["redcap.example.edu/api/", "ftp://redcap.example.edu/api/", "https://", "api"])
def test_urls_that_are_not_http_are_refused(url: str) -> None:
    with pytest.raises(MountError, match="must start with https://"):
        check_url(url)
    assert check_url("https://redcap.example.edu/api/") == "https://redcap.example.edu/api/"


def test_a_url_password_is_not_echoed() -> None:
    with pytest.raises(MountError) as refused:
        check_url("ftp://user:s3cret@host/api/")
    assert "s3cret" not in str(refused.value)


def test_tls_cause_is_named_once() -> None:
    message = ("TLS failure talking to https://127.0.0.1:4443/api/: SSLError: HTTPSConnectionPool(host='127.0.0.1', "
               "port=4443): Max retries exceeded with url: /api/ (Caused by SSLError(SSLError(1, '[SSL: "
               "WRONG_VERSION_NUMBER] wrong version number (_ssl.c:992)')))")
    assert tls_cause(message) == "wrong version number (WRONG_VERSION_NUMBER)"


def test_missing_libfuse_names_the_debian_package(monkeypatch: pytest.MonkeyPatch) -> None:
    """find_library is the system's own lookup; with no library found the message says what to install."""
    import ctypes.util

    from redcapfs import binding

    monkeypatch.setattr(ctypes.util, "find_library", lambda name: None)
    monkeypatch.setenv("REDCAPFS_FUSE", "3")
    with pytest.raises(binding.BindingError, match="libfuse3-3"):
        binding.find()
    monkeypatch.setenv("REDCAPFS_FUSE", "auto")
    with pytest.raises(binding.BindingError, match="libfuse3-3 or libfuse2"):
        binding.find()
    monkeypatch.setenv("REDCAPFS_FUSE", "4")
    with pytest.raises(binding.BindingError, match="use 2, 3 or auto"):
        binding.find()


def test_trash_options() -> None:
    from redcapfs.trash import TrashSettings

    assert parse_options([]).trash == TrashSettings()
    opts = parse_options(["trash_days=3,trash_size=512M"])
    assert opts.trash == TrashSettings(True, 3.0, 512 << 20)
    assert parse_options(["trash=off"]).trash.enabled is False
    for bad in ("trash=maybe", "trash_days=-1", "trash_size=lots", "trash_days=nan"):
        with pytest.raises(MountError, match=bad.split("=")[0]):
            parse_options([bad])


def test_stream_upload_is_a_size_from_1m_or_off() -> None:
    assert parse_options([]).stream_upload == 8 << 20
    assert parse_options(["stream_upload=64M"]).stream_upload == 64 << 20
    assert parse_options(["stream_upload=off"]).stream_upload == 0
    assert parse_options(["stream_upload=1M"]).stream_upload == 1 << 20
    for bad in ("stream_upload=50K", "stream_upload=0", "stream_upload=-1", "stream_upload=inf", "stream_upload=x"):
        with pytest.raises(MountError, match=r"^bad value for -o stream_upload="):
            parse_options([bad])
