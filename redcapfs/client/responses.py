"""Turn REDCap's error answers into typed errors.

REDCap tells errors apart only by status and message text, and writes the
message as json, xml or ``ERROR: …`` depending on ``returnFormat`` (and on the
server version, whatever was asked for). Everything that decides *which* error
an answer is lives here, so the table can be read, and tested, in one place.
"""

from __future__ import annotations

import html
import json
import re
from dataclasses import dataclass
from typing import Any

from redcapfs import errors as E

from .base import FileInfo
from .contenttype import parse_content_type

_XML_ERROR = re.compile(r"<error>(.*?)</error>", re.DOTALL | re.IGNORECASE)
_HTML_TITLE = re.compile(r"<title[^>]*>(.*?)</title>", re.DOTALL | re.IGNORECASE)
_TAGS = re.compile(r"<[^>]+>")

# (pattern, error class) for 400 answers; first match wins, so the more specific
# texts stand first ("The field 'x' does not exist or is not a 'file' field"
# must not be read as a missing record).
_BAD_REQUEST_TABLE: tuple[tuple[re.Pattern[str], type[E.BadRequest]], ...] = tuple(
    (re.compile(p, re.IGNORECASE), cls)
    for p, cls in (
        (r"is not a 'file' field|is not a file field", E.NotAFileField),
        (r"signature field", E.SignatureField),
        (r"there is no file to (download|delete)", E.EmptySlot),
        (r"exceeded the maximum file size", E.TooLarge),
        (r"no valid file was uploaded|problem with the uploaded file", E.InvalidUpload),
        (r"\bis locked\b|\bare locked\b", E.Locked),
        (r"invalid event|not a valid (unique )?event", E.InvalidEvent),
        (r"\brecord\b.*\bdoes not exist", E.NoSuchRecord),
    )
)
BAD_TOKEN_TEXT = "you do not have permissions to use the api"
# REDCap's checkBannedIp(): HTTP 429 and "Your IP address (ADDR) has been banned due to suspected abuse."
_BANNED = re.compile(r"\bIP address\b.{0,80}\bbanned\b", re.IGNORECASE | re.DOTALL)
RETRYABLE_STATUS = frozenset({408, 500, 502, 503, 504})
#: Nameless answers of these types may be an error or a login page rather than a file.
PEEK_MIMES = ("text/html", "application/json", "text/xml", "application/xml")
TEXT_ANSWER_LIMIT = 200


@dataclass(frozen=True)
class CallContext:
    """What a call was about; copied into every error it raises."""

    content: str
    action: str | None = None
    record: str | None = None
    field: str | None = None
    event: str | None = None
    instance: int | None = None

    def kwargs(self, status: int | None = None) -> dict[str, Any]:
        """Keyword arguments for a ``RedcapError`` constructor."""
        return {
            "status": status,
            "content": self.content,
            "action": self.action,
            "record": self.record,
            "field": self.field,
            "event": self.event,
            "instance": self.instance,
        }

    def label(self) -> str:
        return self.content + (f"/{self.action}" if self.action else "")


def error_message(body: bytes | str, content_type: str | None = None) -> str | None:
    """REDCap's error text from a body in any of its three forms, or ``None``.

    The body's own shape decides, not the content type: REDCap labels csv errors
    ``text/html`` and older versions ignore ``returnFormat``.
    """
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    text = text.strip().lstrip("\ufeff")
    if text.startswith("{"):
        return _json_error(text)
    if text.startswith("<") and "<error>" in text.lower():
        match = _XML_ERROR.search(text)
        return html.unescape(match.group(1)).strip() if match else None
    if text[:6].upper() == "ERROR:":
        return text[6:].strip()
    return None


def _json_error(text: str) -> str | None:
    try:
        data = json.loads(text)
    except ValueError:
        return None
    if isinstance(data, dict) and "error" in data:
        return str(data["error"])
    return None


def looks_like_html(body: bytes | str, content_type: str | None = None) -> bool:
    """An HTML page (login form, proxy error, web server index), not an API answer."""
    head = (body[:512].decode("utf-8", "replace") if isinstance(body, bytes) else body[:512]).lstrip().lower()
    return head.startswith("<!doctype html") or head.startswith("<html") or "<body" in head


def snippet(body: bytes | str, limit: int = 200) -> str:
    """A short human-readable excerpt of an unexpected body (an HTML page's title if any)."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    title = _HTML_TITLE.search(text)
    if title:
        text = title.group(1)
    text = " ".join(html.unescape(_TAGS.sub(" ", text)).split())
    return text[:limit] + ("…" if len(text) > limit else "")


def not_an_api(ctx: CallContext, status: int, content_type: str | None, detail: str = "") -> E.ProtocolError:
    """The error for an answer no REDCap API would give (wrong URL, HTML page)."""
    mime = parse_content_type(content_type).mime or "no content type"
    text = f"that URL does not answer like a REDCap API (HTTP {status}, {mime})"
    return E.ProtocolError(text + (f": {detail}" if detail else ""), **ctx.kwargs(status))


def error_for(status: int, body: bytes | str, content_type: str | None, ctx: CallContext) -> E.RedcapError:
    """The typed error for a non-200 answer (or a 200 that carries an error body)."""
    message = error_message(body, content_type)
    kw = ctx.kwargs(status)
    banned = ban_text(body)
    if banned is not None:
        return E.IpBanned(banned, **kw)
    if status in (404, 405) or (message is None and looks_like_html(body) and status < 500):
        return not_an_api(ctx, status, content_type, snippet(body) if message is None else "")
    text = message if message is not None else (snippet(body) or f"HTTP {status} with no message")
    return _classify(status, text, kw)


def ban_text(body: bytes | str) -> str | None:
    """REDCap's ban page (its page-hit limiter banned this IP), as one line; ``None`` for any other answer."""
    text = snippet(body, 300)
    return text if _BANNED.search(text) else None


