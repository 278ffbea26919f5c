"""Profiles in config.toml against real mounts of the sandbox: token file, token_command, keyring, no URL.

Checked independently: the records listed are those PyCap exports with the
sandbox's token; the token never shows in the mount process's argv, its log,
or any message; `retry PROFILE` sends what the spool holds (PyCap reads it back).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from redcapfs.names import encode

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mounthelp import REPO, daemon_pids, force_unmount, is_mounted

redcap = pytest.importorskip("redcap")

SLOT = ("1001", "baseline_arm_1", "radiology_report")  # empty in the demo project


def write_config(tmp_path: Path, text: str, mode: int = 0o600) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text)
    path.chmod(mode)
    return path


def token_file(tmp_path: Path, token: str, mode: int = 0o600) -> Path:
    path = tmp_path / "token"
    path.write_text(token + "\n")
    path.chmod(mode)
    return path


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "redcapfs", *args], capture_output=True, text=True, env=env,
                          cwd=str(REPO), timeout=60, stdin=subprocess.DEVNULL)


def base_env(tmp_path: Path, config: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("REDCAP_API_TOKEN", "REDCAP_API_URL")}
    env.update(REDCAPFS_STATE_DIR=str(tmp_path / "state"), REDCAPFS_CONFIG=str(config), **extra)
    return env


def records(sb: Any) -> set[str]:
    rows = redcap.Project(sb.url, sb.token).export_records(fields=["record_id"])
    return {encode(str(r["record_id"])) for r in rows}  # names.encode: pure, unit-tested (see mounthelp)


def assert_token_hidden(mnt_path: Path, token: str, *texts: str) -> None:
    for pid in daemon_pids(mnt_path):
        assert token.encode() not in Path(f"/proc/{pid}/cmdline").read_bytes()
        assert token.encode() not in Path(f"/proc/{pid}/environ").read_bytes()
    for text in texts:
        assert token not in text


def test_mount_by_profile_with_a_token_file_and_default_options(sandbox: Any, mount: Any, tmp_path: Path) -> None:
    sb = sandbox()
    tok = token_file(tmp_path, sb.token)
    cfg = write_config(tmp_path, f'[study1]\nurl = "{sb.url}"\ntoken_file = "{tok}"\noptions = "ro,rate=200"\n')
    mnt = mount(sb, url="study1", env={"REDCAP_API_TOKEN": None, "REDCAPFS_CONFIG": str(cfg)})
    assert records(sb) <= set(os.listdir(mnt.path))
    docs = json.loads(cli(mnt.env, "status", "--json", "study1").stdout)
    assert [d["mountpoint"] for d in docs] == [str(mnt.path)] and docs[0]["profile"] == "study1"
    assert docs[0]["options"]["read_only"] is True  # the profile's options applied
    with pytest.raises(OSError):
        (mnt.path / SLOT[0] / SLOT[1] / SLOT[2] / "x.txt").write_text("no")
    listed = json.loads(cli(mnt.env, "profiles", "--json").stdout)
    assert listed[0]["name"] == "study1" and listed[0]["project_id"] == docs[0]["project_id"]
    assert_token_hidden(mnt.path, sb.token, mnt.log, mnt.stderr, json.dumps(listed), json.dumps(docs))


def test_mount_with_token_command_and_its_failures(sandbox: Any, mount: Any, tmp_path: Path) -> None:
    sb = sandbox()
    script = tmp_path / "give-token"
    script.write_text(f"#!/bin/sh\necho {sb.token}\n")
    script.chmod(0o700)
    cfg = write_config(tmp_path, f'[s]\nurl = "{sb.url}"\ntoken_command = ["{script}"]\n')
    mnt = mount(sb, url="s", env={"REDCAP_API_TOKEN": None, "REDCAPFS_CONFIG": str(cfg)})
    assert records(sb) <= set(os.listdir(mnt.path))
    assert_token_hidden(mnt.path, sb.token, mnt.log, mnt.stderr)
    mnt.unmount()
    # a command that fails after printing the token: the message names the command, never what it printed
    script.write_text(f"#!/bin/sh\necho {sb.token}\nexit 3\n")
    env = base_env(tmp_path, cfg)
    assert (tmp_path / "mnt1").is_dir()
    bad = cli(env, "mount", "s", str(tmp_path / "mnt1"))
    assert bad.returncode != 0 and "failed (exit 3)" in bad.stderr and sb.token not in bad.stderr + bad.stdout
    script.write_text("#!/bin/sh\necho not-a-token-but-secret\n")
    bad = cli(env, "mount", "s", str(tmp_path / "mnt1"))
    assert "not 32 hexadecimal" in bad.stderr and "not-a-token-but-secret" not in bad.stderr
    assert not is_mounted(tmp_path / "mnt1")


def test_mount_with_the_keyring(sandbox: Any, mount: Any, tmp_path: Path) -> None:
    pytest.importorskip("keyrings.alt")
    sb = sandbox()
    cfg = write_config(tmp_path, f'default = "k"\n[k]\nurl = "{sb.url}"\nkeyring = true\n')
    ring = {"PYTHON_KEYRING_BACKEND": "keyrings.alt.file.PlaintextKeyring", "XDG_DATA_HOME": str(tmp_path / "d")}
    env = base_env(tmp_path, cfg, **ring)
    (tmp_path / "empty").mkdir()
    missing = cli(env, "mount", "k", str(tmp_path / "empty"))
    assert "no token in the keyring" in missing.stderr and "keyring set redcapfs k" in missing.stderr
    subprocess.run([sys.executable, "-c", f"import keyring; keyring.set_password('redcapfs', 'k', '{sb.token}')"],
                   env=env, check=True, timeout=60)
    mnt = mount(sb, url="k", env={"REDCAP_API_TOKEN": None, "REDCAPFS_CONFIG": str(cfg), **ring})
    assert records(sb) <= set(os.listdir(mnt.path))
    assert_token_hidden(mnt.path, sb.token, mnt.log, mnt.stderr)


def _mount_without_url(env: dict[str, str], mp: Path) -> subprocess.CompletedProcess:
    mp.mkdir(exist_ok=True)
    return cli(env, "mount", str(mp), "-o", "rate=200")


def test_mount_without_url_uses_the_default_profile_or_the_environment(sandbox: Any, tmp_path: Path) -> None:
    sb = sandbox()
    tok = token_file(tmp_path, sb.token)
    cfg = write_config(tmp_path, f'default = "one"\n[one]\nurl = "{sb.url}"\ntoken_file = "{tok}"\n')
    nothing = base_env(tmp_path, tmp_path / "none.toml")
    said = _mount_without_url(nothing, tmp_path / "m0")
    assert said.returncode != 0 and "REDCAP_API_URL" in said.stderr and "none.toml" in said.stderr
    assert "following arguments are required" not in said.stderr
    for n, env in enumerate([base_env(tmp_path, cfg),
                             base_env(tmp_path, tmp_path / "none.toml", REDCAP_API_URL=sb.url,
                                      REDCAP_API_TOKEN=sb.token)], 1):
        mp = tmp_path / f"m{n}"
        try:
            done = _mount_without_url(env, mp)
            assert done.returncode == 0, done.stderr
            assert records(sb) <= set(os.listdir(mp))
        finally:
            force_unmount(mp, env)
        assert not is_mounted(mp)


def test_unsafe_config_and_token_file_are_refused_with_the_fix(sandbox: Any, tmp_path: Path) -> None:
    sb = sandbox()
    mp = tmp_path / "mp"
    mp.mkdir()
    cfg = write_config(tmp_path, f'[a]\nurl = "{sb.url}"\ntoken = "{sb.token}"\n', mode=0o644)
    said = cli(base_env(tmp_path, cfg), "mount", "a", str(mp))
    assert said.returncode != 0 and f"chmod 600 {cfg}" in said.stderr and sb.token not in said.stderr
    assert "chmod 600" in cli(base_env(tmp_path, cfg), "profiles").stderr
    tok = token_file(tmp_path, sb.token, mode=0o640)
    cfg = write_config(tmp_path, f'[a]\nurl = "{sb.url}"\ntoken_file = "{tok}"\n')
    said = cli(base_env(tmp_path, cfg), "mount", "a", str(mp))
    assert said.returncode != 0 and f"chmod 600 {tok}" in said.stderr
    cfg.chmod(0o666)
    assert "chmod go-w" in cli(base_env(tmp_path, cfg), "mount", "a", str(mp)).stderr


def test_retry_and_unsent_per_profile(sandbox: Any, tmp_path: Path) -> None:
    from redcapfs.locations import project_key
    from redcapfs.spool import Spool, Target

    sb = sandbox()
    project_id = str(redcap.Project(sb.url, sb.token).export_project_info()["project_id"])
    state = tmp_path / "state"
    mine = Spool(state / project_key(sb.url, project_id) / "spool").create(
        Target(sb.url, project_id, *SLOT, None, "mine.txt"))
    mine.data_path.write_bytes(b"sent by retry\n" * 1000)
    mine.mark_unsent("REDCap said: test")
    other = Spool(state / project_key(sb.url, "999") / "spool").create(Target(sb.url, "999", *SLOT, None, "o.txt"))
    other.data_path.write_bytes(b"other project")
    other.mark_unsent("REDCap said: test")
    tok = token_file(tmp_path, sb.token)
    cfg = write_config(tmp_path, f'[p]\nurl = "{sb.url}"\ntoken_file = "{tok}"\n')
    env = base_env(tmp_path, cfg)
    assert {r["id"] for r in json.loads(cli(env, "unsent", "--json", "p").stdout)} == {mine.id, other.id}
    done = cli(env, "retry", "p")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "[1/1]" in done.stdout and "left 1 entr" in done.stdout and "1 of 1 file(s) done" in done.stdout
    content, _ = redcap.Project(sb.url, sb.token).export_file(record=SLOT[0], field=SLOT[2], event=SLOT[1])
    assert content == b"sent by retry\n" * 1000
    # the project is now known: the other project's entry is not this profile's
    assert json.loads(cli(env, "unsent", "--profile", "p", "--json").stdout) == []
    assert [r["id"] for r in json.loads(cli(env, "unsent", "--json").stdout)] == [other.id]
    assert sb.token not in done.stdout + done.stderr
