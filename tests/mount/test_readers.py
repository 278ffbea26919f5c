"""Readers see whole versions (issue 10 §3), through a real mount with concurrent real processes.

Each reader is its own process: it opens the file, reads the first MiB, says so,
waits until the test has changed the file (another process's `mv` over it, `rm`,
an in-place overwrite, or a colleague's upload through the API with a second
token), reads on to the end and prints the hash of what it read. Every version's
hash is known beforehand, so each reader's result is checked to be exactly one
whole version (or EIO where a whole version cannot be had). The server is
checked through PyCap and the sandbox's request log. Files are several MB;
rounds are bounded.
"""

from __future__ import annotations

import errno
import hashlib
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from mounthelp import downloads
from sandbox_projects import one_file_project, seed

redcap = pytest.importorskip("redcap")

# Also run on libfuse2 (scripts/test): there a file unlinked or renamed over while open has no path left.
pytestmark = pytest.mark.smoke

SIZE = 5 << 20
ROUNDS = 3
READERS = 3
COLLEAGUE = "C0FFEE00C0FFEE00C0FFEE00C0FFEE00"

READER = r"""
import hashlib, os, sys
h, n = hashlib.sha256(), 0
try:
    fd = os.open(sys.argv[1], os.O_RDONLY)
    data = os.read(fd, 1 << 20)
    h.update(data)
    n += len(data)
    print("started", flush=True)
    sys.stdin.readline()
    while True:
        data = os.read(fd, 1 << 20)
        if not data:
            break
        h.update(data)
        n += len(data)
    print(h.hexdigest(), n, flush=True)
except OSError as exc:
    print("error", exc.errno, flush=True)
"""


class Reader:
    """A reader process that has read its first MiB (see the module docstring)."""

    def __init__(self, path: Path) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", READER, str(path)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        self.first = self.proc.stdout.readline().strip()

    def finish(self) -> tuple[str, int]:
        """(hash, bytes) of what it read, or ("error", errno)."""
        out, _ = self.proc.communicate("go\n", timeout=120)
        if self.first != "started":
            return ("error", int(self.first.split()[1]))
        word, number = out.split()
        return word, int(number)


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def server_bytes(sb: Any) -> tuple[str, bytes] | None:
    try:
        content, headers = redcap.Project(sb.url, sb.token).export_file(record="R1", field="scan")
    except redcap.RedcapError as exc:
        if "no file" in str(exc).lower():
            return None
        raise
    return str(headers["name"]), bytes(content)


def colleague_upload(sb: Any, name: str, body: bytes, tmp: Path) -> None:
    """A colleague's upload through the API with a second token (another user)."""
    src = tmp / name
    src.write_bytes(body)
    with open(src, "rb") as fobj:
        redcap.Project(sb.url, COLLEAGUE).import_file(record="R1", field="scan", file_name=name, file_object=fobj)


def start(sandbox: Any, mount: Any, tmp_path: Path, *sandbox_args: str, options: tuple[str, ...] = ()
          ) -> tuple[Any, Any, bytes]:
    first = os.urandom(SIZE)
    seed(tmp_path / "readers-data", one_file_project(tmp_path / "src", first, "readers"))
    sb = sandbox("--token", f"{COLLEAGUE}:full:colleague", *sandbox_args, name="readers")
    return sb, mount(sb, *options), first


# ------------------------------------------------------------------ a restarted download


def test_a_download_restarted_after_a_colleagues_replace_never_splices(sandbox: Any, mount: Any,
                                                                        tmp_path: Path) -> None:
    """Attempt 1 is cut after 2 MB, the colleague replaces the file (same name, same size), attempt 2
    hangs a moment, attempt 3 sends the new version: the reader gets EIO or the whole old version."""
    sb, mnt, first = start(sandbox, mount, tmp_path,
                           "--fault", f"content=file,action=export,nth=2,do=drop,after={2 << 20}",
                           "--fault", "content=file,action=export,nth=3,do=hang,seconds=2",
                           "--hang-seconds", "2")
    path = mnt.path / "R1" / "scan" / "scan.bin"
    assert path.stat().st_size == SIZE  # call 1: the size (fileinfo)
    reader = Reader(path)
    second = os.urandom(SIZE)
    colleague_upload(sb, "scan.bin", second, tmp_path)
    word, number = reader.finish()
    assert (word, number) in ((digest(first), SIZE), ("error", errno.EIO)), (word, number, mnt.log[-3000:])
    assert word != digest(second)
    assert server_bytes(sb) == ("scan.bin", second)
    assert len(downloads(sb.calls())) >= 2, "the download was not restarted"
    # the next open reads the new version whole
    assert digest(path.read_bytes()) in (digest(first), digest(second))


