"""Writes and reads across project shapes and server variants: classic projects, repeating events,
records whose names need escaping, older servers ("[document]", no fileinfo), and token-file refusals."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mounthelp import REPO, downloads, expected_files, expected_tree, pycap_bytes
from test_browse_read import tree_of
from test_write import server_file

CLASSIC = REPO / "tests" / "data" / "classic-json"


def test_classic_project_write_into_a_repeating_form_and_an_escaped_record(sandbox, mount, tmp_path: Path) -> None:
    sb = sandbox(project=CLASSIC)
    mnt = mount(sb)
    src = tmp_path / "n.txt"
    src.write_bytes(b"classic note\n")
    os.mkdir(mnt.path / "1" / "note_file" / "3")
    assert subprocess.run(["cp", str(src), str(mnt.path / "1" / "note_file" / "3")]).returncode == 0
    assert server_file(sb, "1", "note_file", None, 3) == ("n.txt", src.read_bytes())
    odd = mnt.path / "a%2Fb c" / "report"
    assert os.listdir(odd) == ['..%2Fescape;"q".txt']
    os.unlink(odd / '..%2Fescape;"q".txt')
    assert server_file(sb, "a/b c", "report", None) is None
    assert subprocess.run(["cp", str(src), str(odd / "clean.txt")]).returncode == 0
    assert server_file(sb, "a/b c", "report", None) == ("clean.txt", src.read_bytes())


def test_a_whole_repeating_event_gets_new_instances(sandbox, mount, tmp_path: Path) -> None:
    sb = sandbox()
    mnt = mount(sb)
    event = mnt.path / "2002" / "visit_arm_2" / "ecg_file"
    existing = sorted(int(n) for n in os.listdir(event))
    new = max(existing) + 1
    os.mkdir(event / str(new))
    src = tmp_path / "ecg.xml"
    src.write_bytes(b"<ecg/>" * 1000)
    assert subprocess.run(["cp", str(src), str(event / str(new))]).returncode == 0
    assert server_file(sb, "2002", "ecg_file", "visit_arm_2", new) == ("ecg.xml", src.read_bytes())


def test_a_name_redcap_would_change_is_refused(sandbox, mount) -> None:
    sb = sandbox()
    mnt = mount(sb)
    with pytest.raises(OSError) as info:
        (mnt.path / "1001" / "baseline_arm_1" / "radiology_report" / "O'Brien.pdf").write_bytes(b"x")
    assert info.value.errno == 22  # EINVAL: REDCap strips quotes, the file would change its name
    assert "would store this name" in mnt.log


@pytest.mark.parametrize("fileinfo", [True, False], ids=["fileinfo", "no-fileinfo"])
def test_older_servers_that_export_document_placeholders(fileinfo: bool, sandbox, mount, load) -> None:
    sb = sandbox("--legacy-document-values", *([] if fileinfo else ["--no-fileinfo"]))
    mnt = mount(sb)
    pd = load(None)
    assert tree_of(mnt.path) == expected_tree(pd)  # real names, learnt from the server per slot
    sample = list(expected_files(pd).items())[:5]
    got = {rel: (mnt.path / rel).read_bytes() for rel, _ in sample}
    if fileinfo:
        assert len(downloads(sb.calls())) == 5, "names and sizes came from fileinfo; each read downloads once"
    for rel, stored in sample:
        assert got[rel] == pycap_bytes(sb.url, sb.token, stored)


def test_token_file_refusals(sandbox, mount, tmp_path: Path) -> None:
    sb = sandbox()
    token_file = tmp_path / "token"
    token_file.write_text(sb.token + "\n")
    token_file.chmod(0o644)
    refused = mount(sb, env={"REDCAP_API_TOKEN": None}, args=("--token-file", str(token_file)), expect_fail=True)
    assert "chmod 600" in refused.stderr and sb.token not in refused.stderr
    token_file.chmod(0o600)
    ok = mount(sb, env={"REDCAP_API_TOKEN": None}, args=("--token-file", str(token_file)))
    assert os.listdir(ok.path)
    missing = mount(sb, env={"REDCAP_API_TOKEN": None}, expect_fail=True)
    assert "--token-file" in missing.stderr


def test_tls_failure_is_reported(sandbox, mount) -> None:
    sb = sandbox()
    https = sb.url.replace("http://", "https://")  # the sandbox speaks plain HTTP: the handshake fails
    refused = mount(sb, url=https, expect_fail=True)
    assert "TLS" in refused.stderr or "cannot connect" in refused.stderr, refused.describe()


def test_unmount_of_something_not_mounted(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "redcapfs", "unmount", str(tmp_path)], capture_output=True,
                            text=True, cwd=str(REPO))
    assert result.returncode == 1 and "not mounted" in result.stderr


def test_unknown_mount_option_is_refused(sandbox, mount) -> None:
    sb = sandbox()
    refused = mount(sb, "colour=blue", expect_fail=True)
    assert "unknown mount option" in refused.stderr



def test_hidden_prompt_on_a_terminal(sandbox, tmp_path: Path) -> None:
    """Without a token file or variable, a terminal user is asked; the answer is not echoed."""
    import pty
    import select
    import time

    from mounthelp import force_unmount, is_mounted

    sb = sandbox()
    mp = tmp_path / "mp"
    mp.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "REDCAP_API_TOKEN"}
    env["REDCAPFS_STATE_DIR"] = str(tmp_path / "state")
    pid, fd = pty.fork()
    if pid == 0:  # the child: the mount command on a terminal
        os.chdir(str(REPO))
        os.execvpe(sys.executable, [sys.executable, "-m", "redcapfs", "mount", sb.url, str(mp), "-o", "rate=200",
                                    "--log-file", str(tmp_path / "m.log")], env)
    seen = b""
    try:
        deadline = time.monotonic() + 30
        while b"token" not in seen.lower() and time.monotonic() < deadline:
            if select.select([fd], [], [], 0.5)[0]:
                seen += os.read(fd, 1024)
        assert b"REDCap API token" in seen
        os.write(fd, (sb.token + "\n").encode())
        _, status = os.waitpid(pid, 0)
        try:
            while select.select([fd], [], [], 0.2)[0]:
                seen += os.read(fd, 1024)
        except OSError:
            pass
        assert os.WEXITSTATUS(status) == 0, seen
        assert sb.token.encode() not in seen, "the token must not be echoed"
        assert is_mounted(mp) and "1001" in os.listdir(mp)
    finally:
        force_unmount(mp)
