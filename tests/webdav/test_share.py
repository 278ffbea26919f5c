"""``redcapfs serve webdav`` over HTTP: credentials, auth, the desktop clients' habits, failed uploads.

Every effect is checked independently: REDCap's side through PyCap and the
sandbox's request log, the local side through ``redcapfs unsent --json``.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import requests
from davhelp import REPO, pycap, server_bytes

SLOT = "1001/baseline_arm_1/radiology_report"  # empty in the demo project
FULL = "1001/screening_arm_1/consent_form/consent_1001.pdf"


def imports(sb) -> list[dict]:
    return sb.calls(content="file", action="import")


def test_prints_credentials_and_keeps_the_password_private_and_stable(sandbox, share, tmp_path: Path) -> None:
    sb = sandbox()
    first = share(sb)
    assert [line.split("=")[0] for line in first.output[:4]] == ["url", "user", "password", "ready"]
    assert first.url.startswith("http://127.0.0.1:")
    assert sb.token not in "\n".join(first.output) and first.password not in sb.token
    files = list((tmp_path / "state" / "webdav").glob("*.password"))
    assert len(files) == 1 and stat.S_IMODE(files[0].stat().st_mode) == 0o600
    assert first.password.isalnum() and len(first.password) >= 20, "no '-' a client could read as an option"
    assert first.stop() == 0
    again = share(sb)
    assert again.password == first.password, "a mapped drive must keep working across restarts"
    assert again.stop() == 0
    renewed = share(sb, args=("--new-password",))
    assert renewed.password != first.password
    old = requests.request("PROPFIND", renewed.url, headers={"Depth": "0"}, timeout=30,
                           auth=requests.auth.HTTPDigestAuth(renewed.user, first.password))
    assert old.status_code == 401


def test_digest_over_http_basic_only_over_tls(sandbox, share, tls_files) -> None:
    sb = sandbox()
    plain = share(sb)
    assert plain.request("PROPFIND", "/", headers={"Depth": "0"}).status_code == 207
    basic = requests.request("PROPFIND", plain.url, headers={"Depth": "0"}, timeout=30,
                             auth=(plain.user, plain.password))
    assert basic.status_code == 401 and "Digest" in basic.headers.get("WWW-Authenticate", "")
    cert, key, ca = tls_files
    secure = share(sb, args=("--cert", cert, "--key", key), verify=ca)
    assert secure.url.startswith("https://")
    ok = requests.request("PROPFIND", secure.url, headers={"Depth": "0"}, timeout=30, verify=ca,
                          auth=(secure.user, secure.password))
    assert ok.status_code == 207


def test_network_address_needs_tls(sandbox, share) -> None:
    sb = sandbox()
    result = subprocess.run([sys.executable, "-m", "redcapfs", "serve", "webdav", sb.url, "--addr", "0.0.0.0:0"],
                            capture_output=True, text=True, env=dict(os.environ, REDCAP_API_TOKEN=sb.token),
                            cwd=str(REPO), timeout=60, stdin=subprocess.DEVNULL)
    assert result.returncode == 1
    assert "--cert" in result.stderr and "in the clear" in result.stderr
    assert sb.calls() == [], "refused before the token was used"


def test_put_get_and_slot_rules(sandbox, share) -> None:
    sb = sandbox()
    sh = share(sb)
    body = os.urandom(300_000)
    assert sh.request("PUT", f"{SLOT}/scan.bin", data=body).status_code == 201
    assert server_bytes(sb, "1001", "radiology_report", "baseline_arm_1") == body
    assert sh.request("GET", f"{SLOT}/scan.bin").content == body
    ranged = sh.request("GET", f"{SLOT}/scan.bin", headers={"Range": "bytes=10-19"})
    assert ranged.status_code == 206 and ranged.content == body[10:20]
    second = sh.request("PUT", f"{SLOT}/other.bin", data=b"x")
    assert second.status_code == 409 and "already holds" in second.text
    assert sh.request("MKCOL", f"{SLOT}/sub").status_code == 403
    assert sh.request("DELETE", SLOT).status_code == 403, "a folder delete never deletes files one by one"
    assert server_bytes(sb, "1001", "radiology_report", "baseline_arm_1") == body
    assert sh.request("DELETE", f"{SLOT}/scan.bin").status_code == 204
    assert server_bytes(sb, "1001", "radiology_report", "baseline_arm_1") is None


def test_empty_put_never_replaces_and_side_files_stay_local(sandbox, share) -> None:
    sb = sandbox()
    sh = share(sb)
    before = server_bytes(sb, "1001", "consent_form", "screening_arm_1")
    assert sh.request("PUT", FULL, data=b"").status_code in (200, 204)
    assert server_bytes(sb, "1001", "consent_form", "screening_arm_1") == before
    # Explorer's new file: an empty PUT, then the bytes.
    assert sh.request("PUT", f"{SLOT}/report.txt", data=b"").status_code == 201
    listing = sh.request("PROPFIND", SLOT + "/", headers={"Depth": "1"}).text
    assert "report.txt" in listing
    assert imports(sb) == [] and server_bytes(sb, "1001", "radiology_report", "baseline_arm_1") is None
    assert sh.request("PUT", f"{SLOT}/report.txt", data=b"final text").status_code in (201, 204)
    assert server_bytes(sb, "1001", "radiology_report", "baseline_arm_1") == b"final text"
    calls = len(imports(sb))
    for side in ("._report.txt", ".DS_Store", "Thumbs.db", "desktop.ini", "~$report.docx", "~WRL0001.tmp"):
        assert sh.request("PUT", f"{SLOT}/{side}", data=b"desktop junk").status_code in (201, 204), side
        assert sh.request("GET", f"{SLOT}/{side}").content == b"desktop junk"
    assert len(imports(sb)) == calls, "side files must never be uploaded"
    assert server_bytes(sb, "1001", "radiology_report", "baseline_arm_1") == b"final text"


def test_lock_unlock_and_proppatch_times(sandbox, share) -> None:
    sb = sandbox()
    sh = share(sb)
    path = f"{SLOT}/locked.txt"
    assert sh.request("PUT", path, data=b"v1").status_code == 201
    lock_body = ('<?xml version="1.0"?><D:lockinfo xmlns:D="DAV:"><D:lockscope><D:exclusive/></D:lockscope>'
                 '<D:locktype><D:write/></D:locktype><D:owner>test</D:owner></D:lockinfo>')
    lock = sh.request("LOCK", path, data=lock_body, headers={"Timeout": "Second-60"})
    assert lock.status_code == 200
    token = lock.headers["Lock-Token"]
    assert sh.request("PUT", path, data=b"v2").status_code == 423, "a locked file refuses a writer without the token"
    assert sh.request("PUT", path, data=b"v2", headers={"If": f"({token})"}).status_code == 204
    assert sh.request("UNLOCK", path, headers={"Lock-Token": token}).status_code == 204
    assert server_bytes(sb, "1001", "radiology_report", "baseline_arm_1") == b"v2"
    patch = ('<?xml version="1.0"?><D:propertyupdate xmlns:D="DAV:" xmlns:Z="urn:schemas-microsoft-com:">'
             '<D:set><D:prop><Z:Win32LastModifiedTime>Wed, 01 Jan 2025 12:00:00 GMT</Z:Win32LastModifiedTime>'
             '<Z:Win32FileAttributes>00000020</Z:Win32FileAttributes></D:prop></D:set></D:propertyupdate>')
    result = sh.request("PROPPATCH", path, data=patch)
    assert result.status_code == 207 and "200 OK" in result.text
    found = sh.request("PROPFIND", path, headers={"Depth": "0"}).text
    assert "Wed, 01 Jan 2025 12:00:00 GMT" in found
    assert imports(sb)[-1]["bytes"] == 2, "a time change uploads nothing"


def test_failed_upload_fails_the_put_and_keeps_the_bytes(sandbox, share) -> None:
    sb = sandbox("--fault", "content=file,action=import,nth=1,do=500")
    sh = share(sb, "timeout=5")
    body = os.urandom(200_000)
    result = sh.request("PUT", f"{SLOT}/ecg.bin", data=body)
    assert result.status_code >= 500, result.status_code
    assert server_bytes(sb, "1001", "radiology_report", "baseline_arm_1") is None
    listed = sh.cli("unsent", "--json")
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    assert len(rows) == 1 and rows[0]["target"]["name"] == "ecg.bin" and rows[0]["state"] == "unsent"
    assert Path(rows[0]["data_path"]).read_bytes() == body
    assert sh.stop() == 0
    sent = sh.cli("retry")
    assert sent.returncode == 0, sent.stderr
    assert server_bytes(sb, "1001", "radiology_report", "baseline_arm_1") == body


def test_mkcol_makes_a_record(sandbox, share) -> None:
    sb = sandbox()
    sh = share(sb)
    assert sh.request("MKCOL", "4242").status_code == 201
    ids = {row["record_id"] for row in pycap(sb).export_records(fields=["record_id"])}
    assert "4242" in ids


def test_sigterm_finishes_the_upload_in_flight(sandbox, share, tmp_path: Path) -> None:
    import threading

    from davhelp import settled

    sb = sandbox("--latency", "1500")
    sh = share(sb)
    body = os.urandom(3_000_000)
    answer: list[requests.Response] = []
    put = threading.Thread(target=lambda: answer.append(sh.request("PUT", f"{SLOT}/big.bin", data=body)))
    put.start()
    assert settled(lambda: any((tmp_path / "state").glob("*/spool/*.data"))), "the PUT never reached the spool"
    sh.proc.send_signal(15)
    put.join(120)
    assert answer and answer[0].status_code == 201
    assert sh.proc.wait(120) == 0
    assert server_bytes(sb, "1001", "radiology_report", "baseline_arm_1") == body
    assert sh.cli("unsent", "--json").stdout.strip() in ("", "[]")


def test_demo_serves_the_demo_project(tmp_path: Path) -> None:
    env = dict(os.environ, REDCAPFS_STATE_DIR=str(tmp_path / "state"))
    proc = subprocess.Popen([sys.executable, "-m", "redcapfs", "demo", "--webdav", "127.0.0.1:0"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=str(REPO),
                            stdin=subprocess.DEVNULL)
    try:
        values = {}
        assert proc.stdout is not None
        for line in proc.stdout:
            key, sep, value = line.strip().partition("=")
            if sep:
                values[key] = value
            if line.strip() == "ready":
                break
        listing = requests.request("PROPFIND", values["url"], headers={"Depth": "1"}, timeout=60,
                                   auth=requests.auth.HTTPDigestAuth(values["user"], values["password"]))
        assert listing.status_code == 207 and "/1001/" in listing.text
    finally:
        proc.send_signal(2)
        assert proc.wait(60) == 0


def test_read_only_share_and_instances(sandbox, share) -> None:
    sb = sandbox()
    ro = share(sb, "ro")
    assert ro.request("PUT", f"{SLOT}/x.txt", data=b"x").status_code == 405, "ro: writing methods not offered"
    assert ro.request("DELETE", FULL).status_code == 405
    assert server_bytes(sb, "1001", "consent_form", "screening_arm_1") is not None
    assert ro.stop() == 0
    rw = share(sb)
    assert rw.request("MKCOL", "1002/week_12_arm_1/ae_photo/4").status_code == 201
    assert rw.request("PUT", "1002/week_12_arm_1/ae_photo/4/photo.png", data=b"png bytes").status_code == 201
    assert server_bytes(sb, "1002", "ae_photo", "week_12_arm_1", 4) == b"png bytes"
    assert rw.request("MKCOL", "1002/week_12_arm_1/ae_photo/5").status_code == 201
    assert rw.request("DELETE", "1002/week_12_arm_1/ae_photo/5").status_code == 204, "an empty local instance goes"


def test_serves_a_profile_with_its_token_source_and_options(sandbox, share, tmp_path: Path) -> None:
    """`redcapfs serve webdav PROFILE`: the URL, token file and options come from config.toml, as for a mount."""
    sb = sandbox()
    token = tmp_path / "token"
    token.write_text(sb.token + "\n")
    token.chmod(0o600)
    config = tmp_path / "config.toml"
    config.write_text(f'[study1]\nurl = "{sb.url}"\ntoken_file = "{token}"\noptions = "ro"\n')
    config.chmod(0o600)
    env = {k: v for k, v in os.environ.items() if k not in ("REDCAP_API_TOKEN", "REDCAP_API_URL")}
    env.update(REDCAPFS_STATE_DIR=str(tmp_path / "state"), REDCAPFS_CONFIG=str(config))
    sh = share(sb, source="study1", env=env)
    got = sh.request("GET", FULL)
    assert got.status_code == 200
    assert got.content == server_bytes(sb, "1001", "consent_form", "screening_arm_1")
    assert sh.request("DELETE", FULL).status_code in (403, 405), "the profile's ro applies"
    assert server_bytes(sb, "1001", "consent_form", "screening_arm_1") == got.content
    assert sb.token not in "\n".join(sh.output) and sb.token not in sh.log
