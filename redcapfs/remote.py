"""The one way every command reaches REDCap: may this URL carry the token, which CAs to trust, which proxy.

The mount (``-o ca=PATH``, ``-o insecure_http``), ``retry`` and ``restore``
(``--ca PATH``, ``--insecure-http``) and ``serve webdav`` all open their
client through :func:`open_remote`, so a private CA named once is honoured the
same way everywhere, and a refused URL or a failed first call reads the same
from every command. The trust order itself lives in ``client.trust``.

Proxies are requests' own: ``HTTPS_PROXY``/``HTTP_PROXY``/``ALL_PROXY`` and
``NO_PROXY`` (``trust_env``); the proxy in use is logged, never its password.
Redirects are never followed (a followed redirect would resend the token, and
turns REDCap's POST into a GET whose answer is a login page): a first call
that meets one is refused with the URL to use instead.
"""

from __future__ import annotations

import argparse
import logging
import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests.utils

from redcapfs import errors as E
from redcapfs.client.http import HttpClient
from redcapfs.client.trust import (
    Trust,
    UnsafeURL,
    check_url,
    describe_tls_failure,
    innermost_reason,
    is_loopback,
    resolve_trust,
)

log = logging.getLogger("redcapfs")

MOUNT_HINT = "pass -o ca=PATH with your institution's CA bundle"
CLI_HINT = "pass --ca PATH with your institution's CA bundle"


class RemoteRefused(Exception):
    """The URL, the CA bundle or the first call was refused; the message is the user's."""


@dataclass
class Remote:
    """An open client and the decisions behind it (shown at mount and in ``status``)."""

    client: HttpClient
    trust: Trust
    proxy: str | None
    hint: str

    @property
    def tls(self) -> bool:
        return urlsplit(self.client.url).scheme == "https"

    def describe(self) -> str:
        """One log line: what protects the token on the way."""
        how = f"https, trusting {self.trust.describe()}" if self.tls else "plain http (no TLS)"
        return how + (f", through proxy {self.proxy}" if self.proxy else "")

    def status_facts(self) -> dict[str, Any]:
        """The ``tls``, ``trust`` and ``proxy`` keys of the status file."""
        return {"tls": self.tls, "trust": self.trust.describe() if self.tls else None, "proxy": self.proxy}

    def refusal(self, exc: E.RedcapError) -> str:
        """The message for a first call that failed, naming its cause once."""
        return first_call_message(self.client.url, exc, self.trust, self.hint)


def check_remote(url: str, ca: str | None = None, insecure_http: bool = False) -> Trust:
    """The checks that need no connection and no token (run first, so they are refused first)."""
    try:
        check_url(url, insecure_http)
    except UnsafeURL as exc:
        raise RemoteRefused(str(exc)) from None
    return _trust(ca, None)


def plain_http_notice(url: str) -> str:
    """The line a user sees at every start when ``insecure_http`` really sends the token in the clear."""
    host = urlsplit(url).hostname or ""
    if urlsplit(url).scheme == "http" and not is_loopback(host):
        return f"note: plain http to {host}: the API token crosses the network unencrypted (-o insecure_http)"
    return ""


def open_remote(url: str, token: str, *, ca: str | None = None, insecure_http: bool = False,
                hint: str = MOUNT_HINT, environ: Mapping[str, str] | None = None, **client_kwargs: Any) -> Remote:
    """Check the URL, decide the trust, open the client; :class:`RemoteRefused` before any connection."""
    try:
        check_url(url, insecure_http)
    except UnsafeURL as exc:
        raise RemoteRefused(str(exc)) from None
    trust = _trust(ca, environ)
    client = HttpClient(url, token, verify=trust.verify, **client_kwargs)
    remote = Remote(client, trust, proxy_for(url), hint)
    log.info("connecting to %s over %s", _without_password(url), remote.describe())
    if not remote.tls:
        log.warning("the API token crosses %s without TLS", urlsplit(url).hostname)
    return remote


