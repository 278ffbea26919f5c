"""The command tree: --version, help CMD, the mount.fuse3 form, completion, and mount(8)'s options."""

from __future__ import annotations

import subprocess
import sys

import pytest

from redcapfs.cli import COMMANDS
from redcapfs.mount import MountError, parse_options


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "redcapfs", *args], capture_output=True, text=True, timeout=60)


def test_version() -> None:
    from importlib.metadata import version

    out = run("--version")
    assert out.returncode == 0 and out.stdout.strip() == f"redcapfs {version('redcapfs')}"


@pytest.mark.parametrize("name", [n for n in COMMANDS if n not in ("help",)])
def test_help_cmd_is_cmd_help(name: str) -> None:
    own = run(name, "--help")
    via_help = run("help", name)
    assert own.returncode == via_help.returncode == 0, own.stderr + via_help.stderr
    assert own.stdout == via_help.stdout and own.stdout.startswith("usage: ")


def test_top_help_lists_every_command() -> None:
    out = run("--help").stdout
    assert all(f"  {name} " in out for name in COMMANDS)


def test_mount_help_lists_every_option() -> None:
    text = run("mount", "--help").stdout
    from redcapfs import mount8, options

    for name in [*options._FLAGS, *options._VALUES, *mount8._VALUES, "debug", "nosuid", "_netdev", "x-systemd"]:
        assert name in text, name
    for flag in ("--read-only", "--allow-other", "--log-level", "--token-file"):
        assert flag in text


def test_url_first_form_is_mount() -> None:
    """mount.fuse3 runs `redcapfs URL MOUNTPOINT -o ...`: it reaches mount's own checks."""
    out = run("https://redcap.example.edu/api/", "/nonexistent/mnt", "-o", "frobnicate")
    assert out.returncode == 1 and "unknown mount option 'frobnicate'" in out.stderr


def test_bash_completion_is_valid_bash() -> None:
    script = run("completion", "bash").stdout
    assert "complete -F _redcapfs redcapfs" in script and "token_file=" in script
    assert subprocess.run(["bash", "-n"], input=script, text=True).returncode == 0


def test_mount8_generic_options_accepted() -> None:
    opts = parse_options(["rw,nosuid,nodev,noexec,noatime,_netdev,noauto,user,users,defaults,nofail",
                          "x-systemd.automount,x-systemd.mount-timeout=30,relatime"])
    assert not opts.read_only
    assert opts.kernel_flags == ["nosuid", "nodev", "noexec", "noatime"]


def test_owner_options() -> None:
    opts = parse_options(["uid=1000,gid=100,umask=027,fsname=study1,token_file=/etc/redcapfs/t,debug"])
    assert (opts.uid, opts.gid, opts.umask, opts.fsname) == (1000, 100, 0o027, "study1")
    assert opts.token_file == "/etc/redcapfs/t" and opts.debug


@pytest.mark.parametrize("bad", ["umask=999", "umask=x", "uid=-1", "gid=abc", "fsname=a b", "uid="])
def test_owner_options_refused(bad: str) -> None:
    with pytest.raises(MountError, match=bad.partition("=")[0]):
        parse_options([bad])


def test_default_fsname_has_no_credentials() -> None:
    from redcapfs.mount8 import default_fsname

    assert default_fsname("https://user:pw@redcap.example.edu/api/", "12") == "redcapfs:redcap.example.edu/12"
    assert default_fsname("http://127.0.0.1:8080/api/", 3) == "redcapfs:127.0.0.1:8080/3"
