"""davfs2 (Linux's kernel-mounted WebDAV client) on the share: cp, rsync twice, rm, mkdir; checked with PyCap."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from davhelp import need, pycap, server_bytes, settled

FILES = {  # relative path -> size; each in a slot that is empty in the demo project
    "1001/baseline_arm_1/radiology_report/report.txt": 5_000,
    "1002/baseline_arm_1/radiology_report/scan.bin": 700_000,
    "1002/week_12_arm_1/mri_upload/mri.bin": 1_200_000,
}


@pytest.fixture
def davfs(tools) -> Iterator:
    """``davfs(share)`` mounts it; unmounted (which waits for davfs2's uploads) at the end."""
    need(tools, "mount.davfs")
    if os.geteuid() != 0:
        pytest.skip("mounting davfs2 needs root here")
    base = Path(tempfile.mkdtemp(prefix="redcapfs-davfs-", dir="/tmp"))
    os.chmod(base, 0o755)  # davfs2 drops to its own user
    mounted: list[Path] = []

    def mount(sh) -> Path:
        secrets = base / "secrets"
        secrets.write_text(f"{sh.url} {sh.user} {sh.password}\n")
        os.chmod(secrets, 0o600)
        conf = base / "davfs2.conf"
        # buf_size 64: davfs2 1.6 lists nothing on kernels >= 6.16 with its default buffer
        conf.write_text(f"secrets {secrets}\ndelay_upload 0\nuse_locks 1\ndir_refresh 1\nfile_refresh 1\n"
                        "buf_size 64\n")
        mnt = base / "mnt"
        mnt.mkdir()
        result = subprocess.run(["mount.davfs", sh.url, str(mnt), "-o", f"conf={conf}"], capture_output=True,
                                text=True, timeout=60, stdin=subprocess.DEVNULL)
        assert result.returncode == 0, result.stderr
        mounted.append(mnt)
        return mnt

    yield mount
    for mnt in mounted:
        subprocess.run(["umount", str(mnt)], capture_output=True, timeout=120)
    shutil.rmtree(base, ignore_errors=True)


def _source(root: Path) -> Path:
    src = root / "src"
    for rel, size in FILES.items():
        path = src / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(os.urandom(size))
        os.utime(path, (1_700_000_000, 1_700_000_000))
    return src


def _slot(rel: str) -> tuple[str, str, str]:
    record, event, field, _name = rel.split("/")
    return record, field, event


def test_cp_rsync_twice_rm_mkdir(sandbox, share, davfs, tmp_path: Path) -> None:
    sb = sandbox()
    sh = share(sb, "records_ttl=1")
    mnt = davfs(sh)
    src = _source(tmp_path)
    first = next(iter(FILES))
    subprocess.run(["cp", str(src / first), str(mnt / first)], check=True, timeout=120)
    assert settled(lambda: server_bytes(sb, *_slot(first)) == (src / first).read_bytes())

    for rel in FILES:
        (mnt / rel).parent.stat()  # davfs2 learns the folders before rsync looks
    sync = ["rsync", "-a", "--modify-window=1", "--itemize-changes", "--exclude=lost+found", f"{src}/", f"{mnt}/"]
    run1 = subprocess.run(sync, capture_output=True, text=True, timeout=300)
    assert run1.returncode == 0, run1.stderr
    for rel in FILES:
        assert settled(lambda rel=rel: server_bytes(sb, *_slot(rel)) == (src / rel).read_bytes()), rel
    run2 = subprocess.run(sync, capture_output=True, text=True, timeout=300)
    assert run2.returncode == 0, run2.stderr
    copied = [line for line in run2.stdout.splitlines() if line[:2] in (">f", "<f")]
    assert copied == [], f"the second rsync copied again:\n{run2.stdout}"

    (mnt / first).unlink()
    assert settled(lambda: server_bytes(sb, *_slot(first)) is None)

    (mnt / "5001").mkdir()
    assert settled(lambda: "5001" in {row["record_id"] for row in pycap(sb).export_records(fields=["record_id"])})