# ------------------------------------------------------------------ another process changes the file


def test_readers_during_mv_over_keep_reading_the_old_version(sandbox: Any, mount: Any, tmp_path: Path) -> None:
    sb, mnt, current = start(sandbox, mount, tmp_path)
    slot = mnt.path / "R1" / "scan"
    path = slot / "scan.bin"
    for n in range(ROUNDS):
        readers = [Reader(path) for _ in range(READERS)]
        new = os.urandom(SIZE)
        (tmp_path / "next.bin").write_bytes(new)
        subprocess.run(["cp", str(tmp_path / "next.bin"), str(slot / ".scan.bin.XyZ123")], check=True)
        subprocess.run(["mv", str(slot / ".scan.bin.XyZ123"), str(path)], check=True)
        results = [r.finish() for r in readers]
        assert results == [(digest(current), SIZE)] * READERS, (n, results, mnt.log[-3000:])
        assert server_bytes(sb) == ("scan.bin", new)
        assert digest(path.read_bytes()) == digest(new)
        current = new


def test_readers_during_rm_read_the_old_version_to_its_end(sandbox: Any, mount: Any, tmp_path: Path) -> None:
    sb, mnt, current = start(sandbox, mount, tmp_path)
    slot = mnt.path / "R1" / "scan"
    path = slot / "scan.bin"
    for n in range(ROUNDS):
        readers = [Reader(path) for _ in range(READERS)]
        subprocess.run(["rm", str(path)], check=True)
        results = [r.finish() for r in readers]
        assert results == [(digest(current), SIZE)] * READERS, (n, results, mnt.log[-3000:])
        assert server_bytes(sb) is None
        assert os.listdir(slot) == []
        current = os.urandom(SIZE)
        (tmp_path / "next.bin").write_bytes(current)
        subprocess.run(["cp", str(tmp_path / "next.bin"), str(path)], check=True)
        assert server_bytes(sb) == ("scan.bin", current)


OVERWRITE = r"""
import os, sys
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_TRUNC)
data = open(sys.argv[2], "rb").read()
for at in range(0, len(data), 1 << 20):
    os.write(fd, data[at:at + (1 << 20)])
os.close(fd)
"""


def test_readers_during_an_in_place_overwrite_by_another_process(sandbox: Any, mount: Any, tmp_path: Path) -> None:
    """O_TRUNC then writes by another process, while readers are half way: as on a local disk.

    A reader either reads a whole version, or (as on a local disk, where the overwrite changes the very
    file it reads) sees the file end where the overwrite had got when it read, or the new bytes from
    where it was: never bytes of neither version, never an error. Readers opened after the close get
    the new version whole, and so does the server.
    """
    sb, mnt, current = start(sandbox, mount, tmp_path)
    path = mnt.path / "R1" / "scan" / "scan.bin"
    for n in range(ROUNDS):
        readers = [Reader(path) for _ in range(READERS)]
        new = os.urandom(SIZE)
        (tmp_path / "next.bin").write_bytes(new)
        subprocess.run([sys.executable, "-c", OVERWRITE, str(path), str(tmp_path / "next.bin")], check=True)
        results = [r.finish() for r in readers]
        whole = {(digest(current), SIZE), (digest(new), SIZE)}
        local_disk = {(digest(current[:1 << 20] + new[1 << 20:]), SIZE), (digest(current[:1 << 20]), 1 << 20)}
        assert all(r in whole | local_disk for r in results), (n, results, mnt.log[-3000:])
        assert server_bytes(sb) == ("scan.bin", new)
        later = [Reader(path) for _ in range(READERS)]
        assert [r.finish() for r in later] == [(digest(new), SIZE)] * READERS
        current = new