def _trust(ca: str | None, environ: Mapping[str, str] | None) -> Trust:
    """resolve_trust, with a named bundle that is missing or not PEM refused up front."""
    try:
        trust = resolve_trust(ca, environ)
    except FileNotFoundError as exc:
        raise RemoteRefused(f"{exc}: name a PEM file holding your institution's CA certificate(s)") from None
    if isinstance(trust.verify, str):
        try:
            if os.path.isdir(trust.verify):
                ssl.create_default_context(capath=trust.verify)
            else:
                ssl.create_default_context(cafile=trust.verify)
        except (OSError, ssl.SSLError) as exc:
            raise RemoteRefused(f"the CA bundle {trust.verify} (from {trust.source}) cannot be used: "
                                f"{getattr(exc, 'strerror', None) or exc}; it must hold PEM certificates "
                                "(-----BEGIN CERTIFICATE-----)") from None
    return trust


def proxy_for(url: str) -> str | None:
    """The proxy requests will use for ``url`` (HTTPS_PROXY, NO_PROXY, …), without any password."""
    proxies = requests.utils.get_environ_proxies(url)
    proxy = proxies.get(urlsplit(url).scheme) or proxies.get("all")
    return _without_password(proxy) if proxy else None


def _without_password(url: str) -> str:
    parts = urlsplit(url if "://" in url else "http://" + url)
    if parts.username is None and parts.password is None:
        return urlunsplit(parts)
    host = parts.hostname or ""
    return urlunsplit(parts._replace(netloc=f"***@{host}" + (f":{parts.port}" if parts.port else "")))


def first_call_message(url: str, exc: E.RedcapError, trust: Trust, hint: str = MOUNT_HINT) -> str:
    """What a failed first call (project info) means: tells token, URL, TLS, redirect and server apart."""
    if isinstance(exc, E.BadToken):
        return f"the API token was refused by {url}: {exc.message}"
    if isinstance(exc, E.NoRights):
        return f"the API token has no rights here: {exc.message}"
    if isinstance(exc, E.TLSError):
        return tls_message(url, exc.message, trust, hint)
    if exc.status is not None and 300 <= exc.status < 400:
        return exc.message  # the client's redirect refusal already names both URLs
    if isinstance(exc, E.ProtocolError):
        return f"{url} is not a REDCap API (did you mean the URL ending in /api/?): {exc.message}"
    if isinstance(exc, E.TransportError):  # RequestTimeout included
        return f"cannot connect to {url}: {innermost_reason(exc.message)}"
    if exc.status in (400, 404, 405, 501):
        return f"{url} is not a REDCap API (HTTP {exc.status}: {exc.message}); the URL usually ends in /api/"
    return f"{url} answered with an error: {exc}"


def tls_message(url: str, detail: str, trust: Trust, hint: str = MOUNT_HINT) -> str:
    """``TLS failure talking to URL: <cause>``; the trust in use is named unless the cause already hints."""
    cause = describe_tls_failure(detail, hint)
    message = f"TLS failure talking to {url}: {cause}"
    if "not trusted" in cause:
        return f"{message} (checked against {trust.describe()})"
    if "expired" in cause or "another host name" in cause:
        return message  # the certificate itself is wrong: no CA bundle would help
    option = hint.split(" with ")[0].removeprefix("pass ")
    return f"{message} (trusting {trust.describe()}; {option} names another CA bundle)"


def add_trust_arguments(parser: argparse.ArgumentParser) -> None:
    """``--ca PATH`` and ``--insecure-http`` for the commands that are not the mount."""
    parser.add_argument("--ca", metavar="PATH",
                        help="CA bundle (PEM) to trust for the server, e.g. your institution's CA; default: "
                             "REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE, else the system's trust store")
    parser.add_argument("--insecure-http", action="store_true",
                        help="allow a plain http:// URL to another machine (the token crosses the network "
                             "unencrypted)")
