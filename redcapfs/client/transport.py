"""The HTTP layer under ``HttpClient``: pacing, one pooled session, one POST per attempt, retries, errors.

``HttpClient`` (http.py) holds one method per REDCap API call; everything they
share about *how* a call travels lives here: the token bucket that keeps the
client under REDCap's page-hit limit, full-jitter retries for idempotent calls
only, the session (1 MiB blocks, CA bundle on every request, redirects never
followed) and the mapping of HTTP and transport failures onto typed errors,
with the token scrubbed from every message.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass
from typing import Any, BinaryIO, Self, TypeVar
from urllib.parse import urljoin, urlsplit, urlunsplit

import requests
import urllib3.exceptions
from requests.adapters import HTTPAdapter

from redcapfs import __version__
from redcapfs import errors as E

from . import directsend
from .params import api_form
from .ratelimit import BanLatch, RateLimiter
from .responses import CallContext, error_for, is_retryable, json_answer, rows_answer, text_answer, write_answer
from .stats import ClientStats, Transfer

log = logging.getLogger("redcapfs.client.http")

T = TypeVar("T")
CHUNK = 1 << 20  # download and upload block size
ERROR_BODY_LIMIT = 64 * 1024  # enough for any REDCap error; bounds what a wrong URL can make us read
DEFAULT_USER_AGENT = f"redcapfs/{__version__} python-requests/{requests.__version__}"


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter, bounded in count and in total time."""

    retries: int = 4
    backoff: float = 0.5
    max_backoff: float = 8.0
    deadline: float = 60.0

    def delay(self, attempt: int) -> float:
        """Sleep before retry number ``attempt + 1`` (full jitter spreads synchronized clients)."""
        return random.uniform(0.0, min(self.max_backoff, self.backoff * (2**attempt)))


class _BigBlockAdapter(HTTPAdapter):
    """An adapter whose connections send request bodies in 1 MiB blocks, and streamed forms their own chunks."""

    def init_poolmanager(self, connections: int, maxsize: int, block: bool = False, **pool_kwargs: Any) -> None:
        pool_kwargs.setdefault("blocksize", CHUNK)
        super().init_poolmanager(connections, maxsize, block=block, **pool_kwargs)
        directsend.install(self.poolmanager)


class _Secret:
    """Holds the API token; its repr and str never show it (vars(), debuggers, accidental logs)."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "'***'"

    __str__ = __repr__


@dataclass
class Progress:
    """Bytes written to ``out`` by the current download attempt (also shown by ``redcapfs status``)."""

    transfer: Transfer
    written: int = 0

    def set(self, written: int) -> None:
        self.written = written
        self.transfer.advance(written)


def _check_token(token: str) -> str:
    """Loose shape check; the message never repeats the token."""
    if not isinstance(token, str) or not token:
        raise ValueError("the REDCap API token is empty")
    if any(ch.isspace() for ch in token):
        raise ValueError("the REDCap API token contains whitespace (a stray newline from a file?)")
    return token


def _check_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"the REDCap API URL must be http(s)://host/…/api/, got {_redact_url(url)!r}")
    return url


def _redact_url(url: str) -> str:
    """The URL without any ``user:password@`` part, for repr and messages."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc="***@" + parts.netloc.rsplit("@", 1)[1]))


def redirect_message(url: str, status: int, location: str | None) -> str:
    """Why a redirect of the API URL is refused, and the URL to use instead.

    Following it would resend the token, and (301/302/303) turn REDCap's POST
    into a GET whose answer is a login or home page, not the API's.
    """
    shown = _redact_url(url)
    if not location:
        return f"{shown} answers HTTP {status} (a redirect) without saying where to; ask the server's administrators"
    target = _redact_url(urljoin(url, location))
    why = (f"{shown} redirects (HTTP {status}) to {target}: redirects are not followed, since a redirected "
           "POST becomes a GET whose answer is a login page, and would resend the token. ")
    if urlsplit(target).path.rstrip("/").endswith("/api") and not urlsplit(target).query:
        return why + f"Use the URL it names: {target}"
    return why + ("That is not an API URL (a login or home page): use the project's API URL, which usually "
                  "ends in /api/ (REDCap shows it on the API page of the project)")


def rewind_point(out: BinaryIO) -> int | None:
    """Where a restarted download would resume writing, or ``None`` if ``out`` cannot be rewound."""
    try:
        if out.seekable() and hasattr(out, "truncate"):
            return out.tell()
    except (AttributeError, OSError, ValueError):
        pass
    return None


def content_length(resp: requests.Response) -> int | None:
    try:
        value = int(resp.headers.get("Content-Length", ""))
    except ValueError:
        return None
    return value if value >= 0 else None


