"""Parse the ``Content-Type`` header of a REDCap file export.

REDCap sends a stored file's original name only inside the content type
(``application/pdf; name="scan.pdf"``, newer servers append ``;charset=UTF-8``)
and does not escape it: a name holding ``"`` or ``;`` breaks ``email.message``
and ``cgi``-style parsers. So the rule here is the one that survives REDCap's
output: after ``name="`` the name runs to the *last* double quote that is only
followed by ordinary parameters (``;charset=…``). RFC 2231/5987 ``name*=`` and
unquoted names are accepted too, because proxies and other servers rewrite
headers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote

# A trailing ``;key=value`` parameter (value unquoted without quotes, or quoted).
_TRAILING_PARAM = re.compile(r'\s*;\s*[A-Za-z][\w.-]*\*?\s*=\s*(?:"[^"]*"|[^;"]*?)\s*;?\s*$')
_NAME_STAR = re.compile(r"(?:^|;)\s*name\*\s*=\s*([^;]*)", re.IGNORECASE)
_NAME = re.compile(r"(?:^|;)\s*name\s*=\s*", re.IGNORECASE)
_CHARSET = re.compile(r"(?:^|;)\s*charset\s*=\s*\"?([\w.:-]+)", re.IGNORECASE)


@dataclass(frozen=True)
class ContentType:
    """The parts of a content type redcapfs uses."""

    mime: str
    name: str | None = None
    charset: str | None = None


def parse_content_type(value: str | None) -> ContentType:
    """Split a ``Content-Type`` value into mime type, file name and charset (never raises)."""
    if not value:
        return ContentType("")
    value = fix_mojibake(value)
    mime, _, params = value.partition(";")
    params = ";" + params if params else ""
    return ContentType(mime.strip().lower(), _name(params), _charset(params))


def filename_from_content_type(value: str | None) -> str | None:
    """The ``name`` parameter of a content type, or ``None`` when there is none."""
    return parse_content_type(value).name


def fix_mojibake(value: str) -> str:
    """Undo http.client's Latin-1 decoding of a header that REDCap wrote in UTF-8.

    Header bytes arrive as Latin-1 code points; a non-ASCII name such as ``é``
    shows as ``Ã©``. If the text re-encodes to valid UTF-8 it was UTF-8.
    """
    if value.isascii():
        return value
    try:
        return value.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return value


def _name(params: str) -> str | None:
    """``name*=`` (RFC 2231) wins over ``name=``; an empty name counts as none."""
    star = _NAME_STAR.search(params)
    if star:
        decoded = _decode_rfc2231(star.group(1).strip())
        if decoded:
            return decoded
    match = _NAME.search(params)
    if not match:
        return None
    rest = params[match.end() :]
    name = _quoted_value(rest[1:]) if rest.startswith('"') else rest.split(";", 1)[0].strip()
    return name or None


def _quoted_value(rest: str) -> str:
    """The text up to the last quote that only ordinary parameters follow.

    Trailing ``;key=value`` parameters are peeled off while a closing quote
    would still remain; a missing closing quote (cut header) keeps everything.
    """
    while True:
        match = _TRAILING_PARAM.search(rest)
        if not match or '"' not in rest[: match.start()]:
            break
        rest = rest[: match.start()]
    end = rest.rfind('"')
    return rest[:end] if end >= 0 else rest.strip()


def _decode_rfc2231(raw: str) -> str | None:
    """``UTF-8''%C3%A9.pdf`` → ``é.pdf``; a value without the two quotes is plain percent-encoding."""
    raw = raw.strip('"')
    charset, sep, rest = raw.partition("'")
    if sep:
        _lang, sep2, encoded = rest.partition("'")
        encoded = encoded if sep2 else rest
    else:
        charset, encoded = "utf-8", raw
    try:
        return unquote(encoded, encoding=charset or "utf-8", errors="strict")
    except (LookupError, UnicodeDecodeError):
        return unquote(encoded, encoding="latin-1")


def _charset(params: str) -> str | None:
    match = _CHARSET.search(params)
    return match.group(1) if match else None
