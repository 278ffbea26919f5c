"""Each TLS refusal against a server built for it: its own message, its cause named once, and no mount.

Unknown CA, a certificate for another host name, an expired certificate, a
server that redirects the API URL (http to https, or to a login page), and a
plain http URL to another machine (refused before any connection is tried).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tlshelp import redirector

from redcapfs.sandbox.tls import make_certificates

NO_CA_VARS: dict[str, str | None] = {"REQUESTS_CA_BUNDLE": None, "CURL_CA_BUNDLE": None}


def refusal(m: Any) -> str:
    """The one message the user sees, checked to name its cause once and to leak no requests internals."""
    text = m.stderr.strip()
    assert text.count("TLS failure") <= 1 and "Caused by" not in text and "SSLError" not in text, m.describe()
    assert "Traceback" not in text, m.describe()
    return text


def test_an_unknown_ca_says_pass_ca(sandbox: Any, mount: Any) -> None:
    sb = sandbox("--tls")
    text = refusal(mount(sb, expect_fail=True, env=NO_CA_VARS))
    assert "certificate not trusted: pass -o ca=PATH" in text, text
    assert text.count("TLS failure") == 1 and "system trust store" in text, text
    assert not sb.calls(), "no API call got through"


def test_a_certificate_for_another_host_name(sandbox: Any, mount: Any, tmp_path: Path) -> None:
    files = make_certificates(tmp_path / "other-host", names=("redcap.other.example",))
    sb = sandbox("--cert", str(files.cert), "--key", str(files.key))
    assert sb.url.startswith("https://")
    text = refusal(mount(sb, f"ca={files.ca}", expect_fail=True, env=NO_CA_VARS))
    assert "certificate is for another host name" in text and "not trusted" not in text, text
    assert "-o ca" not in text, "no CA bundle would help: the certificate itself is wrong"


def test_an_expired_certificate(sandbox: Any, mount: Any, tmp_path: Path) -> None:
    files = make_certificates(tmp_path / "expired", expired=True)
    sb = sandbox("--cert", str(files.cert), "--key", str(files.key))
    text = refusal(mount(sb, f"ca={files.ca}", expect_fail=True, env=NO_CA_VARS))
    assert "certificate has expired" in text and "not trusted" not in text, text


@pytest.mark.parametrize("status", [301, 302])
def test_http_redirected_to_https_names_the_url_to_use(status: int, sandbox: Any, mount: Any) -> None:
    sb = sandbox("--tls")
    with redirector(sb.url, status) as (url, seen):
        text = refusal(mount(sb, f"ca={sb.ca}", url=url, expect_fail=True))
    assert f"redirects (HTTP {status}) to {sb.url}" in text and f"Use the URL it names: {sb.url}" in text, text
    assert "login page" in text and "not a REDCap API" not in text, text
    assert [line.split(" ")[0] for line in seen.lines] == ["POST"], "asked once, and the redirect not followed"
    assert not sb.calls(), "the token never reached the https server through a followed redirect"


def test_a_path_redirect_to_a_login_page(sandbox: Any, mount: Any) -> None:
    sb = sandbox()
    with redirector("/redcap/index.php?action=login", 302) as (url, _seen):
        text = refusal(mount(sb, url=url, expect_fail=True))
    login = url.replace("/api/", "/redcap/index.php?action=login")
    assert f"redirects (HTTP 302) to {login}" in text and "login page" in text, text
    assert "not an API URL" in text and "ends in /api/" in text and "Use the URL it names" not in text, text


def test_plain_http_to_another_machine_is_refused_before_any_connection(sandbox: Any, mount: Any) -> None:
    # .invalid never resolves: a connection attempt would fail differently ("cannot connect"), and with no
    # token in the environment, reading the token would fail first if the URL were not checked before it.
    m = mount(None, url="http://redcap.invalid/api/", expect_fail=True, env={"REDCAP_API_TOKEN": None})
    text = refusal(m)
    assert "refusing plain http to redcap.invalid" in text and "https://redcap.invalid/api/" in text, text
    assert "-o insecure_http" in text and "token" in text and "cannot connect" not in text, text


def test_insecure_http_lets_plain_http_through_to_the_connection(sandbox: Any, mount: Any) -> None:
    sb = sandbox()
    m = mount(sb, "insecure_http", url="http://redcap.invalid/api/", expect_fail=True)
    text = refusal(m)
    assert "refusing plain http" not in text and "cannot connect to http://redcap.invalid/api/" in text, text
    assert "Failed to resolve 'redcap.invalid'" in text, text
    assert "note: plain http to redcap.invalid: the API token crosses the network unencrypted" in text, text


def test_a_missing_ca_file_is_refused_before_the_token_is_read(mount: Any, tmp_path: Path) -> None:
    m = mount(None, f"ca={tmp_path / 'nope.pem'}", url="https://127.0.0.1:9/api/", expect_fail=True,
              env={"REDCAP_API_TOKEN": None})
    text = refusal(m)
    assert f"the CA bundle {tmp_path / 'nope.pem'} does not exist" in text, text


def test_a_ca_file_that_is_not_pem_is_refused(mount: Any, tmp_path: Path) -> None:
    junk = tmp_path / "ca.pem"
    junk.write_text("not a certificate\n")
    m = mount(None, f"ca={junk}", url="https://127.0.0.1:9/api/", expect_fail=True, env={"REDCAP_API_TOKEN": None})
    text = refusal(m)
    assert f"the CA bundle {junk}" in text and "PEM" in text, text
