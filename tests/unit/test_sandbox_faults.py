"""Injected faults, latency, the request log, persistence and streaming of large files.

Faults are observed at the socket where it matters (reset vs. clean close,
bytes received vs. Content-Length), because that is what a client must cope with.
"""

from __future__ import annotations

import hashlib
import io
import socket
import sys
import time
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import pytest
import redcap
import requests
from requests_toolbelt import MultipartEncoder

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from sandbox_projects import longitudinal_project, seed

from redcapfs.sandbox.faults import FaultSpecError, parse_fault

FULL = "A" * 32
EV = {"event": "baseline_arm_1"}
SCAN = {"record": "1", "field": "ae_doc", "event": "baseline_arm_1", "repeat_instance": "2"}
AE2 = b"second adverse event\n"


@pytest.fixture
def start(sandbox, tmp_path):
    def go(*args: str, name: str = "sb", tokens: bool = True):
        data = tmp_path / f"{name}-data"
        if not (data / "sandbox.sqlite3").exists():
            seed(data, longitudinal_project(tmp_path / f"{name}-src"))
        return sandbox(*(["--token", FULL] if tokens else []), *args, name=name)

    return go


def post(sb, files=None, timeout: float = 30, **params) -> requests.Response:
    return requests.post(sb.url, data={"token": FULL, **params}, files=files, timeout=timeout)


def export(sb, **params) -> requests.Response:
    return post(sb, content="file", action="export", **{**SCAN, **params})


def raw_post(url: str, params: dict) -> tuple[dict[str, str], bytes, str]:
    """POST over a bare socket; returns (headers, body bytes received, 'eof' | 'reset')."""
    parts = urlsplit(url)
    body = urlencode(params).encode()
    sock = socket.create_connection((parts.hostname, parts.port), timeout=20)
    sock.sendall(
        f"POST {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\nContent-Type: application/x-www-form-urlencoded\r\n"
        f"Content-Length: {len(body)}\r\n\r\n".encode() + body
    )
    data, outcome = b"", "eof"
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    except ConnectionResetError:
        outcome = "reset"
    finally:
        sock.close()
    head, _, rest = data.partition(b"\r\n\r\n")
    headers = {}
    for line in head.decode("latin-1").split("\r\n")[1:]:
        key, _, value = line.partition(":")
        headers[key.strip().lower()] = value.strip()
    return headers, rest, outcome


# ------------------------------------------------------------------ parsing


def test_fault_spec_parsing():
    fault = parse_fault("content=file,action=export,nth=2,do=drop,after=10")
    assert (fault.do, fault.select, fault.nth, fault.after) == ("drop", {"content": "file", "action": "export"}, 2, 10)
    for bad in ("content=file", "do=explode", "do=500,colour=red", "do=500,nth=0", "do=500,nth=x"):
        with pytest.raises(FaultSpecError):
            parse_fault(bad)


