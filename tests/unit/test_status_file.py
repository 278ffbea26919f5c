"""``redcapfs status`` parts without a mount: the client's stats, the status file, the reader.

The stats object is checked alone (a fake clock makes the rate window exact)
and inside a real ``HttpClient`` against the sandbox, whose request log is the
independent count of calls. Status files are checked on disk: modes, symlinks,
atomic replacement, and how a dead process is told apart.
"""

from __future__ import annotations

import io
import json
import os
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from sandbox_projects import longitudinal_project, seed

from redcapfs import errors as E
from redcapfs import status
from redcapfs.client import HttpClient
from redcapfs.client.stats import ClientStats
from redcapfs.spool import process_start

FULL = "A" * 32
BASE = "baseline_arm_1"
REPO = Path(__file__).resolve().parents[2]


# ------------------------------------------------------------------ ClientStats alone


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_calls_are_counted_by_kind_and_failures_apart() -> None:
    stats = ClientStats(rate_limit=5.0)
    for content, action in [("file", "export"), ("file", "export"), ("project", None), ("file", "import")]:
        stats.call(content, action)
    stats.failed()
    snap = stats.snapshot()
    assert snap["calls"] == {"total": 4, "failed": 1,
                             "by_kind": {"file/export": 2, "file/import": 1, "project": 1}}
    assert snap["rate"]["limit"] == 5.0
    json.dumps(snap)  # JSON-ready as it is


def test_rate_counts_only_the_window() -> None:
    clock = FakeClock()
    stats = ClientStats(rate_limit=2.0, window=10.0, clock=clock)
    for _ in range(20):
        clock.now += 0.5  # 2 calls per second for 10 s
        stats.call("record", "export")
    assert stats.snapshot()["rate"]["per_second"] == 2.0
    clock.now += 5.0  # the older half of the window is now empty
    assert stats.snapshot()["rate"]["per_second"] == 1.0
    clock.now += 100.0
    snap = stats.snapshot()
    assert snap["rate"]["per_second"] == 0.0 and snap["calls"]["total"] == 20


def test_throttling_adds_up() -> None:
    stats = ClientStats(rate_limit=1.0)
    stats.throttled(0.25)
    stats.throttled(0.0)
    stats.throttled(0.5)
    assert stats.snapshot()["rate"]["throttled_seconds"] == 0.75


def test_transfers_in_flight_and_finished() -> None:
    stats = ClientStats()
    pokes: list[int] = []
    stats.on_change = lambda: pokes.append(1)
    down = stats.start_transfer("download", record="1001", event=BASE, field="consent", instance=None)
    up = stats.start_transfer("upload", record="1002", field="scan", instance=2, name="a.dcm", total=300)
    down.begin_attempt()
    down.total = 1000
    down.advance(400)
    up.begin_attempt(300)
    up.advance(120)
    flying = {t["kind"]: t for t in stats.snapshot()["in_flight"]}
    assert flying["download"]["bytes_done"] == 400 and flying["download"]["bytes_total"] == 1000
    assert flying["download"]["record"] == "1001" and flying["download"]["event"] == BASE
    assert flying["upload"]["bytes_done"] == 120 and flying["upload"]["name"] == "a.dcm"
    assert flying["upload"]["instance"] == 2
    down.begin_attempt()  # a retry starts over
    assert {t["kind"]: t for t in stats.snapshot()["in_flight"]}["download"]["bytes_done"] == 0
    assert {t["kind"]: t for t in stats.snapshot()["in_flight"]}["download"]["attempts"] == 2
    down.advance(1000)
    stats.end_transfer(down, ok=True)
    stats.end_transfer(up, ok=False)
    snap = stats.snapshot()
    assert snap["in_flight"] == []
    assert snap["transfers"] == {"download": {"count": 1, "bytes": 1000}, "upload": {"count": 0, "bytes": 0}}
    assert len(pokes) == 4  # two starts, two ends


def test_a_failing_change_callback_never_breaks_a_transfer() -> None:
    stats = ClientStats()

    def boom() -> None:
        raise RuntimeError("status writer broke")

    stats.on_change = boom
    t = stats.start_transfer("upload", total=1)
    stats.end_transfer(t, ok=True)
    assert stats.snapshot()["transfers"]["upload"]["count"] == 1