def _classify(status: int, text: str, kw: dict[str, Any]) -> E.RedcapError:
    if status == 403:
        cls: type[E.RedcapError] = E.BadToken if BAD_TOKEN_TEXT in text.lower() else E.NoRights
        return cls(text, **kw)
    if status == 401:
        return E.BadToken(text, **kw)
    if status == 408:
        return E.RequestTimeout(text, **kw)
    if status == 413:
        return E.TooLarge(text, **kw)
    if status >= 500 or status == 429:
        return E.ServerError(text, **kw)
    if 400 <= status < 500 or status == 200:
        return classify_bad_request(text, kw)
    return E.ProtocolError(f"unexpected HTTP {status}: {text}", **kw)


def classify_bad_request(text: str, kw: dict[str, Any]) -> E.BadRequest:
    """Pick the ``BadRequest`` subclass REDCap's 400 message names."""
    for pattern, cls in _BAD_REQUEST_TABLE:
        if pattern.search(text):
            return cls(text, **kw)
    return E.BadRequest(text, **kw)


def is_retryable(exc: E.RedcapError) -> bool:
    """Failures worth repeating an idempotent call for: 408/5xx gateways, timeouts, broken connections.

    TLS failures and protocol mismatches do not heal by themselves.
    """
    if isinstance(exc, E.TLSError):
        return False
    if isinstance(exc, E.TransportError):  # includes RequestTimeout (and HTTP 408)
        return True
    return isinstance(exc, E.ServerError) and exc.status in RETRYABLE_STATUS


# ------------------------------------------------- 200 answers, by call shape
#
# A 200 can still carry an error (older servers, proxies), so every success is
# read through one of these. ``HttpClient`` and the sandbox's in-process client
# both use them: a body means the same thing whichever way it arrived.


def json_answer(ctx: CallContext, body: bytes, content_type: str | None) -> Any:
    """A JSON answer; an error body (any of REDCap's three forms) raises its typed error."""
    try:
        data = json.loads(body)
    except ValueError:
        message = error_message(body)
        if message is not None:
            raise classify_bad_request(message, ctx.kwargs(200)) from None
        detail = "an HTML page" if looks_like_html(body) else "the answer is not JSON"
        raise not_an_api(ctx, 200, content_type, detail) from None
    if isinstance(data, dict) and set(data) == {"error"}:
        raise classify_bad_request(str(data["error"]), ctx.kwargs(200))
    return data


def rows_answer(ctx: CallContext, data: Any) -> list[dict[str, Any]]:
    """A parsed JSON answer that must be a list of rows."""
    if not isinstance(data, list):
        raise not_an_api(ctx, 200, "application/json", "expected a JSON list of rows")
    return data


def text_answer(ctx: CallContext, body: bytes, content_type: str | None) -> str:
    """A short plain-text answer (version, next record name)."""
    message = error_message(body)
    if message is not None:
        raise classify_bad_request(message, ctx.kwargs(200))
    if looks_like_html(body) or len(body) > TEXT_ANSWER_LIMIT:
        raise not_an_api(ctx, 200, content_type, "expected a short plain-text answer")
    return body.decode("utf-8", "replace").strip()


def write_answer(ctx: CallContext, body: bytes) -> bytes:
    """A write's answer: an error text in a 200 body still counts as an error."""
    message = error_message(body)
    if message is not None:
        raise classify_bad_request(message, ctx.kwargs(200))
    return body


def download_head_check(ctx: CallContext, head: bytes, content_type: str | None) -> None:
    """The first bytes of a nameless html/json/xml download: an error or a web page, not a file."""
    message = error_message(head)
    if message is not None:
        raise classify_bad_request(message, ctx.kwargs(200))
    if looks_like_html(head):
        raise not_an_api(ctx, 200, content_type, "an HTML page instead of a file")


def file_info_answer(ctx: CallContext, body: bytes) -> FileInfo | None:
    """The ``fileinfo`` JSON as a ``FileInfo``; ``None`` when it holds no size (flag not understood)."""
    try:
        data = json.loads(body)
    except ValueError:
        raise not_an_api(ctx, 200, "application/json", "fileinfo answer is not JSON") from None
    if isinstance(data, dict) and "error" in data:
        raise classify_bad_request(str(data["error"]), ctx.kwargs(200))
    size = data.get("size", data.get("filesize")) if isinstance(data, dict) else None
    try:
        size_int = int(size) if size is not None else None
    except (TypeError, ValueError):
        size_int = None
    if size_int is None:
        return None
    name = data.get("name")
    return FileInfo(str(name) if name not in (None, "") else None, size_int, None)


def means_empty(content: str, exc: E.BadRequest) -> bool:
    """REDCap's 400 that stands for "none": arms/events/mappings of a classic project, no repeating setup."""
    text = exc.message.lower()
    if content == "repeatingFormsEvents":
        return "repeat" in text
    return "classic project" in text
