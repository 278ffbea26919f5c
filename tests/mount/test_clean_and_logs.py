"""``redcapfs clean`` with a live mount (left untouched) and a dead one; one private, rotatable log per mount.

Two sandboxes (two servers, so two project folders). The live mount keeps
reading its file after every clean; the dead mount's cache, trash and
manifest go, its unsent file stays until ``--force`` (``redcapfs unsent``
says so independently of clean's own output).
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mounthelp import REPO, daemon_pids, force_unmount, is_mounted

redcap = pytest.importorskip("redcap")

SLOT = ("1001", "baseline_arm_1", "radiology_report")  # empty in the demo project


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "redcapfs", *args], capture_output=True, text=True, env=env,
                          cwd=str(REPO), timeout=60, stdin=subprocess.DEVNULL)


def env_for(tmp_path: Path, sb: Any) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "REDCAP_API_TOKEN"}
    env.update(REDCAPFS_STATE_DIR=str(tmp_path / "state"), REDCAP_API_TOKEN=sb.token,
               REDCAPFS_CONFIG=str(tmp_path / "none.toml"))
    return env


def project_folder(tmp_path: Path, sb: Any) -> Path:
    from redcapfs.locations import project_key

    pid = str(redcap.Project(sb.url, sb.token).export_project_info()["project_id"])
    return tmp_path / "state" / project_key(sb.url, pid)


def write_one(mp: Path, name: str, data: bytes) -> Path:
    path = mp.joinpath(*SLOT, name)
    path.write_bytes(data)
    return path


def test_clean_leaves_a_live_mount_alone_and_keeps_unsent_files(sandbox: Any, mount: Any, tmp_path: Path) -> None:
    from redcapfs.spool import Spool, Target

    live_sb, dead_sb = sandbox(name="live"), sandbox(name="dead")
    live = mount(live_sb, "keep_cache")
    written = write_one(live.path, "live.txt", b"live bytes\n")
    live_folder = project_folder(tmp_path, live_sb)
    before = sorted(p.relative_to(live_folder) for p in live_folder.rglob("*"))
    dead = mount(dead_sb, "keep_cache")
    write_one(dead.path, "dead.txt", b"dead bytes\n")
    assert (dead.path.joinpath(*SLOT, "dead.txt")).read_bytes() == b"dead bytes\n"
    dead_folder = project_folder(tmp_path, dead_sb)
    pid = str(redcap.Project(dead_sb.url, dead_sb.token).export_project_info()["project_id"])
    kept = Spool(dead_folder / "spool").create(Target(dead_sb.url, pid, *SLOT, None, "never-sent.txt"))
    kept.data_path.write_bytes(b"only copy")
    kept.mark_unsent("REDCap said: test")
    (daemon,) = daemon_pids(dead.path)
    os.kill(daemon, signal.SIGKILL)
    while daemon_pids(dead.path):
        time.sleep(0.05)
    force_unmount(dead.path, dead.env)
    assert not is_mounted(dead.path)
    env = live.env

    dry = cli(env, "clean", "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    report = {p["key"]: p for p in json.loads(dry.stdout)["projects"]}
    assert report[live_folder.name]["busy"] and "mounted at" in report[live_folder.name]["busy"]
    assert report[dead_folder.name]["removed"] and (dead_folder / "manifest.sqlite").exists()

    done = cli(env, "clean")
    assert done.returncode == 0 and "left alone: mounted at" in done.stdout, done.stdout + done.stderr
    assert sorted(p.relative_to(live_folder) for p in live_folder.rglob("*")) == before
    assert written.read_bytes() == b"live bytes\n"
    left = sorted(p.name for p in dead_folder.iterdir())
    assert left == ["spool"], left  # cache, trash, manifest, attributes gone
    assert sorted(p.name for p in (dead_folder / "spool").iterdir()) == sorted([kept.data_path.name,
                                                                                 kept.meta_path.name])
    assert [r["id"] for r in json.loads(cli(env, "unsent", "--json").stdout)] == [kept.id]
    assert "kept 1 spooled file" in done.stdout
    assert [d["mountpoint"] for d in json.loads(cli(env, "status", "--json").stdout)] == [str(live.path)]

    forced = cli(env, "clean", "--force", "--project", dead_folder.name)
    assert forced.returncode == 0, forced.stderr
    assert not dead_folder.exists() and json.loads(cli(env, "unsent", "--json").stdout) == []
    assert sorted(p.relative_to(live_folder) for p in live_folder.rglob("*")) == before
    assert written.read_bytes() == b"live bytes\n"


def _bg_mount(env: dict[str, str], url: str, mp: Path) -> subprocess.CompletedProcess:
    mp.mkdir(exist_ok=True)
    return cli(env, "mount", url, str(mp), "-o", "rate=200")


def test_one_private_rotatable_log_per_mount(sandbox: Any, tmp_path: Path) -> None:
    sb = sandbox()
    env = env_for(tmp_path, sb)
    one, two = tmp_path / "one", tmp_path / "two"
    try:
        for mp in (one, two):
            done = _bg_mount(env, sb.url, mp)
            assert done.returncode == 0, done.stderr
        docs = {d["mountpoint"]: d for d in json.loads(cli(env, "status", "--json").stdout)}
        logs = [Path(docs[str(mp)]["log_file"]) for mp in (one, two)]
        assert logs[0] != logs[1] and all(p.parent == tmp_path / "state" / "logs" for p in logs)
        for log in logs:
            assert stat.S_IMODE(log.stat().st_mode) == 0o600 and "mount ready" in log.read_text()
        assert str(logs[0]) in cli(env, "status", str(one)).stdout
        rotated = logs[0].with_name(logs[0].name + ".1")
        logs[0].rename(rotated)
        assert cli(env, "unmount", str(one)).returncode == 0  # the mount logs "unmounted" as it ends
        deadline = time.monotonic() + 20
        while not (logs[0].exists() and "unmounted" in logs[0].read_text()):
            assert time.monotonic() < deadline, "no new log after rotation"
            time.sleep(0.1)
        assert stat.S_IMODE(logs[0].stat().st_mode) == 0o600
        assert "unmounted" not in rotated.read_text()
    finally:
        for mp in (one, two):
            force_unmount(mp, env)


def test_a_symlink_at_the_log_path_is_not_followed(sandbox: Any, tmp_path: Path) -> None:
    from redcapfs.status import mount_key

    sb = sandbox()
    env = env_for(tmp_path, sb)
    mp = tmp_path / "mp"
    victim = tmp_path / "victim"
    victim.write_text("untouched\n")
    logs = tmp_path / "state" / "logs"
    logs.mkdir(parents=True, mode=0o700)
    (tmp_path / "state").chmod(0o700)
    (logs / f"{mount_key(mp)}.log").symlink_to(victim)
    try:
        done = _bg_mount(env, sb.url, mp)
        assert done.returncode != 0 and not is_mounted(mp)
        assert "Traceback" not in done.stderr and done.stderr.strip(), done.stderr
    finally:
        force_unmount(mp, env)
    assert victim.read_text() == "untouched\n"


def test_a_long_upload_at_close_is_named_in_the_log_and_status(sandbox: Any, mount: Any, tmp_path: Path) -> None:
    """The server holds the upload's answer; the cp waits at close, and log and status say why."""
    sb = sandbox("--fault", "content=file,action=import,nth=1,do=hang,seconds=25")
    mnt = mount(sb, "timeout=60")
    src = tmp_path / "big.bin"
    src.write_bytes(os.urandom(3 << 20))
    cp = subprocess.Popen(["cp", str(src), str(mnt.path.joinpath(*SLOT, "big.bin"))])
    try:
        deadline = time.monotonic() + 60
        while "in flight: upload" not in mnt.log:
            assert time.monotonic() < deadline, mnt.log[-2000:]
            time.sleep(0.2)
        line = next(x for x in mnt.log.splitlines() if "in flight: upload" in x)
        assert "big.bin" in line and "of 3.0 MiB" in line, line
        flying = json.loads(cli(mnt.env, "status", "--json").stdout)[0]["in_flight"]
        assert [t["name"] for t in flying if t["kind"] == "upload"] == ["big.bin"]
    finally:
        cp.wait(120)
