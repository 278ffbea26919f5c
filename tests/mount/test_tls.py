"""The README's paths over https: a real kernel mount of the TLS sandbox, every result checked with PyCap.

The sandbox runs with ``--tls`` (a throwaway CA of its own) and the mount is
told to trust it with ``-o ca=``, as a user with an institution's private CA
would be. Also here: the system trust store (a CA bind-mounted over the
distribution's bundle in a private mount namespace, which is what
``update-ca-certificates`` amounts to), and a run through an HTTPS proxy.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mounthelp import REPO
from tlshelp import connect_proxy, pycap_file

redcap = pytest.importorskip("redcap")

EMPTY = ("1001", "baseline_arm_1", "radiology_report")  # an empty slot of the demo project
MRI = ("1001", "baseline_arm_1", "mri_upload")  # holds mri_00.png
SYSTEM_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
NO_CA_VARS: dict[str, str | None] = {"REQUESTS_CA_BUNDLE": None, "CURL_CA_BUNDLE": None}


def cli(mnt: Any, *args: str, env: dict[str, str | None] | None = None) -> subprocess.CompletedProcess:
    full = dict(mnt.env)
    for key, value in (env or {}).items():
        if value is None:
            full.pop(key, None)
        else:
            full[key] = value
    return subprocess.run([sys.executable, "-m", "redcapfs", *args], capture_output=True, text=True, env=full,
                          cwd=str(REPO), timeout=120)


def status_of(mnt: Any) -> dict[str, Any]:
    result = cli(mnt, "status", str(mnt.path), "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)[0]


def test_mount_read_write_delete_over_https(sandbox: Any, mount: Any, tmp_path: Path) -> None:
    sb = sandbox("--tls")
    assert sb.url.startswith("https://127.0.0.1:") and sb.ca is not None and sb.ca.is_file()
    # REQUESTS_CA_BUNDLE names a bundle without the sandbox's CA: -o ca must win over it.
    mnt = mount(sb, f"ca={sb.ca}", env={"REQUESTS_CA_BUNDLE": str(SYSTEM_BUNDLE), "CURL_CA_BUNDLE": None})
    assert f"https, trusting -o ca ({sb.ca})" in mnt.log, mnt.describe()
    facts = status_of(mnt)
    assert facts["tls"] is True and facts["trust"] == f"-o ca ({sb.ca})" and facts["proxy"] is None
    assert "connection: https, trusting -o ca" in cli(mnt, "status", str(mnt.path)).stdout

    name, content = pycap_file(sb, MRI[0], MRI[2], MRI[1]) or ("", b"")
    assert os.listdir(mnt.path.joinpath(*MRI)) == [name]
    assert mnt.path.joinpath(*MRI, name).read_bytes() == content

    src = tmp_path / "report.pdf"
    src.write_bytes(os.urandom(3 << 20))  # several TLS records and pool reads, both ways
    result = subprocess.run(["cp", str(src), str(mnt.path.joinpath(*EMPTY))], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert pycap_file(sb, EMPTY[0], EMPTY[2], EMPTY[1]) == ("report.pdf", src.read_bytes())
    assert mnt.path.joinpath(*EMPTY, "report.pdf").read_bytes() == src.read_bytes()

    os.unlink(mnt.path.joinpath(*EMPTY, "report.pdf"))
    assert pycap_file(sb, EMPTY[0], EMPTY[2], EMPTY[1]) is None
    assert sb.calls(content="file", action="delete", status=200)
    mnt.unmount()



def test_failed_upload_is_retried_over_https_with_ca(sandbox: Any, mount: Any, tmp_path: Path) -> None:
    sb = sandbox("--tls", "--latency", "20", "--fault", "content=file,action=import,nth=1,do=500")
    mnt = mount(sb, f"ca={sb.ca}", env=NO_CA_VARS)
    src = tmp_path / "ecg.bin"
    src.write_bytes(os.urandom(300_000))
    result = subprocess.run(["cp", str(src), str(mnt.path.joinpath(*EMPTY))], capture_output=True, text=True)
    assert result.returncode != 0 and "Input/output error" in result.stderr
    assert pycap_file(sb, EMPTY[0], EMPTY[2], EMPTY[1]) is None

    untrusted = cli(mnt, "retry", env=NO_CA_VARS)  # the CA is not in the system store
    assert untrusted.returncode != 0, untrusted.stdout
    assert "certificate not trusted: pass --ca PATH" in untrusted.stdout + untrusted.stderr
    assert (untrusted.stdout + untrusted.stderr).count("TLS failure") == 1
    entries = json.loads(cli(mnt, "unsent", "--json").stdout)
    assert len(entries) == 1, "a refused retry keeps the entry"

    theirs = os.urandom(100_000)  # meanwhile a colleague uploads a file of the same name
    redcap.Project(sb.url, sb.token, verify_ssl=str(sb.ca)).import_file(
        record=EMPTY[0], field=EMPTY[2], file_name="ecg.bin", file_object=io.BytesIO(theirs), event=EMPTY[1])
    sent = cli(mnt, "retry", "--ca", str(sb.ca), env=NO_CA_VARS)
    assert sent.returncode == 0, sent.stdout + sent.stderr
    assert pycap_file(sb, EMPTY[0], EMPTY[2], EMPTY[1]) == ("ecg.bin", src.read_bytes())
    assert json.loads(cli(mnt, "unsent", "--json").stdout) == []

    (kept,) = json.loads(cli(mnt, "trash", "--json").stdout)  # the replaced version, kept by retry
    missing = cli(mnt, "restore", kept["id"], "--ca", str(tmp_path / "nope.pem"), env={"REDCAP_API_TOKEN": None})
    assert missing.returncode == 2 and "does not exist" in missing.stderr, "refused before the token is asked for"
    restored = cli(mnt, "restore", kept["id"], "--ca", str(sb.ca), env=NO_CA_VARS)
    assert restored.returncode == 0, restored.stdout + restored.stderr
    assert pycap_file(sb, EMPTY[0], EMPTY[2], EMPTY[1]) == ("ecg.bin", theirs)
    mnt.unmount()


def test_a_proxy_from_https_proxy_carries_the_mount(sandbox: Any, mount: Any) -> None:
    sb = sandbox("--tls")
    port = sb.url.split(":")[2].split("/")[0]
    with connect_proxy() as (proxy, seen):
        env: dict[str, str | None] = {"HTTPS_PROXY": proxy, "https_proxy": None, "NO_PROXY": "",
                                      "no_proxy": None, "ALL_PROXY": None, "all_proxy": None, **NO_CA_VARS}
        mnt = mount(sb, f"ca={sb.ca}", env=env)
        name, content = pycap_file(sb, MRI[0], MRI[2], MRI[1]) or ("", b"")
        assert mnt.path.joinpath(*MRI, name).read_bytes() == content
        assert any(line.startswith(f"CONNECT 127.0.0.1:{port} HTTP/") for line in seen.lines), seen.lines
        assert f"through proxy {proxy}" in mnt.log
        assert status_of(mnt)["proxy"] == proxy
        mnt.unmount()


NAMESPACE_SCRIPT = r"""
set -eu
mount --bind "$BUNDLE" /etc/ssl/certs/ca-certificates.crt
trap '"$PY" -m redcapfs unmount "$MP" >/dev/null 2>&1 || fusermount3 -uz "$MP" || true' EXIT
"$PY" -m redcapfs mount "$URL" "$MP" -o rate=200 --log-file "$LOG"
cat "$MP/$FILE" > "$OUT"
"$PY" -m redcapfs unmount "$MP"
trap - EXIT
"""


@pytest.mark.skipif(shutil.which("unshare") is None or os.geteuid() != 0,
                    reason="needs root and unshare(1) for a private mount namespace")
@pytest.mark.skipif(not SYSTEM_BUNDLE.is_file(), reason=f"no {SYSTEM_BUNDLE} on this system")
def test_a_ca_in_the_system_store_needs_no_option(sandbox: Any, tmp_path: Path) -> None:
    """update-ca-certificates appends the CA to the bundle; the mount finds it there without -o ca.

    The bundle is replaced only inside a private mount namespace (the machine's
    own trust store is never touched), and the mount lives and ends there.
    """
    sb = sandbox("--tls")
    bundle = tmp_path / "ca-certificates.crt"
    bundle.write_bytes(SYSTEM_BUNDLE.read_bytes() + b"\n" + sb.ca.read_bytes())
    name, content = pycap_file(sb, MRI[0], MRI[2], MRI[1]) or ("", b"")
    mp, out, log = tmp_path / "mnt", tmp_path / "read.bin", tmp_path / "mount.log"
    mp.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")}
    env.update(REDCAP_API_TOKEN=sb.token, REDCAPFS_STATE_DIR=str(tmp_path / "state"), BUNDLE=str(bundle),
               PY=sys.executable, URL=sb.url, MP=str(mp), LOG=str(log), OUT=str(out), FILE="/".join((*MRI, name)))
    result = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", NAMESPACE_SCRIPT],
                            capture_output=True, text=True, env=env, cwd=str(REPO), timeout=120)
    log_text = log.read_text() if log.exists() else ""
    assert result.returncode == 0, result.stderr + log_text
    assert out.read_bytes() == content
    assert f"https, trusting system trust store ({SYSTEM_BUNDLE})" in log_text
    assert SYSTEM_BUNDLE.read_bytes() != bundle.read_bytes(), "the real trust store was changed"
