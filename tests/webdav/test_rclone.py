"""rclone's webdav backend on the share (Basic over TLS: rclone has no Digest): copy out, copy in, check."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from davhelp import need, server_bytes

IN_FILES = {  # each in a slot that is empty in the demo project
    "1001/week_12_arm_1/radiology_report/r1.txt": 40_000,
    "1002/baseline_arm_1/radiology_report/r2.bin": 900_000,
    "1002/week_12_arm_1/radiology_report/r3.bin": 300_000,
    "1003/week_12_arm_1/radiology_report/r4.bin": 2_000_000,
    "1002/week_12_arm_1/mri_upload/m1.bin": 1_500_000,
}


def rclone(sh, ca: str, *args: str) -> subprocess.CompletedProcess:
    obscured = subprocess.run(["rclone", "obscure", "-"], input=sh.password, capture_output=True, text=True,
                              check=True).stdout.strip()
    env = dict(os.environ, RCLONE_CONFIG_DAV_TYPE="webdav", RCLONE_CONFIG_DAV_URL=sh.url,
               RCLONE_CONFIG_DAV_VENDOR="other", RCLONE_CONFIG_DAV_USER=sh.user, RCLONE_CONFIG_DAV_PASS=obscured,
               RCLONE_CONFIG="/dev/null")
    return subprocess.run(["rclone", "--ca-cert", ca, "--transfers", "4", *args], capture_output=True,
                          text=True, env=env, timeout=300)


def test_copy_out_and_in_and_check(sandbox, share, tools, tls_files, tmp_path: Path) -> None:
    need(tools, "rclone")
    cert, key, ca = tls_files
    sb = sandbox()
    sh = share(sb, "rate=off", args=("--cert", cert, "--key", key), verify=ca)
    out = tmp_path / "out"
    result = rclone(sh, ca, "copy", "dav:1002", str(out / "1002"))
    assert result.returncode == 0, result.stderr
    photo = out / "1002/week_12_arm_1/ae_photo/3/episode 3.png"
    assert photo.read_bytes() == server_bytes(sb, "1002", "ae_photo", "week_12_arm_1", 3)
    checked = rclone(sh, ca, "check", "--download", "dav:1002", str(out / "1002"))
    assert checked.returncode == 0, checked.stderr

    src = tmp_path / "in"
    for rel, size in IN_FILES.items():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_bytes(os.urandom(size))
    result = rclone(sh, ca, "copy", str(src), "dav:")
    assert result.returncode == 0, result.stderr
    for rel in IN_FILES:
        record, event, field, _name = rel.split("/")
        assert server_bytes(sb, record, field, event) == (src / rel).read_bytes(), rel
    checked = rclone(sh, ca, "check", "--one-way", "--download", str(src), "dav:")
    assert checked.returncode == 0, checked.stderr


def test_failed_upload_fails_rclone_and_keeps_the_bytes(sandbox, share, tools, tls_files, tmp_path: Path) -> None:
    import json

    need(tools, "rclone")
    cert, key, ca = tls_files
    sb = sandbox("--fault", "content=file,action=import,do=500")
    sh = share(sb, "rate=off", "timeout=5", args=("--cert", cert, "--key", key), verify=ca)
    src = tmp_path / "ecg.bin"
    src.write_bytes(os.urandom(250_000))
    result = rclone(sh, ca, "--retries", "1", "--low-level-retries", "1", "copyto", str(src),
                    "dav:1001/baseline_arm_1/radiology_report/ecg.bin")
    assert result.returncode != 0, "a failed upload must never look like success"
    assert server_bytes(sb, "1001", "radiology_report", "baseline_arm_1") is None
    rows = json.loads(sh.cli("unsent", "--json").stdout)
    assert [r["target"]["name"] for r in rows] == ["ecg.bin"]
    assert Path(rows[0]["data_path"]).read_bytes() == src.read_bytes()
