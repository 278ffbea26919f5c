"""The sandbox over https: the CA it prints is what a client trusts, and faults, latency and the log still work.

Each test runs the real sandbox process (``--tls``) and talks to it with
requests or PyCap, trusting only the printed ``ca=`` bundle.
"""

from __future__ import annotations

import io
import os
import socket
import ssl
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import redcap
import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from sandbox_projects import longitudinal_project, seed

FULL = "A" * 32
SCAN = {"record": "1", "field": "ae_doc", "event": "baseline_arm_1", "repeat_instance": "2"}


def export_scan(project: redcap.Project) -> tuple[bytes, dict]:
    return project.export_file(record="1", field="ae_doc", event="baseline_arm_1", repeat_instance=2)


@pytest.fixture
def tls_sandbox(sandbox, tmp_path):
    def go(*args: str):
        seed(tmp_path / "sb-data", longitudinal_project(tmp_path / "sb-src"))
        return sandbox("--token", FULL, "--tls", *args)

    return go


def test_prints_ca_before_ready_and_serves_https(tls_sandbox) -> None:
    sb = tls_sandbox()
    assert sb.url.startswith("https://127.0.0.1:")
    lines = sb.output
    assert lines.index(f"ca={sb.ca}") < lines.index("ready")
    assert sb.ca == sb.data_dir / "tls" / "ca.pem" and (sb.data_dir / "tls" / "server.key").stat().st_mode & 0o077 == 0
    project = redcap.Project(sb.url, FULL, verify_ssl=str(sb.ca))
    content, _headers = export_scan(project)
    assert content == b"second adverse event\n"
    assert sb.calls(at_least=1, content="file", action="export", status=200)
    with pytest.raises(requests.exceptions.SSLError):
        requests.post(sb.url, data={"token": FULL, "content": "version"}, timeout=10)  # certifi: not trusted


def test_a_silent_client_does_not_stall_the_others(tls_sandbox) -> None:
    sb = tls_sandbox()
    parts = urlsplit(sb.url)
    silent = [socket.create_connection((parts.hostname, parts.port), timeout=10) for _ in range(3)]
    try:  # connected, never says hello: the handshake waits in its own thread
        answer = requests.post(sb.url, data={"token": FULL, "content": "version"}, verify=str(sb.ca), timeout=5)
        assert answer.text == "14.5.2"
    finally:
        for s in silent:
            s.close()


def test_plain_http_to_the_https_port_is_dropped_and_the_server_lives_on(tls_sandbox) -> None:
    sb = tls_sandbox()
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.post(sb.url.replace("https://", "http://"), data={"content": "version"}, timeout=10)
    assert requests.post(sb.url, data={"token": FULL, "content": "version"}, verify=str(sb.ca),
                         timeout=10).text == "14.5.2"


def test_faults_and_latency_over_tls(tls_sandbox) -> None:
    sb = tls_sandbox("--latency", "200", "--fault", "content=file,action=export,nth=1,do=500",
                     "--fault", "content=file,action=export,nth=2,do=drop")
    session = requests.Session()
    data = {"token": FULL, "content": "file", "action": "export", **SCAN}
    ca = str(sb.ca)  # per request: requests lets REQUESTS_CA_BUNDLE override a session's verify
    assert session.post(sb.url, data=data, timeout=20, verify=ca).status_code == 500
    with pytest.raises((requests.exceptions.ConnectionError, requests.exceptions.ChunkedEncodingError)):
        session.post(sb.url, data=data, timeout=20, verify=ca)  # do=drop: the connection ends mid-answer
    assert session.post(sb.url, data=data, timeout=20, verify=ca).content == b"second adverse event\n"
    statuses = [row["status"] for row in sb.calls(at_least=3, content="file", action="export")]
    assert statuses[0] == 500 and statuses[-1] == 200


def test_a_given_certificate_is_served(sandbox, tmp_path) -> None:
    from redcapfs.sandbox.tls import make_certificates

    files = make_certificates(tmp_path / "given", names=("localhost",))
    sb = sandbox("--cert", str(files.cert), "--key", str(files.key))
    assert sb.url.startswith("https://") and sb.ca is None
    url = sb.url.replace("127.0.0.1", "localhost")
    assert requests.post(url, data={"token": sb.token, "content": "version"}, verify=str(files.ca),
                         timeout=10).text == "14.5.2"
    ctx = ssl.create_default_context(cafile=str(files.ca))
    with pytest.raises(ssl.SSLCertVerificationError), \
            socket.create_connection(("127.0.0.1", urlsplit(sb.url).port), timeout=10) as raw:
        ctx.wrap_socket(raw, server_hostname="127.0.0.1")  # the certificate names localhost, not the address


def test_a_large_file_round_trips_over_tls(tls_sandbox) -> None:
    sb = tls_sandbox()
    data = os.urandom(5 << 20) + b"tail"  # several 1 MiB blocks and a short last one
    project = redcap.Project(sb.url, FULL, verify_ssl=str(sb.ca))
    project.import_file(record="1", field="ae_doc", file_name="big.bin", file_object=io.BytesIO(data),
                        event="baseline_arm_1", repeat_instance=2)
    content, headers = export_scan(project)
    assert content == data and headers["name"] == "big.bin"
