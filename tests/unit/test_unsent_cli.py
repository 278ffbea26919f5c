"""``redcapfs unsent``/``trash`` as commands over a real state folder: fields, states, closed pipes, help."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from redcapfs.locations import project_key
from redcapfs.spool import Spool, Target
from redcapfs.trash import Trash

URL = "http://127.0.0.1:1/api/"
TARGET = Target(URL, "7", "1001", "baseline_arm_1", "consent_form", 2, "a.pdf")
FIELDS = {"id", "state", "url", "record", "event", "field", "instance", "name", "bytes", "when", "error"}


def run(state: Path, *args: str, shell: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "REDCAPFS_STATE_DIR": str(state)}
    env.pop("REDCAP_API_TOKEN", None)
    argv = ["bash", "-o", "pipefail", "-c", shell] if shell else [sys.executable, "-m", "redcapfs", *args]
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60)


def spool(state: Path) -> Spool:
    return Spool(state / project_key(URL, "7") / "spool")


def test_unsent_json_rows_and_text(tmp_path: Path) -> None:
    s = spool(tmp_path)
    refused = s.create(TARGET)
    refused.data_path.write_bytes(b"12345")
    refused.mark_unsent("REDCap said: locked")
    rows = json.loads(run(tmp_path, "unsent", "--json").stdout)
    assert len(rows) == 1 and set(rows[0]) >= FIELDS
    row = rows[0]
    assert (row["id"], row["state"], row["bytes"], row["error"]) == (refused.id, "unsent", 5, "REDCap said: locked")
    assert (row["record"], row["event"], row["field"], row["instance"], row["name"], row["url"]) == (
        "1001", "baseline_arm_1", "consent_form", 2, "a.pdf", URL)
    assert row["when"][:4].isdigit() and "T" in row["when"]
    text = run(tmp_path, "unsent").stdout
    assert f"{refused.id}  unsent  5 bytes" in text and "1001/baseline_arm_1/consent_form/2/a.pdf" in text
    assert "REDCap said: locked" in text


def test_a_closed_pipe_is_not_an_error(tmp_path: Path) -> None:
    s = spool(tmp_path)
    for n in range(400):  # well past a pipe's buffer, so the writer really meets a closed pipe
        entry = s.create(Target(URL, "7", str(n), None, "f", None, f"{n}.pdf"))
        entry.mark_unsent("x" * 2000)
    for command in ("unsent --json", "unsent"):
        result = run(tmp_path, shell=f"{sys.executable} -m redcapfs {command} | head -c 10 > /dev/null")
        assert "Traceback" not in result.stderr and "BrokenPipe" not in result.stderr, result.stderr
        assert result.returncode == 0, result.stderr


def test_help_says_what_each_retry_flag_and_state_means(tmp_path: Path) -> None:
    text = run(tmp_path, "retry", "--help").stdout
    for word in ("--incomplete", "--force", "--delete", "incomplete", "conflict", "never closed", "trash"):
        assert word in text
    assert "restore" in run(tmp_path, "--help").stdout
    assert "trash_days" in run(tmp_path, "trash", "--help").stdout


def test_flags_that_need_ids(tmp_path: Path) -> None:
    for flag in ("--incomplete", "--force", "--delete"):
        result = run(tmp_path, "retry", flag)
        assert result.returncode == 2 and "needs the IDs" in result.stderr


def test_trash_listing_of_an_empty_state_folder(tmp_path: Path) -> None:
    assert json.loads(run(tmp_path, "trash", "--json").stdout) == []
    assert "empty" in run(tmp_path, "trash").stdout
    Trash(tmp_path / project_key(URL, "7") / "trash")
    assert run(tmp_path, "restore", "nope").returncode == 2