def test_counts_are_exact_under_many_threads() -> None:
    stats = ClientStats()

    def work() -> None:
        for _ in range(2000):
            stats.call("file", "export")
            t = stats.start_transfer("download")
            t.advance(1)
            stats.end_transfer(t, ok=True)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    snap = stats.snapshot()
    assert snap["calls"]["total"] == 16000
    assert snap["transfers"]["download"] == {"count": 16000, "bytes": 16000}
    assert snap["in_flight"] == []


# ------------------------------------------------------------------ inside HttpClient, against the sandbox


@pytest.fixture
def start(sandbox, tmp_path):
    def go(*args: str):
        seed(tmp_path / "sb-data", longitudinal_project(tmp_path / "sb-src"))
        return sandbox("--token", FULL, *args)

    return go


class GatedSink(io.RawIOBase):
    """Takes the first write, then blocks the next one until ``release`` (a download held mid-body)."""

    def __init__(self) -> None:
        self.count = 0
        self.writes = 0
        self.second = threading.Event()
        self.release = threading.Event()

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        self.writes += 1
        if self.writes == 2:
            self.second.set()
            assert self.release.wait(30)
        self.count += len(b)
        return len(b)


def test_client_counts_what_the_server_logged(start, tmp_path) -> None:
    sb = start()
    with HttpClient(sb.url, FULL, rate_limit=None) as c:
        c.project_info()
        c.metadata()
        c.export_file("1", "consent_file", io.BytesIO(), event=BASE)
        with pytest.raises(E.EmptySlot):
            c.export_file("2", "consent_file", io.BytesIO(), event=BASE)
        snap = c.stats.snapshot()
    logged = sb.calls(at_least=4)
    assert snap["calls"]["total"] == len(logged) == 4
    assert snap["calls"]["by_kind"] == {"file/export": 2, "metadata": 1, "project": 1}
    assert snap["calls"]["failed"] == sum(1 for row in logged if row["status"] != 200) == 1
    assert snap["transfers"]["download"] == {"count": 1, "bytes": len(b"%PDF-1.4 consent")}
    assert snap["in_flight"] == []


def test_a_download_in_flight_shows_its_bytes(start, tmp_path) -> None:
    sb = start()
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(6 << 20))
    with HttpClient(sb.url, FULL, rate_limit=None) as c:
        c.import_file("2", "consent_file", str(big), "big.bin", event=BASE)
        sink = GatedSink()
        worker = threading.Thread(target=c.export_file, args=("2", "consent_file", sink), kwargs={"event": BASE})
        worker.start()
        try:
            assert sink.second.wait(30), "the download never reached its second block"
            flying = c.stats.snapshot()["in_flight"]
        finally:
            sink.release.set()
            worker.join(30)
        assert len(flying) == 1
        t = flying[0]
        assert t["kind"] == "download" and t["record"] == "2" and t["field"] == "consent_file"
        assert t["event"] == BASE and t["bytes_total"] == big.stat().st_size
        assert 0 < t["bytes_done"] < t["bytes_total"]
        assert sink.count == big.stat().st_size
        assert c.stats.snapshot()["in_flight"] == []


def test_an_upload_waiting_for_its_answer_shows_in_flight(start, tmp_path) -> None:
    sb = start("--fault", "content=file,action=import,nth=1,do=hang,seconds=4")
    src = tmp_path / "scan.bin"
    src.write_bytes(os.urandom(3 << 20))
    errors: list[BaseException] = []
    with HttpClient(sb.url, FULL, rate_limit=None, timeout=(5, 30)) as c:

        def upload() -> None:
            try:
                c.import_file("2", "consent_file", str(src), "scan.bin", event=BASE)
            except E.RedcapError as exc:
                errors.append(exc)

        worker = threading.Thread(target=upload)
        worker.start()
        seen: dict[str, Any] | None = None
        deadline = time.monotonic() + 20
        while worker.is_alive() and time.monotonic() < deadline:
            flying = c.stats.snapshot()["in_flight"]
            if flying and flying[0]["bytes_done"] == src.stat().st_size:
                seen = flying[0]
                break
            time.sleep(0.02)
        worker.join(30)
        assert seen is not None, "the upload never showed as in flight with its bytes sent"
        assert seen["kind"] == "upload" and seen["name"] == "scan.bin" and seen["bytes_total"] == src.stat().st_size
        assert len(errors) == 1, "the hung upload must fail, not look sent"
        snap = c.stats.snapshot()
        assert snap["in_flight"] == [] and snap["transfers"]["upload"]["count"] == 0
        assert snap["calls"]["failed"] == 1


