"""A slow server stalls only the operation that waits on it (the locking model in redcapfs/tree.py).

The sandbox makes exactly one call hang: the second ``content=record`` call,
which is the second records export (the first is the mount's own; the rights
probe, also ``content=record``, comes later, at the first create).
``records_ttl=1`` makes the index stale soon after the mount, so the next
listing starts that export in the background, and a create of a real name
(whose slot-empty check waits for a fresh index) waits on it: once its rights
probe is answered, the hanging export is the only thing it can be waiting for.
While the export hangs, cached operations in another record must complete.

Ordering is checked without timing thresholds: the sandbox logs "fault:
hanging" when the call arrives and writes its request-log line only when the
call ends, so "no request-log line with ``fault: hang``" means the hanging
call has not returned yet, and a live create thread means the create has not
returned either.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mounthelp import expected_files, pycap_bytes

HANG_SECONDS = 10  # only bounds how long the test waits at the end; no assertion depends on it
WAIT = 60  # upper bound for something that must happen, never an expectation of speed


def wait_until(done: Any, what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not done():
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.05)


def record_calls(sb: Any) -> int:
    return len(sb.calls(content="record"))


def hang_returned(sb: Any) -> bool:
    """The sandbox writes a faulted call's request-log line when the call ends."""
    return bool(sb.calls(fault="hang"))


def run(*cmd: str) -> subprocess.CompletedProcess:
    return subprocess.run(list(cmd), capture_output=True, timeout=WAIT, check=True)


def test_cached_operations_elsewhere_complete_while_a_create_waits_on_a_slow_server(
        sandbox: Any, mount: Any, load: Any) -> None:
    sb = sandbox("--log-level", "INFO", "--hang-seconds", str(HANG_SECONDS),
                 "--fault", "content=record,nth=2,do=hang")
    m = mount(sb, "records_ttl=1,poll=0")  # TTL refreshes: the change feed (poll) would replace them
    assert record_calls(sb) == 1  # the mount's own records export

    # Another record's file and directory, read once so they are cached.
    other = "1003/baseline_arm_1/mri_upload/mri_02.png"
    truth = pycap_bytes(sb.url, sb.token, expected_files(load(None))[other])
    assert run("cat", str(m.path / other)).stdout == truth
    assert "mri_02.png" in run("ls", "-l", str((m.path / other).parent)).stdout.decode()

    time.sleep(1.5)  # past records_ttl=1 (a precondition, not a measurement)
    # A listing past the TTL answers from the index it has; the refresh it starts is the call that hangs.
    assert "1003" in run("ls", str(m.path)).stdout.decode().split()
    wait_until(lambda: any("fault: hanging" in line for line in sb.output), "the records export reached the server")
    assert not hang_returned(sb), "the hanging export has not returned, yet the listing did"

    # A create of a real name waits for that export (its slot-empty check wants a fresh index).
    target = m.path / "1002" / "baseline_arm_1" / "radiology_report" / "new.txt"
    outcome: list[Any] = []

    def create() -> None:
        try:
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            os.write(fd, b"created while the server was slow\n")
            os.close(fd)
            outcome.append("ok")
        except OSError as exc:
            outcome.append(exc)

    creator = threading.Thread(target=create, daemon=True)
    creator.start()
    # The create's first step is the rights probe (answered); then it waits on the hanging export.
    wait_until(lambda: record_calls(sb) >= 2, "the create's rights probe")
    assert not hang_returned(sb) and creator.is_alive() and outcome == []

    # Meanwhile, cached operations in another record complete.
    assert run("cat", str(m.path / other)).stdout == truth
    assert "mri_02.png" in run("ls", "-l", str((m.path / other).parent)).stdout.decode()
    assert "1003" in run("ls", str(m.path)).stdout.decode().split()
    assert (m.path / other).stat().st_size == len(truth)

    # ...while the hanging call has still not returned and the create is still waiting on it.
    assert not hang_returned(sb), "the hang ended before the other operations finished; nothing was shown"
    assert creator.is_alive() and outcome == []

    # Once the server answers (the client retries the export after the hang), the create goes through.
    creator.join(HANG_SECONDS + WAIT)
    assert outcome == ["ok"], outcome
    project = pytest.importorskip("redcap").Project(sb.url, sb.token)
    content, headers = project.export_file(record="1002", field="radiology_report", event="baseline_arm_1")
    assert (headers["name"], content) == ("new.txt", b"created while the server was slow\n")
    assert "Traceback" not in m.log, m.log[-3000:]


def test_many_readers_waiting_on_a_slow_server_leave_workers_for_everything_else(
        sandbox: Any, mount: Any, load: Any) -> None:
    """More readers stuck on the server than libfuse3's default of 10 workers (binding.MAX_WORKERS): an
    `ls` and a `stat` answered from memory still complete while every one of those calls still hangs."""
    sb = sandbox("--log-level", "INFO", "--hang-seconds", str(HANG_SECONDS),
                 "--fault", "content=file,action=export,do=hang")
    m = mount(sb, "rate=off")
    files = sorted(expected_files(load(None)))[:16]
    assert len(files) == 16
    assert "1003" in run("ls", str(m.path)).stdout.decode().split()
    readers = [subprocess.Popen(["cat", str(m.path / name)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
               for name in files]
    try:
        wait_until(lambda: sum("fault: hanging" in line for line in sb.output) >= 12,
                   "a dozen of the readers' calls reached the server")
        assert not hang_returned(sb)
        assert run("ls", str(m.path / "1005")).returncode == 0
        assert (m.path / "1006").is_dir()
        assert not hang_returned(sb), "the other operations waited for a worker until a hanging call ended"
        assert all(reader.poll() is None for reader in readers)
    finally:
        for reader in readers:
            reader.kill()
            reader.wait()
