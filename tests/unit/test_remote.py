"""The shared way to reach REDCap: proxies as requests picks them, and each refusal's wording."""

from __future__ import annotations

from pathlib import Path

import pytest

from redcapfs import errors as E
from redcapfs.client.http import redirect_message
from redcapfs.client.trust import Trust, innermost_reason
from redcapfs.remote import CLI_HINT, RemoteRefused, check_remote, first_call_message, proxy_for, tls_message

URL = "https://redcap.example.edu/api/"
SYSTEM = Trust("/etc/ssl/certs/ca-certificates.crt", "system trust store")


def _clear_proxies(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy",
                 "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)


def test_the_proxy_requests_would_use_is_named_without_its_password(monkeypatch: pytest.MonkeyPatch) -> None:
    _clear_proxies(monkeypatch)
    assert proxy_for(URL) is None
    monkeypatch.setenv("HTTPS_PROXY", "http://ana:s3cret@proxy.example.edu:3128")
    assert proxy_for(URL) == "http://***@proxy.example.edu:3128"
    monkeypatch.setenv("NO_PROXY", ".example.edu")
    assert proxy_for(URL) is None  # NO_PROXY exempts the server, as requests does


def test_tls_messages_name_one_cause_and_the_right_hint() -> None:
    nested = ("SSLError: HTTPSConnectionPool(host='x', port=443): Max retries exceeded with url: /api/ (Caused by "
              "SSLError(SSLCertVerificationError(1, '[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: "
              "unable to get local issuer certificate (_ssl.c:992)')))")
    text = tls_message(URL, nested, SYSTEM, CLI_HINT)
    assert text.startswith(f"TLS failure talking to {URL}: certificate not trusted: pass --ca PATH")
    assert "system trust store (/etc/ssl/certs/ca-certificates.crt)" in text and "Caused by" not in text
    expired = nested.replace("unable to get local issuer certificate", "certificate has expired")
    assert "-o ca" not in tls_message(URL, expired, SYSTEM) and "expired" in tls_message(URL, expired, SYSTEM)
    plain = nested.replace("CERTIFICATE_VERIFY_FAILED] certificate verify failed: unable to get local issuer "
                           "certificate", "WRONG_VERSION_NUMBER] wrong version number")
    assert "does not speak TLS" in tls_message(URL, plain, SYSTEM)


def test_a_redirect_names_the_url_to_use_only_when_it_is_an_api_url() -> None:
    to_https = redirect_message("http://redcap.example.edu/api/", 301, URL)
    assert to_https.endswith(f"Use the URL it names: {URL}") and "login page" in to_https
    to_login = redirect_message(URL, 302, "/index.php?action=login")
    assert "https://redcap.example.edu/index.php?action=login" in to_login and "Use the URL" not in to_login
    exc = E.ProtocolError(to_https, status=301)
    assert first_call_message("http://redcap.example.edu/api/", exc, SYSTEM) == to_https


def test_checks_before_any_connection(tmp_path: Path) -> None:
    with pytest.raises(RemoteRefused, match=r"refusing plain http to redcap\.example\.edu"):
        check_remote("http://redcap.example.edu/api/")
    assert check_remote("http://redcap.example.edu/api/", insecure_http=True).verify
    assert check_remote("http://127.0.0.1:8080/api/").verify  # loopback: the sandbox, an SSH tunnel
    with pytest.raises(RemoteRefused, match="does not exist"):
        check_remote(URL, ca=str(tmp_path / "missing.pem"))


def test_innermost_reason_keeps_its_brackets_balanced() -> None:
    text = ("ConnectionError: HTTPConnectionPool(host='r.invalid', port=80): Max retries exceeded (Caused by "
            "NameResolutionError(\"HTTPConnection(host='r.invalid', port=80): Failed to resolve 'r.invalid' "
            "([Errno -2] Name or service not known)\"))")
    assert innermost_reason(text) == "Failed to resolve 'r.invalid' ([Errno -2] Name or service not known)"