# ------------------------------------------------------------------ the status file


@pytest.fixture
def state(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("REDCAPFS_STATE_DIR", str(tmp_path / "state"))
    return tmp_path / "state"


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_writer_file_is_private_and_removed_at_stop(state, tmp_path) -> None:
    writer = status.StatusWriter(status.status_path(tmp_path / "mnt"), {"mountpoint": str(tmp_path / "mnt")},
                                 lambda: {"unsent": 3}, interval=0.05)
    writer.start()
    try:
        path = writer.path
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
        first = json.loads(path.read_text())
        assert first["unsent"] == 3 and first["updated_epoch"] > 0
        deadline = time.monotonic() + 10
        while json.loads(path.read_text())["updated_epoch"] == first["updated_epoch"]:
            assert time.monotonic() < deadline, "the writer never refreshed"
            time.sleep(0.02)
        assert [p.name for p in path.parent.iterdir() if p.name.endswith(".tmp")] == []
    finally:
        writer.stop()
    assert not path.exists()


def test_writer_never_follows_a_planted_symlink(state, tmp_path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("keep me")
    path = status.status_path(tmp_path / "mnt")
    path.symlink_to(victim)
    tmp_name = path.parent / f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp"
    tmp_name.symlink_to(victim)
    status.write_private_json(path, {"mountpoint": "x"})
    assert victim.read_text() == "keep me"
    assert not path.is_symlink() and json.loads(path.read_text()) == {"mountpoint": "x"}


def test_reader_skips_files_that_are_not_private(state, tmp_path) -> None:
    good = status.mounts_dir() / f"a{status.SUFFIX}"
    status.write_private_json(good, {"mountpoint": "/a", "pid": os.getpid(), "pid_start": process_start(os.getpid())})
    loose = status.mounts_dir() / f"b{status.SUFFIX}"
    status.write_private_json(loose, {"mountpoint": "/b", "pid": os.getpid()})
    os.chmod(loose, 0o644)
    (status.mounts_dir() / f"c{status.SUFFIX}").symlink_to(good)
    assert [d["mountpoint"] for d in status.read_all()] == ["/a"]


def test_a_dead_process_shows_dead_and_its_open_files_as_unsent(state, tmp_path) -> None:
    folder = tmp_path / "project"
    spool = folder / "spool"
    spool.mkdir(parents=True)
    pid = dead_pid()
    (spool / "e1.json").write_text(json.dumps({"state": "open", "pid": pid}))
    doc = {"mountpoint": str(tmp_path / "gone"), "pid": pid, "state_dir": str(folder),
           "in_flight": [{"kind": "upload"}], "unsent": 0}
    out = status.with_state(doc, table=set())
    assert out["state"] == "dead" and out["in_flight"] == [] and out["unsent"] == 1
    assert out["kernel_mounted"] is False
    alive = dict(doc, pid=os.getpid(), pid_start=process_start(os.getpid()))
    assert status.with_state(alive, table={str(tmp_path / "gone")})["state"] == "mounted"
    assert status.with_state(alive, table=set())["state"] == "unmounting"
    reused = dict(alive, pid_start="1")  # same pid, another process start: not our mount
    assert status.with_state(reused, table=set())["state"] == "dead"


def test_spool_counts_every_state_and_treats_missing_as_unsent(tmp_path) -> None:
    spool = tmp_path / "spool"
    spool.mkdir()
    me = {"pid": os.getpid(), "pid_start": process_start(os.getpid())}
    rows = {"a": {"state": "open", **me}, "b": {"state": "open", "pid": dead_pid()}, "c": {"state": "unsent"},
            "d": {"state": "incomplete"}, "e": {"state": "conflict"}, "f": {"pid": 1}, "g": {"state": "temp"}}
    for name, meta in rows.items():
        (spool / f"{name}.json").write_text(json.dumps(meta))
    (spool / "h.json").write_text("{not json")
    (spool / "a.data").write_bytes(b"ignored")
    assert status.spool_counts(spool) == {"conflict": 1, "incomplete": 1, "temp": 1, "unreadable": 1,
                                          "unsent": 3, "writing": 1}
    summary = status.spool_summary(spool)
    assert (summary["unsent"], summary["incomplete"], summary["conflict"]) == (3, 1, 1)
    assert status.spool_summary(tmp_path / "none") == {"unsent": 0, "incomplete": 0, "conflict": 0, "spool": {}}


def test_credential_like_options_never_reach_the_file() -> None:
    shown, given = status.redact_options({"rate": 5.0, "token": "s3cret", "ldap_password": "pw", "ca": None},
                                         ["rate=5,token=s3cret", "ldap_password=pw,ro"])
    assert shown == {"rate": 5.0, "token": "***", "ldap_password": "***", "ca": None}
    assert given == ["rate=5,token=***", "ldap_password=***,ro"]
    assert "s3cret" not in json.dumps([shown, given])


def test_folder_bytes_counts_files_below(tmp_path) -> None:
    (tmp_path / "c" / "sub").mkdir(parents=True)
    (tmp_path / "c" / "one").write_bytes(b"x" * 10)
    (tmp_path / "c" / "sub" / "two").write_bytes(b"y" * 5)
    (tmp_path / "c" / "link").symlink_to(tmp_path / "c" / "one")
    assert status.folder_bytes(tmp_path / "c") == 15
    assert status.folder_bytes(tmp_path / "missing") == 0


# ------------------------------------------------------------------ the command


def run_status(state: Path, *args: str, stdout: Any = subprocess.PIPE) -> subprocess.CompletedProcess:
    env = dict(os.environ, REDCAPFS_STATE_DIR=str(state))
    return subprocess.run([sys.executable, "-m", "redcapfs", "status", *args], stdout=stdout,
                          stderr=subprocess.PIPE, text=True, env=env, cwd=str(REPO), timeout=60)


def test_status_with_nothing_mounted(state) -> None:
    assert run_status(state).stdout.strip() == "no redcapfs mounts"
    assert json.loads(run_status(state, "--json").stdout) == []
    missing = run_status(state, "/nowhere")
    assert missing.returncode == 1 and "/nowhere is not a redcapfs mount" in missing.stderr


@pytest.mark.parametrize("args", [(), ("--json",)], ids=["text", "json"])
def test_a_closed_pipe_ends_quietly(state, args) -> None:
    for n in range(3):  # enough output that the write itself meets the closed pipe
        status.write_private_json(status.mounts_dir() / f"{n}{status.SUFFIX}",
                                  {"mountpoint": f"/m{n}", "pid": dead_pid(), "title": "x" * 30000})
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        result = run_status(state, *args, stdout=write_end)
    finally:
        os.close(write_end)
    assert "Traceback" not in result.stderr and "BrokenPipe" not in result.stderr, result.stderr
    assert result.returncode == 0


def test_looking_creates_no_state_folders(tmp_path) -> None:
    """`redcapfs status` and `redcapfs unmount` before any mount leave the state folder uncreated."""
    state = tmp_path / "never-made"
    env = dict(os.environ, REDCAPFS_STATE_DIR=str(state))
    shown = subprocess.run([sys.executable, "-m", "redcapfs", "status", "--json"], capture_output=True, text=True,
                           env=env, timeout=60)
    assert shown.returncode == 0 and json.loads(shown.stdout) == []
    refused = subprocess.run([sys.executable, "-m", "redcapfs", "unmount", str(tmp_path)], capture_output=True,
                             text=True, env=env, timeout=60)
    assert refused.returncode != 0 and "is not mounted" in refused.stderr
    assert not state.exists()
