"""Trust decisions and TLS failure messages, against real TLS servers on 127.0.0.1 with throwaway CAs."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests

from redcapfs.client.trust import SYSTEM_BUNDLES, UnsafeURL, check_url, describe_tls_failure, resolve_trust
from redcapfs.sandbox.tls import make_certificates, server_context


class _Hello(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "5")
        self.end_headers()
        self.wfile.write(b"hello")

    def log_message(self, *args: object) -> None:
        pass


@contextmanager
def tls_server(cert: Path, key: Path) -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hello)
    server.socket = server_context(cert, key).wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def failure(url: str, verify: str | bool) -> str:
    with pytest.raises(requests.exceptions.SSLError) as info:
        requests.get(url, verify=verify, timeout=10)
    return describe_tls_failure(str(info.value))


def test_own_ca_is_trusted_and_others_are_told_apart(tmp_path: Path) -> None:
    good = make_certificates(tmp_path / "good")
    other = make_certificates(tmp_path / "other")
    with tls_server(good.cert, good.key) as url:
        assert requests.get(url, verify=str(good.ca), timeout=10).content == b"hello"
        assert failure(url, str(other.ca)).startswith("certificate not trusted: pass -o ca=")
        system = resolve_trust(environ={}).verify
        assert failure(url, system).startswith("certificate not trusted")
    wrong = make_certificates(tmp_path / "wrong", names=("redcap.invalid",))
    with tls_server(wrong.cert, wrong.key) as url:
        assert "certificate is for another host name" in failure(url, str(wrong.ca))
    old = make_certificates(tmp_path / "old", expired=True)
    with tls_server(old.cert, old.key) as url:
        assert "certificate has expired" in failure(url, str(old.ca))
    assert (tmp_path / "good" / "server.key").stat().st_mode & 0o077 == 0


def test_trust_order(tmp_path: Path) -> None:
    bundle = tmp_path / "ca.pem"
    bundle.write_text("x")
    assert resolve_trust(str(bundle), {"REQUESTS_CA_BUNDLE": "/env.pem"}).verify == str(bundle)
    assert resolve_trust(None, {"REQUESTS_CA_BUNDLE": "/env.pem", "CURL_CA_BUNDLE": "/c.pem"}).verify == "/env.pem"
    assert resolve_trust(None, {"CURL_CA_BUNDLE": "/c.pem"}).source == "CURL_CA_BUNDLE"
    system = resolve_trust(None, {})
    assert system.verify in SYSTEM_BUNDLES or system.verify is True
    with pytest.raises(FileNotFoundError, match="does not exist"):
        resolve_trust(str(tmp_path / "missing.pem"), {})


@pytest.mark.parametrize("url", ["http://127.0.0.1:8080/api/", "http://localhost/api/", "http://[::1]:9/api/",
                                 "https://redcap.example.edu/api/"])
def test_urls_that_may_carry_the_token(url: str) -> None:
    check_url(url)


@pytest.mark.parametrize(("url", "said"), [
    ("http://redcap.example.edu/api/", "Use https://redcap.example.edu/api/, or pass -o insecure_http"),
    ("ftp://redcap.example.edu/api/", "must start with https:// (got ftp://)"),
    ("redcap.example.edu/api/", "must start with https:// (got no scheme)"),
    ("https:///api/", "names no server"),
])
def test_urls_refused(url: str, said: str) -> None:
    with pytest.raises(UnsafeURL, match=said.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
        check_url(url)
    if url.startswith("http://"):
        check_url(url, insecure_http=True)
