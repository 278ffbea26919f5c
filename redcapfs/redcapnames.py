"""The name REDCap stores for an uploaded file: one function for the mount and the sandbox.

A file uploaded as ``name`` is stored under a different name when ``name``
holds a backslash, a quote or an HTML entity. The mount has to predict that
name (it lists the file under it), and the sandbox has to store it; both call
:func:`stored_name` (the sandbox through :func:`php_filename_param` and
:func:`cleaned_name`, because it sees the raw multipart header), so they agree.

What happens to the name, in order (sources in docs/sandbox.md, "Upload names"):

1. The multipart encoder of our client (urllib3, the WHATWG HTML rule) writes
   ``filename="…"`` with ``"``, CR and LF percent-encoded (``%22``, ``%0D``,
   ``%0A``); nothing else is escaped.
2. PHP reads that parameter (main/rfc1867.c): inside the quotes ``\\\\`` becomes
   ``\\`` and ``\\"`` becomes ``"``; nothing is percent-decoded. Then PHP keeps only
   what follows the last ``/`` or ``\\`` ("strip any path components", every OS).
3. REDCap (``Files::uploadFile``, e.g. 7.1.2) stores
   ``str_replace("'", "", html_entity_decode(stripslashes($name), ENT_QUOTES))``:
   backslash escapes first, then HTML entities, and the single quotes last, so
   ``a&#39;b.pdf`` is stored as ``ab.pdf``. ``html_entity_decode`` is PHP's:
   HTML 4.01 names (no ``&apos;``), ``;`` required, numeric references only to
   code points HTML 4.01 allows.

Newer REDCap versions clean further (``strip_tags``, trimming, and in the
newest public source a ``sanitizeFileName`` that keeps quotes but drops
``?:*|"<>`` and transliterates accents); that is not emulated (docs/sandbox.md).
"""

from __future__ import annotations

import re
from html.entities import name2codepoint

from urllib3.fields import format_multipart_header_param

_ENTITY = re.compile(r"&(?:#([0-9]+)|#[xX]([0-9a-fA-F]+)|([A-Za-z][A-Za-z0-9]*));")
_MAX_CODE_POINT = 0x10FFFF


def stored_name(name: str) -> str:
    """The name REDCap stores when our HTTP client uploads a file named ``name``.

    ``""`` means PHP received no usable name (REDCap then refuses the upload).
    """
    return cleaned_name(received_filename(name))


def received_filename(name: str) -> str:
    """The ``filename`` PHP reads from the part our client's multipart encoder writes for ``name`` (steps 1-2a)."""
    header = "form-data; name=\"file\"; " + format_multipart_header_param("filename", name)
    received = php_filename_param(header)
    return received if received is not None else ""


def cleaned_name(received: str) -> str:
    """REDCap's stored name for the ``filename`` PHP read from the upload's header (steps 2b-3)."""
    return remove_quotes(php_html_entity_decode(php_stripslashes(php_basename(received))))


def remove_quotes(text: str) -> str:
    """REDCap's last step: every single quote removed (``str_replace("'", "", …)``)."""
    return text.replace("'", "")


def php_basename(path: str) -> str:
    """What PHP's multipart parser keeps of a file name: everything after the last ``/`` or ``\\``."""
    cut = max(path.rfind("/"), path.rfind("\\"))
    return path[cut + 1 :]


def php_stripslashes(text: str) -> str:
    """PHP's ``stripslashes``: ``\\x`` becomes ``x``, ``\\0`` a NUL, a lone trailing ``\\`` goes."""
    return re.sub(r"\\(.?)", lambda m: "\0" if m.group(1) == "0" else m.group(1), text, flags=re.DOTALL)


def php_html_entity_decode(text: str) -> str:
    """PHP's ``html_entity_decode($text, ENT_QUOTES)`` with its default HTML 4.01 table.

    Python's ``html.unescape`` differs: it follows HTML5 (``&apos;``, and names
    without the ``;`` such as ``&amp`` or ``&copy``), so it is not used here.
    """
    return _ENTITY.sub(_decode_entity, text)


def _decode_entity(match: re.Match[str]) -> str:
    decimal, hexadecimal, named = match.groups()
    if named is not None:
        code = name2codepoint.get(named)
    else:
        digits = decimal if decimal is not None else hexadecimal
        code = int(digits, 10 if decimal is not None else 16) if len(digits) <= 8 else None
    if code is None or not _allowed_in_html401(code):
        return match.group(0)
    return chr(code)


def _allowed_in_html401(code: int) -> bool:
    """PHP's ``unicode_cp_is_allowed`` for HTML 4.01: what a numeric reference may decode to."""
    return (
        code in (0x09, 0x0A, 0x0D)
        or 0x20 <= code <= 0x7E
        or 0xA0 <= code <= 0xD7FF
        or 0xE000 <= code <= _MAX_CODE_POINT
    )


def php_filename_param(content_disposition: str) -> str | None:
    """The ``filename`` parameter of a part's Content-Disposition as PHP reads it, or ``None``.

    PHP splits on ``;`` outside quotes, matches the key case-insensitively (the
    last ``filename`` wins; ``filename*`` is another key), and unquotes the value
    with only ``\\\\`` and ``\\<quote>`` as escapes. No percent-decoding.
    """
    found: str | None = None
    rest = content_disposition
    while rest:
        pair, rest = _php_getword(rest, ";")
        rest = rest.lstrip()
        if "=" not in pair:
            continue
        key, value = _php_getword(pair, "=")
        if key.lower() == "filename":
            found = _php_getword_conf(value)
    return found


def _php_getword(line: str, stop: str) -> tuple[str, str]:
    """rfc1867.c ``php_ap_getword``: text up to ``stop`` (quotes respected), and what follows it."""
    pos = 0
    while pos < len(line) and line[pos] != stop:
        quote = line[pos]
        pos += 1
        if quote in "\"'":
            while pos < len(line) and line[pos] != quote:
                pos += 2 if line[pos] == "\\" and line[pos + 1 : pos + 2] == quote else 1
            pos += 1 if pos < len(line) else 0
    word = line[:pos]
    while pos < len(line) and line[pos] == stop:
        pos += 1
    return word, line[pos:]


def _php_getword_conf(value: str) -> str:
    """rfc1867.c ``php_ap_getword_conf``: a quoted value unquoted, or a bare word up to whitespace."""
    value = value.lstrip()
    if value[:1] in ("\"", "'"):
        return _php_substring_conf(value[1:], value[0])
    return _php_substring_conf(value.split(None, 1)[0] if value.strip() else "", "")


def _php_substring_conf(text: str, quote: str) -> str:
    """rfc1867.c ``substring_conf``: copy up to ``quote``, unescaping ``\\\\`` and ``\\<quote>``."""
    out: list[str] = []
    i = 0
    while i < len(text) and (not quote or text[i] != quote):
        nxt = text[i + 1 : i + 2]
        if text[i] == "\\" and (nxt == "\\" or (quote and nxt == quote)):
            i += 1
        out.append(text[i])
        i += 1
    return "".join(out)
