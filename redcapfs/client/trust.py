"""Which certificate authorities to trust, whether a URL may carry the token, and what a TLS failure means.

One place decides this for every command that talks to REDCap (mount, unsent,
retry, restore, serve), so a private CA named once works everywhere.

Trust, first match wins:

1. ``-o ca=PATH`` (or a profile's ``ca``): exactly that bundle.
2. ``REQUESTS_CA_BUNDLE``, then ``CURL_CA_BUNDLE``: the variables requests honours.
3. The operating system's bundle (Debian/Ubuntu/Arch ``/etc/ssl/certs/ca-certificates.crt``, Fedora/RHEL
   ``/etc/pki/tls/certs/ca-bundle.crt``, macOS/Alpine ``/etc/ssl/cert.pem``, ...): a hospital CA installed with
   ``update-ca-certificates`` just works. requests on its own would trust only certifi's copy of the public
   CAs, which never holds an institution's private CA.
4. certifi's bundle, where the system has none.

The token travels in the body of every request, so a plain ``http://`` URL is
refused unless it points at this machine (the sandbox, an SSH tunnel) or the
user says ``-o insecure_http``. Certificate checks are never turned off.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

SYSTEM_BUNDLES = (
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/pki/tls/cacert.pem",
    "/etc/ssl/cert.pem",
)


class UnsafeURL(ValueError):
    """A URL that must not be given the token, with the reason."""


@dataclass(frozen=True)
class Trust:
    """What ``requests`` gets as ``verify``, and where it came from (shown in logs and ``status``)."""

    verify: str | bool
    source: str

    def describe(self) -> str:
        return self.source if self.verify is True else f"{self.source} ({self.verify})"


def resolve_trust(ca: str | None = None, environ: Mapping[str, str] | None = None) -> Trust:
    """The CA bundle to verify servers with (see the module docstring for the order)."""
    env = os.environ if environ is None else environ
    if ca:
        path = os.path.expanduser(ca)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"the CA bundle {ca} does not exist")
        return Trust(path, "-o ca")
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        value = env.get(name, "").strip()
        if value:
            return Trust(value, name)
    for path in SYSTEM_BUNDLES:
        if os.path.isfile(path):
            return Trust(path, "system trust store")
    return Trust(True, "certifi's bundle")


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 and localhost: traffic that never leaves this machine."""
    if host.lower() in ("localhost", "localhost.localdomain") or host.lower().endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_url(url: str, insecure_http: bool = False) -> None:
    """Refuse URLs that cannot or must not carry the token; say what to use instead."""
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        shown = f"{scheme}://" if scheme else "no scheme"
        raise UnsafeURL(f"the API URL must start with https:// (got {shown}), e.g. https://redcap.example.edu/api/")
    if not parts.hostname:
        raise UnsafeURL(f"the API URL {url!r} names no server")
    if scheme == "http" and not insecure_http and not is_loopback(parts.hostname):
        https = "https://" + url.strip()[len("http://"):]
        raise UnsafeURL(f"refusing plain http to {parts.hostname}: the API token would cross the network "
                        f"unencrypted in every request. Use {https}, or pass -o insecure_http if you must")


def describe_tls_failure(detail: str, ca_hint: str = "pass -o ca=PATH with your institution's CA bundle") -> str:
    """One plain sentence for an SSL error text, naming the cause once."""
    text = detail.lower()
    if "certificate has expired" in text:
        return "the server's certificate has expired (ask the server's administrators to renew it)"
    if "hostname mismatch" in text or "ip address mismatch" in text or "doesn't match" in text:
        return ("the server's certificate is for another host name "
                "(use the host name the certificate names, as in the browser's address bar)")
    if "self-signed" in text or "unable to get local issuer" in text or "unknown ca" in text \
            or "certificate verify failed" in text:
        return f"certificate not trusted: {ca_hint}"
    if "wrong version number" in text or "record layer failure" in text or "packet length too long" in text:
        return "the server does not speak TLS on that port (is the URL http:// rather than https://?)"
    return f"the TLS handshake failed: {innermost_reason(detail)}"


def innermost_reason(detail: str) -> str:
    """The last, innermost reason of a nested SSL error text, once.

    requests nests it: "TLS failure talking to URL: SSLError: HTTPSConnectionPool(…):
    Max retries exceeded … (Caused by SSLError(SSLError(1, '[SSL: WRONG_VERSION_NUMBER]
    wrong version number (_ssl.c:992)')))"; the user needs the last part.
    """
    found = re.findall(r"\[SSL: ([A-Z0-9_]+)\] ([^'\"()]*)", detail)
    if found:
        code, text = found[-1]
        return f"{text.strip()} ({code})"
    if "Caused by " not in detail:
        return detail
    reason = detail.rsplit("Caused by ", 1)[-1].split(": ", 1)[-1]
    reason = re.sub(r"[\"')\s]+$", "", reason).lstrip(" (")
    return (reason + ")" * (reason.count("(") - reason.count(")"))) if reason else detail
