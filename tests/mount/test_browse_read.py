"""Browsing and reading through a real kernel mount, checked against PyCap and the request log.

Every expectation is computed independently of the code under test: the tree
from the project definition (``mounthelp.expected_tree``), the bytes from PyCap,
the API calls from the sandbox's own request log.
"""

from __future__ import annotations

import errno
import hashlib
import mmap
import os
import socket
import subprocess
import sys
import tarfile
import threading
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from mounthelp import REPO, downloads, expected_files, expected_tree, pycap_bytes, settle
from sandbox_projects import field, seed

from redcapfs.sandbox.project import ProjectDef, StoredFile

DATA = REPO / "tests" / "data"
# tarfile's extraction filters arrived in 3.11.4; Debian 12 has 3.11.2. The archive is our own, so without
# filters plain extraction is as safe, and newer Pythons get the strict filter (and no deprecation warning).
SAFE_TAR: dict[str, Any] = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
PROJECTS = {
    "demo": None,
    "classic-xml": DATA / "classic-project.xml",
    "longitudinal-xml": DATA / "longitudinal-project.xml",
    "classic-json": DATA / "classic-json",
    "longitudinal-json": DATA / "longitudinal-json",
}


def tree_of(root: Path) -> set[str]:
    """What `find` prints, relative to the mount root."""
    out = subprocess.run(["find", str(root), "-mindepth", "1"], capture_output=True, text=True, check=True)
    return {os.path.relpath(line, root) for line in out.stdout.splitlines()}


def file_calls(sb: Any) -> list[dict[str, Any]]:
    return sb.calls(content="file")


@pytest.mark.parametrize("name", list(PROJECTS))
def test_find_shows_exactly_the_projects_tree(name: str, sandbox, mount, load) -> None:
    path = PROJECTS[name]
    sb = sandbox(project=path) if path else sandbox()
    mnt = mount(sb)
    assert tree_of(mnt.path) == expected_tree(load(path))
    assert file_calls(sb) == [], "find must not touch any file"