class Transport:
    """How every call of one client travels (thread-safe); ``HttpClient`` adds the API's calls on top."""

    def __init__(self, url: str, token: str, *, timeout: tuple[float, float], verify: bool | str,
                 retry: RetryPolicy, pool_size: int, rate_limit: float | None, user_agent: str,
                 call_budget: float | None = None, burst: float | None = None) -> None:
        self.url = _check_url(url)
        # A bound on a whole call, retries included (not on transfers, which only need to keep moving):
        # a frozen server then costs a metadata operation one bounded wait. Per thread, set by _retrying.
        self.call_budget = call_budget
        self._deadline = threading.local()
        self._token = _Secret(_check_token(token))
        self.timeout = timeout
        self.retry = retry
        self._limiter = RateLimiter(rate_limit, burst) if rate_limit else None
        self.ban = BanLatch()  # once REDCap banned this IP, no more calls
        self.stats = ClientStats(rate_limit or None, burst=self._limiter.capacity if self._limiter else None,
                                 ban=self.ban)  # calls, rate, transfers: for `redcapfs status`
        self._session = self._make_session(pool_size, verify, user_agent)

    @staticmethod
    def _make_session(pool_size: int, verify: bool | str, user_agent: str) -> requests.Session:
        """One session, one pool of ``pool_size`` connections; retries are ours, not urllib3's."""
        session = requests.Session()
        adapter = _BigBlockAdapter(pool_connections=1, pool_maxsize=pool_size, max_retries=0, pool_block=True)
        session.mount("https://", adapter)
        session.mount("http://", adapter)
        session.verify = verify
        session.trust_env = True
        session.headers["User-Agent"] = user_agent
        return session

    def __repr__(self) -> str:
        return f"{type(self).__name__}(url={_redact_url(self.url)!r}, token='***')"

    __str__ = __repr__

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        """Close pooled connections."""
        self._session.close()

    # ------------------------------------------------------------ transport

    def _form(self, params: dict[str, Any]) -> list[tuple[str, str]]:
        """The POST fields: token and content first, then json formats and the call's parameters."""
        return api_form(self._token.reveal(), "", params)

    def _post(
        self,
        ctx: CallContext,
        params: dict[str, Any] | None,
        *,
        stream: bool = False,
        body: Any = None,
        headers: dict[str, str] | None = None,
    ) -> requests.Response:
        """One HTTP attempt; returns a 200 response, raises a typed error for anything else."""
        self.ban.check(ctx.kwargs(429))
        if self._limiter:
            self.stats.throttled(self._limiter.acquire())
            self.ban.check(ctx.kwargs(429))  # seen by another call while this one waited its turn
        data = body if body is not None else self._with_content(ctx, params or {})
        started = time.monotonic()
        timeout = self._attempt_timeout(ctx, started)
        self.stats.call(ctx.content, ctx.action)
        try:
            # verify per request: requests lets REQUESTS_CA_BUNDLE override a session's own verify
            resp = self._session.post(self.url, data=data, headers=headers, timeout=timeout,
                                      stream=stream, allow_redirects=False, verify=self._session.verify)
        except requests.RequestException as exc:
            self.stats.failed()
            raise self._transport_error(exc, ctx, "request failed") from None
        log.debug("%s %s → HTTP %d in %.3f s", ctx.label(), ctx.record or "", resp.status_code,
                  time.monotonic() - started)
        if resp.status_code == 200:
            return resp
        self.stats.failed()
        with closing(resp):
            raise self._status_error(ctx, resp)

    def _attempt_timeout(self, ctx: CallContext, now: float) -> tuple[float, float]:
        """(connect, read) for one attempt: the client's, cut to what is left of the call's deadline."""
        deadline: float | None = getattr(self._deadline, "value", None)
        if deadline is None:
            return self.timeout
        left = deadline - now
        if left <= 0:
            raise E.RequestTimeout(f"no answer within the call's bound of {self.call_budget:g} s (-o timeout)",
                                   **ctx.kwargs())
        connect, read = self.timeout
        return (min(connect, left), min(read, left))

    def _with_content(self, ctx: CallContext, params: dict[str, Any]) -> list[tuple[str, str]]:
        fields = self._form(params)
        fields[1] = ("content", ctx.content)
        return fields

    def _status_error(self, ctx: CallContext, resp: requests.Response) -> E.RedcapError:
        status = resp.status_code
        if 300 <= status < 400:
            return E.ProtocolError(redirect_message(self.url, status, resp.headers.get("Location")),
                                   **ctx.kwargs(status))
        body = self._read_some(ctx, resp)
        error = error_for(status, body, resp.headers.get("Content-Type"), ctx)
        if isinstance(error, E.IpBanned):
            self.ban.note(error)
        return error

    def _read_some(self, ctx: CallContext, resp: requests.Response, limit: int = ERROR_BODY_LIMIT) -> bytes:
        """At most ``limit`` bytes of a body (an error page must not make us read megabytes)."""
        if not resp.raw or getattr(resp, "_content_consumed", False):
            return resp.content[:limit]
        buf = bytearray()
        try:
            for chunk in resp.iter_content(min(limit, CHUNK)):
                buf += chunk
                if len(buf) >= limit:
                    break
        except requests.RequestException as exc:
            raise self._transport_error(exc, ctx, "reading the answer failed") from None
        return bytes(buf[:limit])

    def _transport_error(self, exc: BaseException, ctx: CallContext, what: str) -> E.TransportError:
        """Map a requests exception onto TransportError / RequestTimeout / TLSError, token-free."""
        cause = exc.args[0] if exc.args else None
        detail = self._scrub(f"{type(exc).__name__}: {exc}")
        kw = ctx.kwargs()
        if isinstance(exc, requests.exceptions.SSLError):
            return E.TLSError(f"TLS failure talking to {_redact_url(self.url)}: {detail}", **kw)
        if isinstance(exc, requests.exceptions.Timeout) or isinstance(cause, urllib3.exceptions.ReadTimeoutError):
            connect, read = self.timeout
            return E.RequestTimeout(f"{what}: no answer in time (connect {connect} s, read {read} s): {detail}", **kw)
        return E.TransportError(f"{what}: {detail}", **kw)

    def _scrub(self, text: str) -> str:
        return text.replace(self._token.reveal(), "***")

    # --------------------------------------------------------- call shapes

    def _retrying(
        self,
        ctx: CallContext,
        attempt: Callable[[], T],
        idempotent: bool,
        may_retry: Callable[[E.RedcapError], bool] | None = None,
        bounded: bool = True,
    ) -> T:
        """Run ``attempt``; repeat it on retryable failures while count and time allow.

        ``bounded`` calls (all but file transfers) end within ``call_budget``,
        retries included: each attempt's timeouts are cut to what is left.
        """
        started = time.monotonic()
        deadline = started + self.call_budget if bounded and self.call_budget else None
        outer = getattr(self._deadline, "value", None)
        self._deadline.value = deadline if outer is None or deadline is None else min(outer, deadline)
        tries = 0
        try:
            while True:
                try:
                    return attempt()
                except E.RedcapError as exc:
                    delay = self._retry_delay(exc, tries, started, idempotent, self._deadline.value)
                    if delay is None or (may_retry is not None and not may_retry(exc)):
                        raise
                    tries += 1
                    log.warning("%s failed (%s); retry %d of %d in %.2f s",
                                ctx.label(), self._scrub(str(exc)), tries, self.retry.retries, delay)
                    time.sleep(delay)
        finally:
            self._deadline.value = outer

    def _retry_delay(self, exc: E.RedcapError, tries: int, started: float, idempotent: bool,
                     deadline: float | None = None) -> float | None:
        if not idempotent or not is_retryable(exc) or tries >= self.retry.retries:
            return None
        delay = self.retry.delay(tries)
        now = time.monotonic()
        if now - started + delay > self.retry.deadline:
            return None
        if deadline is not None and now + delay >= deadline:
            return None  # no time left for another attempt
        return delay

    def _once(self, ctx: CallContext, params: dict[str, Any] | None, **kw: Any) -> bytes:
        """A write: one attempt, 200 only, and an error text in a 200 body still counts as an error."""
        with closing(self._post(ctx, params, **kw)) as resp:
            body = resp.content
        return write_answer(ctx, body)

    def _json(self, ctx: CallContext, params: dict[str, Any], idempotent: bool = True) -> Any:
        return self._retrying(ctx, lambda: self._json_once(ctx, params), idempotent)

    def _json_once(self, ctx: CallContext, params: dict[str, Any]) -> Any:
        with closing(self._post(ctx, params)) as resp:
            body, ctype = resp.content, resp.headers.get("Content-Type")
        return json_answer(ctx, body, ctype)

    def _json_rows(self, ctx: CallContext, params: dict[str, Any]) -> list[dict[str, Any]]:
        return rows_answer(ctx, self._json(ctx, params))

    def _text(self, ctx: CallContext, params: dict[str, Any], idempotent: bool = True) -> str:
        return self._retrying(ctx, lambda: self._text_once(ctx, params), idempotent)

    def _text_once(self, ctx: CallContext, params: dict[str, Any]) -> str:
        with closing(self._post(ctx, params)) as resp:
            body, ctype = resp.content, resp.headers.get("Content-Type")
        return text_answer(ctx, body, ctype)
