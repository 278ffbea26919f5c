"""Every refusal reaches the terminal in background mode, with its message and a non-zero exit.

Each case runs the real ``redcapfs mount`` (background mode, as users run it).
Some are refused by the command itself before it starts the mount process (a
bad URL or option, an unsafe state folder); others only inside the mount
process, once the project's folder is known (spool and cache folders): those
must come back through the ready pipe, not as "see its log".
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest


def refused(result: Any) -> str:
    """The one message line, checked to be a real message rather than the generic fallback."""
    assert result.returncode == 1, result.describe()
    assert "see its log" not in result.stderr and "Traceback" not in result.stderr, result.describe()
    return result.stderr


@pytest.mark.parametrize("url", ["127.0.0.1:9/api/", "ftp://127.0.0.1/api/"])
def test_a_url_that_is_not_http_is_refused(sandbox: Any, mount: Any, url: str) -> None:
    assert "must start with https://" in refused(mount(sandbox(), url=url, expect_fail=True))


@pytest.mark.parametrize("option, says", [
    ("cache_size=inf", "bad value for -o cache_size=inf"),
    ("records_ttl=nan", "bad value for -o records_ttl=nan"),
    ("timeout=0", "bad value for -o timeout=0"),
    ("rate=0", "or off for no limit"),
    ("batch=-3", "bad value for -o batch=-3"),
])
def test_bad_option_values_are_refused(sandbox: Any, mount: Any, option: str, says: str) -> None:
    sb = sandbox()
    assert says in refused(mount(sb, option, expect_fail=True))
    assert sb.calls() == []  # refused before the server was contacted


def test_rate_off_mounts(sandbox: Any, mount: Any) -> None:
    mnt = mount(sandbox(), "rate=off")
    assert os.listdir(mnt.path)
    mnt.unmount()


def test_a_symlinked_state_folder_is_refused(sandbox: Any, mount: Any, tmp_path: Path) -> None:
    real = tmp_path / "elsewhere"
    real.mkdir(mode=0o700)
    link = tmp_path / "state-link"
    link.symlink_to(real)
    message = refused(mount(sandbox(), env={"REDCAPFS_STATE_DIR": str(link)}, expect_fail=True))
    assert "symbolic link" in message and str(link) in message


def _project_folder(state: Path) -> Path:
    (folder,) = [p for p in state.iterdir() if p.is_dir() and p.name != "mounts"]
    return folder


def test_a_symlinked_spool_folder_is_refused_by_the_mount_process(sandbox: Any, mount: Any,
                                                                   tmp_path: Path) -> None:
    sb = sandbox()
    first = mount(sb)
    first.unmount()
    spool = _project_folder(tmp_path / "state") / "spool"
    shutil.rmtree(spool)
    (tmp_path / "other").mkdir(mode=0o700)
    spool.symlink_to(tmp_path / "other")
    message = refused(mount(sb, expect_fail=True))
    assert "symbolic link" in message and "spool" in message


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a folder to another owner needs root")
def test_a_foreign_owned_cache_folder_is_refused(sandbox: Any, mount: Any, tmp_path: Path) -> None:
    sb = sandbox()
    first = mount(sb, "keep_cache")
    first.unmount()
    cache = _project_folder(tmp_path / "state") / "cache"
    os.chown(cache, 4242, 4242)
    message = refused(mount(sb, "keep_cache", expect_fail=True))
    assert "owned by uid 4242" in message and "cache" in message


def test_the_tls_failure_names_its_cause_once(sandbox: Any, mount: Any) -> None:
    sb = sandbox()
    https = sb.url.replace("http://", "https://")  # the sandbox speaks plain HTTP: the handshake fails
    message = refused(mount(sb, url=https, expect_fail=True))
    assert message.count("TLS failure") == 1 and "Caused by" not in message and "SSLError" not in message, message
    assert "-o ca=PATH" in message