def test_every_tool_reads_the_bytes_pycap_exports(sandbox, mount, load, tmp_path: Path) -> None:
    sb = sandbox()
    mnt = mount(sb)
    files = expected_files(load(None))
    truth = {rel: pycap_bytes(sb.url, sb.token, stored) for rel, stored in files.items()}
    assert len(truth) >= 40
    for rel, data in truth.items():
        assert os.stat(mnt.path / rel).st_size == len(data), rel  # exact before any read
    for rel, data in truth.items():
        out = subprocess.run(["cat", str(mnt.path / rel)], capture_output=True, check=True).stdout
        assert out == data, rel
    sums = subprocess.run(["md5sum", *[str(mnt.path / rel) for rel in truth]], capture_output=True, check=True,
                          text=True).stdout.splitlines()
    for line, (rel, data) in zip(sums, truth.items(), strict=True):
        assert line.split()[0] == hashlib.md5(data).hexdigest(), rel
    subprocess.run(["cp", "-r", str(mnt.path), str(tmp_path / "copy")], check=True)
    subprocess.run(["tar", "cf", str(tmp_path / "all.tar"), "-C", str(mnt.path), "."], check=True)
    with tarfile.open(tmp_path / "all.tar") as tar:
        tar.extractall(tmp_path / "untar", **SAFE_TAR)
    for rel, data in truth.items():
        assert (tmp_path / "copy" / rel).read_bytes() == data, rel
        assert (tmp_path / "untar" / rel).read_bytes() == data, rel
    biggest = max(truth, key=lambda r: len(truth[r]))
    with open(mnt.path / biggest, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        assert mm[:] == truth[biggest]


def test_second_rsync_copies_nothing_even_after_a_remount(sandbox, mount, tmp_path: Path) -> None:
    sb = sandbox()
    mnt = mount(sb)
    dest = tmp_path / "dest"
    subprocess.run(["rsync", "-a", f"{mnt.path}/", f"{dest}/"], check=True)
    again = subprocess.run(["rsync", "-a", "--itemize-changes", f"{mnt.path}/", f"{dest}/"],
                           capture_output=True, text=True, check=True).stdout
    assert again.strip() == "", again
    mnt.unmount()
    mnt2 = mount(sb, mountpoint=mnt.path)
    third = subprocess.run(["rsync", "-a", "--itemize-changes", f"{mnt2.path}/", f"{dest}/"],
                           capture_output=True, text=True, check=True).stdout
    assert third.strip() == "", third


@pytest.mark.smoke  # also run on the libfuse2 binding (scripts/test)
@pytest.mark.parametrize("fileinfo", [True, False], ids=["fileinfo", "no-fileinfo"])
def test_sizes_are_exact_and_listing_downloads_nothing(fileinfo: bool, sandbox, mount, load) -> None:
    sb = sandbox() if fileinfo else sandbox("--no-fileinfo")
    mnt = mount(sb)
    subprocess.run(["ls", "-R", str(mnt.path)], capture_output=True, check=True)
    subprocess.run(["find", str(mnt.path), "-name", "*.pdf"], capture_output=True, check=True)
    assert file_calls(sb) == []
    files = expected_files(load(None))
    listing = subprocess.run(["ls", "-lR", str(mnt.path)], capture_output=True, text=True, check=True).stdout
    assert listing
    for rel, stored in files.items():
        assert os.stat(mnt.path / rel).st_size == Path(stored.source).stat().st_size, rel
    if fileinfo:
        assert downloads(sb.calls()) == [], "the fileinfo fast path must avoid downloads"


def classic_with(records: int, tmp: Path) -> ProjectDef:
    """A classic project with ``records`` records and a file in the first ten."""
    tmp.mkdir(parents=True, exist_ok=True)
    metadata = [field("record_id", "main"), field("doc", "main", "file"), field("scan", "main", "file")]
    rows = [{"record_id": f"R{i:05d}"} for i in range(records)]
    files = []
    for i in range(10):
        src = tmp / f"f{i}.txt"
        src.write_bytes(f"file {i}\n".encode())
        files.append(StoredFile(f"R{i:05d}", "doc", f"f{i}.txt", str(src), None, 1, "text/plain"))
    info = {"project_id": 500 + records, "project_title": "scale", "is_longitudinal": 0,
            "has_repeating_instruments_or_events": 0}
    return ProjectDef(info, metadata, [{"instrument_name": "main", "instrument_label": "Main"}], [], [], [], [],
                      rows, files)


def test_listing_the_tree_costs_the_same_calls_for_50_and_2000_records(sandbox, mount, tmp_path: Path) -> None:
    counts = {}
    for n in (50, 2000):
        seed(tmp_path / f"n{n}-data", classic_with(n, tmp_path / f"src{n}"))
        sb = sandbox(name=f"n{n}")
        before = len(sb.calls())
        mnt = mount(sb, "records_ttl=600")
        mount_calls = settle(lambda sb=sb: len(sb.calls())) - before
        found = tree_of(mnt.path)
        assert len([p for p in found if "/" not in p and p != ".repository"]) == n
        counts[n] = (mount_calls, settle(lambda sb=sb: len(sb.calls())) - before - mount_calls)
        listed = [(c["content"], c.get("action")) for c in sb.calls()[before:][mount_calls:]]
        assert listed == [("fileRepository", "list")], listed  # the first look into .repository only
    assert counts[50] == counts[2000], counts
    assert counts[50][1] == 1, "find within the records TTL costs no call but the File Repository's listing"
    assert counts[50][0] <= 9, counts  # 8 before the user export at mount (fs/rights.py)


def test_a_cached_file_is_read_again_without_a_call(sandbox, mount) -> None:
    sb = sandbox()
    mnt = mount(sb)
    target = mnt.path / "1001" / "screening_arm_1" / "consent_form" / "consent_1001.pdf"
    first = target.read_bytes()
    n = settle(lambda: len(file_calls(sb)))
    assert target.read_bytes() == first
    assert settle(lambda: len(file_calls(sb))) == n


def test_sixteen_concurrent_readers_share_one_download(sandbox, mount, load) -> None:
    sb = sandbox("--latency", "200")
    mnt = mount(sb)
    rel, stored = max(expected_files(load(None)).items(), key=lambda kv: Path(kv[1].source).stat().st_size)
    want = Path(stored.source).read_bytes()
    results: list[bytes] = []
    errors: list[BaseException] = []

    def reader() -> None:
        try:
            results.append((mnt.path / rel).read_bytes())
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors and len(results) == 16 and all(r == want for r in results)
    settle(lambda sb=sb: len(sb.calls()))
    assert len(downloads(sb.calls())) == 1


def test_a_dropped_download_fails_with_eio_and_the_next_open_succeeds(sandbox, mount, load) -> None:
    # Call 1 is the size probe (fileinfo); the mount retries an export twice, so
    # calls 2-4 are the first open's download attempts and 5-6 the second's.
    faults = []
    for nth in range(2, 7):
        faults += ["--fault", f"content=file,action=export,nth={nth},do=drop"]
    sb = sandbox(*faults)
    mnt = mount(sb)
    rel, stored = max(expected_files(load(None)).items(), key=lambda kv: Path(kv[1].source).stat().st_size)
    want = pycap_bytes(sb.url, sb.token, stored)  # PyCap's call does not go through the mount's counter
    with pytest.raises(OSError) as info:
        (mnt.path / rel).read_bytes()
    assert info.value.errno == errno.EIO
    got = None
    for _ in range(3):
        try:
            got = (mnt.path / rel).read_bytes()
            break
        except OSError as exc:
            assert exc.errno == errno.EIO
    assert got == want


def test_no_partial_file_is_ever_served_after_a_truncated_download(sandbox, mount, load) -> None:
    faults = []
    for nth in range(2, 20):
        faults += ["--fault", f"content=file,action=export,nth={nth},do=truncate"]
    sb = sandbox(*faults)
    mnt = mount(sb)
    rel = next(iter(expected_files(load(None))))
    for _ in range(3):
        with pytest.raises(OSError) as info:
            (mnt.path / rel).read_bytes()
        assert info.value.errno == errno.EIO


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_mount_refusals_say_why_and_never_show_the_token(sandbox, mount, tmp_path: Path) -> None:
    sb = sandbox()
    wrong = "0123456789ABCDEF0123456789ABCDEF"
    cases = []
    cases.append((mount(sb, env={"REDCAP_API_TOKEN": wrong}, expect_fail=True), "token"))
    web = subprocess.Popen([sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(port := _free_port())],
                           cwd=str(tmp_path), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        import time
        for _ in range(50):
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        cases.append((mount(sb, url=f"http://127.0.0.1:{port}/", expect_fail=True), "not a REDCap API"))
    finally:
        web.terminate()
        web.wait(5)
    cases.append((mount(sb, url=f"http://127.0.0.1:{_free_port()}/api/", expect_fail=True), "cannot connect"))
    cases.append((mount(sb, mountpoint=tmp_path / "missing", expect_fail=True), "does not exist"))
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "x").write_text("x")
    cases.append((mount(sb, mountpoint=busy, expect_fail=True), "not empty"))
    for result, keyword in cases:
        assert keyword in result.stderr, result.describe()
        for text in (result.stderr, result.stdout, result.log):
            assert sb.token not in text and wrong not in text


def test_the_token_is_not_in_the_daemons_argv_or_environment_or_log(sandbox, mount) -> None:
    from mounthelp import daemon_pids

    sb = sandbox()
    mnt = mount(sb)
    (pid,) = daemon_pids(mnt.path)
    assert sb.token.encode() not in Path(f"/proc/{pid}/cmdline").read_bytes()
    assert sb.token.encode() not in Path(f"/proc/{pid}/environ").read_bytes()
    subprocess.run(["find", str(mnt.path)], capture_output=True, check=True)
    assert sb.token not in mnt.log


def test_read_only_mount_refuses_every_change(sandbox, mount) -> None:
    sb = sandbox()
    mnt = mount(sb, "ro")
    slot = mnt.path / "1001" / "screening_arm_1" / "consent_form"
    assert (slot.stat().st_mode & 0o777) == 0o555
    assert ((slot / "consent_1001.pdf").stat().st_mode & 0o777) == 0o444
    for action in (lambda: (slot / "new.txt").write_bytes(b"x"), lambda: (slot / "consent_1001.pdf").unlink(),
                   lambda: (mnt.path / "9999").mkdir()):
        with pytest.raises(OSError) as info:
            action()
        assert info.value.errno == errno.EROFS
    assert sb.calls(content="file", action="import") == [] and sb.calls(content="file", action="delete") == []


def test_bytes_are_served_as_they_arrive_and_a_cut_download_ends_in_eio(sandbox, mount, tmp_path: Path) -> None:
    """The start of a download that ends short at 3 MB reads fine; past the cut, EIO, never a short file.

    (A cut by RST would make this racy: the kernel discards unread received data on a reset.)
    """
    project = classic_with(1, tmp_path / "src")
    big = tmp_path / "src" / "big.bin"
    big.write_bytes(os.urandom(4 << 20))
    project.files.append(StoredFile("R00000", "scan", "big.bin", str(big), None, 1, "application/octet-stream"))
    seed(tmp_path / "cut-data", project)
    faults = []
    for nth in range(2, 8):  # call 1 is the size probe; then every download attempt ends at 3 MB
        faults += ["--fault", f"content=file,action=export,nth={nth},do=truncate,after={3 << 20}"]
    sb = sandbox(*faults, name="cut")
    mnt = mount(sb)
    path = mnt.path / "R00000" / "scan" / "big.bin"
    assert path.stat().st_size == 4 << 20
    fd = os.open(path, os.O_RDONLY)
    try:
        assert os.pread(fd, 65536, 0) == big.read_bytes()[:65536]
        with pytest.raises(OSError) as info:
            os.pread(fd, 65536, (4 << 20) - 65536)
        assert info.value.errno == errno.EIO
    finally:
        os.close(fd)


def test_names_over_255_bytes_are_shortened_and_still_readable(sandbox, mount, tmp_path: Path) -> None:
    from redcapfs.names import encode

    project = classic_with(1, tmp_path / "src")
    long_record = "R" + "é" * 140  # 281 bytes in UTF-8
    long_name = "scan " + "x" * 300 + ".dcm"
    body = tmp_path / "src" / "long.bin"
    body.write_bytes(b"long name body\n")
    project.records.append({"record_id": long_record})
    project.files.append(StoredFile(long_record, "doc", long_name, str(body), None, 1, "application/dicom"))
    seed(tmp_path / "long-data", project)
    sb = sandbox(name="long")
    mnt = mount(sb)
    record_dir = mnt.path / encode(long_record)
    assert encode(long_record) in os.listdir(mnt.path) and len(encode(long_record).encode()) <= 255
    (listed,) = os.listdir(record_dir / "doc")
    assert listed == encode(long_name) and len(listed.encode()) <= 255 and listed.endswith(".dcm")
    assert (record_dir / "doc" / listed).read_bytes() == body.read_bytes()
    assert (record_dir / "doc" / listed).stat().st_size == len(body.read_bytes())