def test_bad_fault_spec_exits(tmp_path):
    import subprocess

    proc = subprocess.run([sys.executable, "-m", "redcapfs.sandbox", "--fault", "do=nope"],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2 and "do=" in proc.stderr


# -------------------------------------------------------------------- kinds


def test_500_and_503_only_on_selected_calls(start):
    sb = start("--fault", "content=file,action=export,do=500", "--fault", "content=metadata,do=503")
    resp = export(sb, returnFormat="json")
    assert resp.status_code == 500 and resp.json() == {"error": "Internal server error"}
    assert post(sb, content="metadata", format="json").status_code == 503
    assert post(sb, content="version").status_code == 200
    assert sb.calls(at_least=1, content="file")[-1]["fault"] == "500"
    assert "fault" not in sb.calls(at_least=1, content="version")[-1]


def test_faulted_import_and_delete_change_nothing(start):
    sb = start("--fault", "content=file,action=import,do=500", "--fault", "content=file,action=delete,do=503")
    resp = post(sb, files={"file": ("x.txt", io.BytesIO(b"x"))}, content="file", action="import", **SCAN)
    assert resp.status_code == 500
    assert post(sb, content="file", action="delete", **SCAN).status_code == 503
    assert export(sb).content == AE2
    assert list((sb.data_dir / "tmp").iterdir()) == []


def test_nth_selects_one_call(start):
    sb = start("--fault", "content=file,action=export,nth=2,do=500")
    assert [export(sb).status_code for _ in range(4)] == [200, 500, 200, 200]


def test_rate_is_seeded(start):
    spec = "content=version,rate=0.5,seed=7,do=503"
    pattern = []
    for name in ("r1", "r2"):
        sb = start("--fault", spec, name=name)
        pattern.append([post(sb, content="version").status_code for _ in range(20)])
    assert pattern[0] == pattern[1]
    assert 200 in pattern[0] and 503 in pattern[0]


def test_hang_then_close(start):
    sb = start("--fault", "content=version,do=hang,seconds=1")
    t0 = time.monotonic()
    with pytest.raises(requests.ConnectionError):
        post(sb, content="version", timeout=10)
    assert 0.9 <= time.monotonic() - t0 < 8
    with pytest.raises(requests.ReadTimeout):
        post(sb, content="version", timeout=0.3)


def test_drop_download_resets_midway(start):
    sb = start("--fault", "content=file,action=export,do=drop,after=5")
    _headers, body, outcome = raw_post(sb.url, {"token": FULL, "content": "file", "action": "export", **SCAN})
    assert outcome == "reset"
    assert len(body) <= 5
    with pytest.raises(requests.exceptions.RequestException):
        export(sb)
    entry = sb.calls(at_least=1, content="file")[-1]
    assert (entry["fault"], entry["bytes"], entry["status"]) == ("drop", 5, 200)


def test_drop_upload_aborts_and_changes_nothing(start):
    sb = start("--fault", "content=file,action=import,do=drop")
    data = b"z" * (4 * 1024 * 1024)
    with pytest.raises(requests.exceptions.ConnectionError):
        post(sb, files={"file": ("big.bin", io.BytesIO(data))}, content="file", action="import", **SCAN)
    assert export(sb).content == AE2
    entry = sb.calls(at_least=1, content="file", action="import")[-1]
    assert entry["fault"] == "drop" and 0 < entry["bytes"] < len(data) and entry["status"] is None
    time.sleep(0.2)
    assert list((sb.data_dir / "tmp").iterdir()) == []


def test_truncate_short_body_honest_length(start):
    sb = start("--fault", "content=file,action=export,do=truncate")
    headers, body, outcome = raw_post(sb.url, {"token": FULL, "content": "file", "action": "export", **SCAN})
    assert outcome == "eof"
    assert headers["content-length"] == str(len(AE2))
    assert body == AE2[: len(AE2) // 2]
    with pytest.raises(requests.exceptions.RequestException):
        export(sb)


def test_truncate_on_record_export(start):
    sb = start("--fault", "content=record,do=truncate,after=10")
    headers, body, outcome = raw_post(sb.url, {"token": FULL, "content": "record", "format": "json"})
    assert outcome == "eof" and len(body) == 10 and int(headers["content-length"]) > 10


def test_faults_select_by_field_and_record(start):
    sb = start("--fault", "field=consent_file,record=2,do=500")
    assert post(sb, content="file", action="export", record="2", field="consent_file", **EV).status_code == 500
    assert post(sb, content="file", action="export", record="1", field="consent_file", **EV).status_code == 200


# ---------------------------------------------------------- latency and log


def test_latency(start):
    sb = start("--latency", "300")
    t0 = time.monotonic()
    post(sb, content="version")
    assert time.monotonic() - t0 >= 0.3


def test_request_log_contents(start):
    sb = start()
    export(sb)
    export(sb, fileinfo="1")
    post(sb, files={"file": ("n.txt", io.BytesIO(b"12345"))}, content="file", action="import", **SCAN)
    post(sb, content="metadata", format="json")
    calls = sb.calls(at_least=4)
    assert len(calls) == 4
    first = calls[0]
    assert set(first) >= {"time", "content", "action", "record", "field", "event", "repeat_instance",
                          "status", "bytes"}
    assert (first["content"], first["action"], first["record"], first["field"], first["event"],
            first["repeat_instance"], first["status"], first["bytes"]) == (
        "file", "export", "1", "ae_doc", "baseline_arm_1", "2", 200, len(AE2))
    assert "fileinfo" not in first and calls[1]["fileinfo"] is True
    assert (calls[2]["action"], calls[2]["bytes"], calls[2]["status"]) == ("import", 5, 200)
    assert calls[3]["content"] == "metadata" and calls[3]["bytes"] > 100
    assert FULL not in sb.request_log.read_text()
    assert FULL not in "\n".join(sb.output[1:]).replace(f"token={FULL}", "")


# -------------------------------------------------------------- persistence


def test_state_survives_restart(start, sandbox):
    sb = start(name="p", tokens=False)
    token = sb.token
    assert requests.post(sb.url, data={"token": token, "content": "file", "action": "import", **SCAN},
                         files={"file": ("kept.txt", io.BytesIO(b"kept"))}, timeout=10).status_code == 200
    redcap.Project(sb.url, token).import_records([{"record_id": "55", "redcap_event_name": "baseline_arm_2"}])
    sb.stop()
    sb2 = sandbox(name="p")  # same data dir; no PROJECT needed
    assert sb2.token == token  # the generated token is kept with the state
    proj = redcap.Project(sb2.url, token)
    content, info = proj.export_file("1", "ae_doc", event="baseline_arm_1", repeat_instance=2)
    assert (content, info["name"]) == (b"kept", "kept.txt")
    assert proj.export_records(records=["55"])[0]["redcap_event_name"] == "baseline_arm_2"


# -------------------------------------------------------------- large files


def _vm_hwm_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


@pytest.mark.timeout(300)
def test_large_upload_and_download_stream(start, tmp_path):
    size = 200 * 1024 * 1024
    sb = start("--max-upload-mb", "300")
    src = tmp_path / "big.bin"
    with open(src, "wb") as fh:  # sparse, with a marker at each end
        fh.write(b"head")
        fh.seek(size - 4)
        fh.write(b"tail")
    with open(src, "rb") as fh:
        enc = MultipartEncoder(fields={"token": FULL, "content": "file", "action": "import", **SCAN,
                                       "file": ("big.bin", fh, "application/octet-stream")})
        resp = requests.post(sb.url, data=enc, headers={"Content-Type": enc.content_type}, timeout=240)
    assert resp.status_code == 200, resp.text
    digest, got = hashlib.sha256(), 0
    with requests.post(sb.url, data={"token": FULL, "content": "file", "action": "export", **SCAN},
                       stream=True, timeout=240) as resp:
        assert resp.status_code == 200 and int(resp.headers["Content-Length"]) == size
        for chunk in resp.iter_content(1 << 20):
            digest.update(chunk)
            got += len(chunk)
    assert got == size
    want = hashlib.sha256()
    with open(src, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            want.update(chunk)
    assert digest.hexdigest() == want.hexdigest()
    hwm_mib = _vm_hwm_kib(sb.proc.pid) / 1024
    print(f"server VmHWM {hwm_mib:.1f} MiB")
    assert hwm_mib < 100, f"server peak RSS {hwm_mib:.0f} MiB for a 200 MiB file"
    assert sb.calls(content="file", action="import")[-1]["bytes"] == size


def test_truncate_or_drop_on_write_answers_nothing(start):
    sb = start("--fault", "content=file,action=import,do=truncate", "--fault", "content=file,action=delete,do=drop")
    with pytest.raises(requests.exceptions.ConnectionError):
        post(sb, files={"file": ("x.txt", io.BytesIO(b"x"))}, content="file", action="import", **SCAN)
    with pytest.raises(requests.exceptions.ConnectionError):
        post(sb, content="file", action="delete", **SCAN)
    assert export(sb).content == AE2


def test_concurrent_uploads_and_downloads(start):
    from concurrent.futures import ThreadPoolExecutor

    sb = start()

    def work(i: int) -> bytes:
        slot = {**SCAN, "repeat_instance": str(10 + i)}
        body = f"payload {i}".encode() * 1000
        resp = post(sb, files={"file": (f"f{i}.txt", io.BytesIO(body))}, content="file", action="import", **slot)
        assert resp.status_code == 200, resp.text
        got = post(sb, content="file", action="export", **slot).content
        assert got == body
        return got

    with ThreadPoolExecutor(8) as pool:
        assert len(list(pool.map(work, range(24)))) == 24
    rows = redcap.Project(sb.url, FULL).export_records(records=["1"], fields=["ae_doc"])
    assert sorted(r["redcap_repeat_instance"] for r in rows if r["redcap_repeat_instrument"])[-1] == 33


def test_chunked_request_body(start):
    sb = start()

    def gen():
        yield b"token=" + FULL.encode()
        yield b"&content=version"

    resp = requests.post(sb.url, data=gen(), headers={"Content-Type": "application/x-www-form-urlencoded"},
                         timeout=10)
    assert resp.text == "14.5.2"


def test_bundled_demo_starts(sandbox):
    pytest.importorskip("redcapfs.sandbox.loaders")
    sb = sandbox()
    proj = redcap.Project(sb.url, sb.token)
    assert proj.export_metadata()[0]["field_name"]
    assert isinstance(proj.export_records(), list)
