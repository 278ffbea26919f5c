"""One copy in memory (dropbehind.py) through a real mount: pages let go, every byte still right.

A file larger than the drop lag is read cold with `cp`, so the daemon lets the content cache's pages
go behind the reader while the download runs. The bytes are then checked three ways against PyCap's
export: the copy itself, a reopen with ``O_DIRECT`` (the kernel's pages bypassed: the daemon reads the
cache file, whose early part it let go, so those bytes come from disk), and a download that broke past
the drop point and was retried (the retry's bytes are compared with those already in the file, the
dropped ones read back from disk). How much was let go is checked with util-linux's ``fincore``.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from mounthelp import downloads, settle
from sandbox_projects import one_file_project, seed

from redcapfs.dropbehind import DROP_LAG

redcap = pytest.importorskip("redcap")

pytestmark = pytest.mark.smoke

SIZE = DROP_LAG * 2 + (5 << 20) + 123  # well past the lag, and not a whole number of blocks


def pycap_digest(sb: Any) -> str:
    content, _headers = redcap.Project(sb.url, sb.token).export_file(record="R1", field="scan")
    return hashlib.sha256(content).hexdigest()


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def direct_digest(path: Path) -> str:
    """The file read with O_DIRECT (dd), past the kernel's pages of it: every byte from the daemon."""
    out = subprocess.run(["dd", f"if={path}", "iflag=direct", "bs=1M", "status=none"], capture_output=True,
                         check=True).stdout
    return hashlib.sha256(out).hexdigest()


def cache_file(tmp_path: Path) -> Path:
    """The mount's one complete content-cache file (state folder, ``cache-PID/``)."""
    found = [p for p in (tmp_path / "state").rglob("cache-*/*") if p.is_file() and ".part-" not in p.name]
    assert len(found) == 1, found
    return found[0]


def resident(path: Path) -> int:
    """Bytes of ``path`` in the page cache, from util-linux's fincore."""
    out = subprocess.run(["fincore", "--bytes", "--noheadings", "--output", "RES", str(path)],
                         capture_output=True, text=True, check=True).stdout
    return int(out.split()[0])


def start(sandbox: Any, mount: Any, tmp_path: Path, *sandbox_args: str) -> tuple[Any, Any, str]:
    body = os.urandom(SIZE)
    seed(tmp_path / "pages-data", one_file_project(tmp_path / "src", body, "cache pages"))
    sb = sandbox(*sandbox_args, name="pages")
    return sb, mount(sb), hashlib.sha256(body).hexdigest()


def test_a_cold_copy_past_the_drop_lag_is_whole_and_so_is_a_direct_reread(sandbox: Any, mount: Any,
                                                                           tmp_path: Path) -> None:
    sb, mnt, want = start(sandbox, mount, tmp_path)
    src = mnt.path / "R1" / "scan" / "scan.bin"
    subprocess.run(["cp", str(src), str(tmp_path / "copy.bin")], check=True)
    assert file_digest(tmp_path / "copy.bin") == want
    kept = resident(cache_file(tmp_path))
    # 32 MiB in every run on the machine this was written on: the last DROP_LAG, all the rest let go
    assert kept <= SIZE - DROP_LAG // 2, f"{kept >> 20} MiB of {SIZE >> 20} MiB still in memory"
    assert direct_digest(src) == want
    settle(lambda: len(sb.calls()))
    assert len(downloads(sb.calls())) == 1  # the reread came from the cache file, not the server
    assert pycap_digest(sb) == want


def test_a_download_broken_past_the_drop_point_is_retried_against_the_bytes_on_disk(
        sandbox: Any, mount: Any, tmp_path: Path) -> None:
    """Call 1 is the size (fileinfo); the export's first attempt breaks after 1.5 drop lags, by which
    point the pages behind it were let go; the second attempt's bytes are compared with them."""
    cut = DROP_LAG + DROP_LAG // 2
    sb, mnt, want = start(sandbox, mount, tmp_path,
                          "--fault", f"content=file,action=export,nth=2,do=drop,after={cut}")
    src = mnt.path / "R1" / "scan" / "scan.bin"
    subprocess.run(["cp", str(src), str(tmp_path / "copy.bin")], check=True)
    assert file_digest(tmp_path / "copy.bin") == want
    assert direct_digest(src) == want
    settle(lambda: len(sb.calls()))
    assert len(downloads(sb.calls())) == 2, mnt.log[-3000:]
    assert pycap_digest(sb) == want
