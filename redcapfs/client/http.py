"""``HttpClient``: the REDCap API over HTTP, for many FUSE threads at once.

Design points, each forced by how REDCap behaves (see ``docs/redcap-api.md``):

* One POST endpoint, form-encoded; ``returnFormat=json`` always so error bodies
  are parseable, but xml and ``ERROR:`` bodies are recognised too.
* REDCap bans an IP that exceeds its page-hit limit, so every request passes a
  token bucket shared by all threads, and retries back off with full jitter.
* Only idempotent calls are retried: repeating an upload, a delete or a record
  import could double a write the server already made.
* Files are streamed both ways; a download that ends short is an error, never a
  silently truncated file.
* The API token travels only in the POST body and is kept out of every repr,
  log line and exception message.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import closing
from dataclasses import dataclass
from typing import Any, BinaryIO, TypeVar
from urllib.parse import urlsplit, urlunsplit

import requests
import urllib3.exceptions
from requests.adapters import HTTPAdapter
from requests_toolbelt import MultipartEncoder, MultipartEncoderMonitor

from redcapfs import __version__
from redcapfs import errors as E

from .base import FileInfo, chunked
from .contenttype import parse_content_type
from .params import api_form, export_records_params, import_records_params, slot_params, upload_mime
from .responses import (
    PEEK_MIMES,
    CallContext,
    download_head_check,
    error_for,
    file_info_answer,
    is_retryable,
    json_answer,
    means_empty,
    not_an_api,
    rows_answer,
    text_answer,
    write_answer,
)
from .stats import ClientStats, Transfer

log = logging.getLogger(__name__)

T = TypeVar("T")
CHUNK = 1 << 20  # download and upload block size
ERROR_BODY_LIMIT = 64 * 1024  # enough for any REDCap error; bounds what a wrong URL can make us read
DEFAULT_USER_AGENT = f"redcapfs/{__version__} python-requests/{requests.__version__}"


# ----------------------------------------------------------------- helpers


class RateLimiter:
    """A token bucket shared by every thread of one client.

    REDCap's page-hit limiter bans the whole IP (until an admin lifts it), so
    the client stays under a self-imposed rate instead of reacting to errors.
    Callers reserve a slot under the lock and sleep outside it, which keeps
    the order fair and the lock short.
    """

    def __init__(
        self,
        rate: float,
        burst: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self.capacity = burst if burst is not None else max(1.0, rate)
        self._clock = clock
        self._sleep = sleep
        self._tokens = self.capacity
        self._stamp = clock()
        self._lock = threading.Lock()

    def acquire(self) -> float:
        """Take one request slot, sleeping as long as needed; return the time slept."""
        with self._lock:
            now = self._clock()
            self._tokens = min(self.capacity, self._tokens + (now - self._stamp) * self.rate)
            self._stamp = now
            self._tokens -= 1.0
            wait = -self._tokens / self.rate if self._tokens < 0 else 0.0
        if wait > 0:
            self._sleep(wait)
        return wait


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
    """An adapter whose connections send request bodies in 1 MiB blocks (fast streamed uploads)."""

    def init_poolmanager(self, connections: int, maxsize: int, block: bool = False, **pool_kwargs: Any) -> None:
        pool_kwargs.setdefault("blocksize", CHUNK)
        super().init_poolmanager(connections, maxsize, block=block, **pool_kwargs)


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
class _Progress:
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


def _rewind_point(out: BinaryIO) -> int | None:
    """Where a restarted download would resume writing, or ``None`` if ``out`` cannot be rewound."""
    try:
        if out.seekable() and hasattr(out, "truncate"):
            return out.tell()
    except (AttributeError, OSError, ValueError):
        pass
    return None


def _content_length(resp: requests.Response) -> int | None:
    try:
        value = int(resp.headers.get("Content-Length", ""))
    except ValueError:
        return None
    return value if value >= 0 else None


# ------------------------------------------------------------------ client


class HttpClient:
    """The REDCap API over HTTP (implements ``RedcapClient``). Thread-safe.

    ``timeout`` is (connect, read) seconds; ``verify`` is a bool or a CA bundle
    path; ``rate_limit`` is requests per second for the whole client (``None``
    disables it); ``retries``/``backoff``/``max_backoff``/``retry_deadline``
    bound the retries of idempotent calls. ``fileinfo_params`` are the names
    of the undocumented "size and name only" flag sent by :meth:`file_info`.
    """

    def __init__(
        self,
        url: str,
        token: str,
        *,
        timeout: tuple[float, float] = (10, 60),
        verify: bool | str = True,
        retries: int = 4,
        backoff: float = 0.5,
        max_backoff: float = 8,
        retry_deadline: float = 60,
        pool_size: int = 16,
        rate_limit: float | None = 5.0,
        user_agent: str = DEFAULT_USER_AGENT,
        fileinfo_params: Sequence[str] = ("fileinfo", "filesize"),
    ) -> None:
        self.url = _check_url(url)
        self.__token = _Secret(_check_token(token))
        self.timeout = timeout
        self.retry = RetryPolicy(retries, backoff, max_backoff, retry_deadline)
        self.fileinfo_params = tuple(fileinfo_params)
        self._limiter = RateLimiter(rate_limit) if rate_limit else None
        self.stats = ClientStats(rate_limit or None)  # calls, rate, transfers: for `redcapfs status`
        self._session = self._make_session(pool_size, verify, user_agent)
        self._fileinfo_supported: bool | None = None
        self._record_id_field: str | None = None

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
        return f"HttpClient(url={_redact_url(self.url)!r}, token='***')"

    __str__ = __repr__

    def __enter__(self) -> HttpClient:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        """Close pooled connections."""
        self._session.close()

    @property
    def fileinfo_supported(self) -> bool | None:
        """``False`` once the server has shown it ignores the fileinfo flag; ``None`` until tried."""
        return self._fileinfo_supported

    # ----------------------------------------------------- project structure

    def project_info(self) -> dict[str, Any]:
        data = self._json(CallContext("project"), {})
        if not isinstance(data, dict):
            raise not_an_api(CallContext("project"), 200, "application/json", "project info is not an object")
        return data

    def version(self) -> str:
        return self._text(CallContext("version"), {})

    def metadata(self) -> list[dict[str, Any]]:
        rows = self._json_rows(CallContext("metadata"), {})
        if rows:
            self._record_id_field = rows[0].get("field_name") or self._record_id_field
        return rows

    def arms(self) -> list[dict[str, Any]]:
        return self._longitudinal_only("arm")

    def events(self) -> list[dict[str, Any]]:
        return self._longitudinal_only("event")

    def form_event_mapping(self) -> list[dict[str, Any]]:
        return self._longitudinal_only("formEventMapping")

    def repeating_forms_events(self) -> list[dict[str, Any]]:
        try:
            return self._json_rows(CallContext("repeatingFormsEvents"), {})
        except E.BadRequest as exc:
            if means_empty("repeatingFormsEvents", exc):
                return []
            raise

    def instruments(self) -> list[dict[str, Any]]:
        return self._json_rows(CallContext("instrument"), {})

    def _longitudinal_only(self, content: str) -> list[dict[str, Any]]:
        """Classic projects answer 400 "You cannot export … for classic projects": that means ``[]``."""
        try:
            return self._json_rows(CallContext(content), {})
        except E.BadRequest as exc:
            if means_empty(content, exc):
                return []
            raise

    # ---------------------------------------------------------------- records

    def record_id_field(self) -> str:
        """The record-ID field: the first metadata row (fetched once)."""
        if self._record_id_field is None:
            rows = self.metadata()
            if not rows:
                raise E.ProtocolError("the project has no metadata", content="metadata")
        assert self._record_id_field is not None
        return self._record_id_field

    def export_records(
        self,
        records: Sequence[str] | None = None,
        fields: Sequence[str] | None = None,
        events: Sequence[str] | None = None,
        batch_size: int | None = None,
    ) -> list[dict[str, Any]]:
        """Flat rows. An explicit empty ``records`` list means no records (not all of them).

        With ``batch_size``, the record list comes first (record-ID field only),
        then the rows ``batch_size`` records at a time, in the server's order.
        """
        if records is not None and not records:
            return []
        if batch_size is None:
            return self._export_records(records, fields, events)
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        ids = list(records) if records is not None else self._record_ids(events)
        rows: list[dict[str, Any]] = []
        for batch in chunked(ids, batch_size):
            rows.extend(self._export_records(batch, fields, events))
        return rows

    def _record_ids(self, events: Sequence[str] | None) -> list[str]:
        id_field = self.record_id_field()
        rows = self._export_records(None, [id_field], events)
        return list(dict.fromkeys(str(row[id_field]) for row in rows if id_field in row))

    def _export_records(
        self,
        records: Sequence[str] | None,
        fields: Sequence[str] | None,
        events: Sequence[str] | None,
    ) -> list[dict[str, Any]]:
        return self._json_rows(CallContext("record", "export"), export_records_params(records, fields, events))

    def import_records(
        self,
        rows: Sequence[dict[str, Any]],
        overwrite: bool = False,
        return_content: str = "count",
        *,
        force_auto_number: bool = False,
    ) -> Any:
        """Import flat rows; returns REDCap's answer (``{"count": N}``, a list of ids, or ``None``)."""
        ctx = CallContext("record", "import")
        params = import_records_params(rows, overwrite, return_content, force_auto_number)
        if return_content == "nothing":
            self._once(ctx, params)
            return None
        return self._json(ctx, params, idempotent=False)

    def generate_next_record_name(self) -> str:
        return self._text(CallContext("generateNextRecordName"), {}, idempotent=False)

    def export_logging(self, **filters: Any) -> list[dict[str, Any]]:
        """Audit log rows; ``filters`` are REDCap's (logtype, user, record, beginTime, endTime, dag).

        ``datetime`` values are formatted as REDCap wants them (``YYYY-MM-DD HH:MM``).
        """
        params = {k: v for k, v in filters.items() if v is not None}
        return self._json_rows(CallContext("log", "export", record=filters.get("record")), params)

    # ------------------------------------------------------------------ files

    def export_file(
        self,
        record: str,
        field: str,
        out: BinaryIO,
        event: str | None = None,
        repeat_instance: int | None = None,
    ) -> FileInfo:
        """Stream a file into ``out``; a short or broken body raises ``TransportError``.

        A broken download is retried from scratch only when ``out`` can be
        rewound (seek + truncate); otherwise the caller must discard ``out``.
        """
        ctx = CallContext("file", "export", record, field, event, repeat_instance)
        params = slot_params(ctx)
        start = _rewind_point(out)
        progress = _Progress(self.stats.start_transfer("download", record=record, event=event, field=field,
                                                       instance=repeat_instance))

        def attempt() -> FileInfo:
            progress.transfer.begin_attempt()
            progress.set(0)
            return self._download(ctx, params, out, progress)

        def may_retry(exc: E.RedcapError) -> bool:
            if progress.written == 0:
                return True
            if start is None:
                log.warning("%s: not retrying, %d bytes already written to an output that cannot be rewound",
                            ctx.label(), progress.written)
                return False
            out.seek(start)
            out.truncate()
            return True

        ok = False
        try:
            info = self._retrying(ctx, attempt, idempotent=True, may_retry=may_retry)
            ok = True
            return info
        finally:
            self.stats.end_transfer(progress.transfer, ok)

    def _download(self, ctx: CallContext, params: dict[str, Any], out: BinaryIO, progress: _Progress) -> FileInfo:
        resp = self._post(ctx, params, stream=True, headers={"Accept-Encoding": "identity"})
        with closing(resp):
            ctype = parse_content_type(resp.headers.get("Content-Type"))
            written = 0
            if ctype.name is None and ctype.mime in PEEK_MIMES:
                written = self._write_peeked(ctx, resp, out)
                progress.set(written)
            expected = _content_length(resp)
            progress.transfer.total = expected
            try:
                for chunk in resp.iter_content(CHUNK):
                    out.write(chunk)
                    written += len(chunk)
                    progress.set(written)
            except requests.RequestException as exc:
                raise self._transport_error(exc, ctx, f"download broke after {written} bytes") from None
        if expected is not None and written < expected:
            raise E.TransportError(f"download ended after {written} of {expected} bytes", **ctx.kwargs(200))
        return FileInfo(ctype.name, written, ctype.mime or None)

    def _write_peeked(self, ctx: CallContext, resp: requests.Response, out: BinaryIO) -> int:
        """A nameless html/json/xml answer may be an error or a login page rather than a file: look first."""
        head = self._read_some(ctx, resp)
        download_head_check(ctx, head, resp.headers.get("Content-Type"))
        out.write(head)
        return len(head)

    def file_info(
        self,
        record: str,
        field: str,
        event: str | None = None,
        repeat_instance: int | None = None,
    ) -> FileInfo | None:
        """Name and size through the undocumented ``fileinfo`` flag, or ``None``.

        A server that ignores the flag starts sending the file: the response is
        closed unread and the client stops asking (``fileinfo_supported``).
        """
        if self._fileinfo_supported is False:
            return None
        ctx = CallContext("file", "export", record, field, event, repeat_instance)
        params = slot_params(ctx)
        params.update({name: "1" for name in self.fileinfo_params})
        return self._retrying(ctx, lambda: self._file_info_once(ctx, params), idempotent=True)

    def _file_info_once(self, ctx: CallContext, params: dict[str, Any]) -> FileInfo | None:
        resp = self._post(ctx, params, stream=True)
        with closing(resp):
            ctype = parse_content_type(resp.headers.get("Content-Type"))
            if ctype.name is not None or ctype.mime != "application/json":
                self._no_fileinfo(ctx)
                return None  # closing() drops the connection: the file is never read
            body = self._read_some(ctx, resp)
        return self._parse_file_info(ctx, body)

    def _no_fileinfo(self, ctx: CallContext) -> None:
        if self._fileinfo_supported is not False:
            log.info("%s: server ignores the fileinfo flag; sizes will need downloads", ctx.label())
        self._fileinfo_supported = False

    def _parse_file_info(self, ctx: CallContext, body: bytes) -> FileInfo | None:
        info = file_info_answer(ctx, body)
        if info is None:
            self._no_fileinfo(ctx)
            return None
        self._fileinfo_supported = True
        return info

    def import_file(
        self,
        record: str,
        field: str,
        path: str,
        filename: str,
        event: str | None = None,
        repeat_instance: int | None = None,
    ) -> None:
        """Upload ``path`` as ``filename``, streamed from disk; never retried (not idempotent)."""
        ctx = CallContext("file", "import", record, field, event, repeat_instance)
        fields = self._with_content(ctx, slot_params(ctx))
        mime = upload_mime(filename)
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            transfer = self.stats.start_transfer("upload", record=record, event=event, field=field,
                                                 instance=repeat_instance, name=filename, total=size)
            ok = False
            try:
                transfer.begin_attempt(size)
                encoder = MultipartEncoder(fields=[*fields, ("file", (filename, fh, mime))])
                # The body is the file plus a few hundred bytes of multipart framing:
                # bytes sent, capped at the file size, is what a user wants to see.
                body = MultipartEncoderMonitor(encoder, lambda m: transfer.advance(min(size, m.bytes_read)))
                self._once(ctx, None, body=body, headers={"Content-Type": body.content_type})
                ok = True
            finally:
                self.stats.end_transfer(transfer, ok)

    def delete_file(
        self,
        record: str,
        field: str,
        event: str | None = None,
        repeat_instance: int | None = None,
    ) -> None:
        """Delete a stored file; never retried (a repeat would answer "no file to delete")."""
        ctx = CallContext("file", "delete", record, field, event, repeat_instance)
        self._once(ctx, slot_params(ctx))


    # ------------------------------------------------------ File Repository

    def repo_list(self, folder_id: int | None = None) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"action": "list"} | ({"folder_id": folder_id} if folder_id is not None else {})
        return self._json_rows(CallContext("fileRepository", "list"), params)

    def repo_export(self, doc_id: int, out: BinaryIO) -> FileInfo:
        """One download (retried from scratch when ``out`` can be rewound, as Export File)."""
        ctx = CallContext("fileRepository", "export", record=f"doc {doc_id}")
        params = {"action": "export", "doc_id": doc_id}
        start = _rewind_point(out)
        progress = _Progress(self.stats.start_transfer("download", name=f"doc {doc_id}"))

        def attempt() -> FileInfo:
            if start is not None:
                out.seek(start)
                out.truncate()
            return self._download(ctx, params, out, progress)

        ok = False
        try:
            info = self._retrying(ctx, attempt, idempotent=start is not None)
            ok = True
            return info
        finally:
            self.stats.end_transfer(progress.transfer, ok)

    def repo_import(self, path: str, filename: str, folder_id: int | None = None) -> None:
        ctx = CallContext("fileRepository", "import")
        params: dict[str, Any] = {"action": "import"} | ({"folder_id": folder_id} if folder_id is not None else {})
        fields = self._with_content(ctx, params)
        with open(path, "rb") as fh:
            encoder = MultipartEncoder(fields=[*fields, ("file", (filename, fh, upload_mime(filename)))])
            self._once(ctx, None, body=encoder, headers={"Content-Type": encoder.content_type})

    def repo_delete(self, doc_id: int) -> None:
        self._once(CallContext("fileRepository", "delete"), {"action": "delete", "doc_id": doc_id})

    def repo_create_folder(self, name: str, parent: int | None = None) -> int:
        params: dict[str, Any] = {"action": "createFolder", "name": name}
        if parent is not None:
            params["folder_id"] = parent
        rows = rows_answer(CallContext("fileRepository", "createFolder"),
                           self._json(CallContext("fileRepository", "createFolder"), params, idempotent=False))
        return int(rows[0]["folder_id"])

    # ------------------------------------------------------------ transport

    def _form(self, params: dict[str, Any]) -> list[tuple[str, str]]:
        """The POST fields: token and content first, then json formats and the call's parameters."""
        return api_form(self.__token.reveal(), "", params)

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
        if self._limiter:
            self.stats.throttled(self._limiter.acquire())
        data = body if body is not None else self._with_content(ctx, params or {})
        started = time.monotonic()
        self.stats.call(ctx.content, ctx.action)
        try:
            resp = self._session.post(self.url, data=data, headers=headers, timeout=self.timeout,
                                      stream=stream, allow_redirects=False)
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

    def _with_content(self, ctx: CallContext, params: dict[str, Any]) -> list[tuple[str, str]]:
        fields = self._form(params)
        fields[1] = ("content", ctx.content)
        return fields

    def _status_error(self, ctx: CallContext, resp: requests.Response) -> E.RedcapError:
        status = resp.status_code
        if 300 <= status < 400:
            where = resp.headers.get("Location", "?")
            return E.ProtocolError(f"the API URL redirects (HTTP {status}) to {_redact_url(where)}; "
                                   "configure that URL instead", **ctx.kwargs(status))
        body = self._read_some(ctx, resp)
        return error_for(status, body, resp.headers.get("Content-Type"), ctx)

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
        return text.replace(self.__token.reveal(), "***")

    # --------------------------------------------------------- call shapes

    def _retrying(
        self,
        ctx: CallContext,
        attempt: Callable[[], T],
        idempotent: bool,
        may_retry: Callable[[E.RedcapError], bool] | None = None,
    ) -> T:
        """Run ``attempt``; repeat it on retryable failures while count and time allow."""
        started = time.monotonic()
        tries = 0
        while True:
            try:
                return attempt()
            except E.RedcapError as exc:
                delay = self._retry_delay(exc, tries, started, idempotent)
                if delay is None or (may_retry is not None and not may_retry(exc)):
                    raise
                tries += 1
                log.warning("%s failed (%s); retry %d of %d in %.2f s",
                            ctx.label(), self._scrub(str(exc)), tries, self.retry.retries, delay)
                time.sleep(delay)

    def _retry_delay(self, exc: E.RedcapError, tries: int, started: float, idempotent: bool) -> float | None:
        if not idempotent or not is_retryable(exc) or tries >= self.retry.retries:
            return None
        delay = self.retry.delay(tries)
        if time.monotonic() - started + delay > self.retry.deadline:
            return None
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
