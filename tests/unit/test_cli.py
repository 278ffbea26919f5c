"""The ``redcapfs sandbox`` console command prints url=/token= lines and serves PyCap."""

import subprocess
import sys

import redcap


def test_redcapfs_sandbox_command_serves_demo(tmp_path):
    argv = [sys.executable, "-m", "redcapfs.cli", "sandbox", "--port", "0", "--token", "A" * 32,
            "--data-dir", str(tmp_path)]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    try:
        lines = []
        for line in proc.stdout:
            lines.append(line.strip())
            if line.strip() == "ready":
                break
        url = next(ln[4:] for ln in lines if ln.startswith("url="))
        assert [ln[6:] for ln in lines if ln.startswith("token=")] == ["A" * 32]
        info = redcap.Project(url, "A" * 32).export_project_info()
        assert info["is_longitudinal"] == 1
    finally:
        proc.terminate()
        proc.wait(10)


def test_unknown_command_is_an_error():
    out = subprocess.run([sys.executable, "-m", "redcapfs.cli", "frobnicate"], capture_output=True, text=True)
    assert out.returncode == 2 and "unknown command" in out.stderr
