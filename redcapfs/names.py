"""Reversible mapping between REDCap names and path components.

REDCap record names and stored file names are untrusted: they may hold ``/``,
NUL, control characters, lone surrogates (JSON allows ``"\\ud800"``), be empty,
``.`` or ``..``, or be longer than the 255 bytes a path component may have.
:func:`encode` turns any name into one valid component and :func:`decode` turns
it back, so that ``decode(encode(x)) == x`` for every string ``x``.

The rules (written for users in ``docs/names.md``):

* ``/``, NUL, the other C0 controls and DEL become ``%XX`` (uppercase hex);
  a lone surrogate becomes ``%uXXXX``.
* A ``%`` stays as it is, unless what follows it would be read as an escape;
  only then is it written ``%25``. So ``50%off.pdf`` and ``100%.pdf`` look the
  same on disk as in REDCap, and a user who creates them gets them back under
  the same name (a name that changes after ``close`` breaks rsync and editors).
* The whole names ``""``, ``.`` and ``..`` become ``%EMPTY``, ``%2E`` and
  ``%2E%2E``. These tokens mean something only as a whole component; a name
  that literally spells one gets its ``%`` written as ``%25``.
* A component over 255 UTF-8 bytes is shortened to a prefix, the marker
  ``%~`` + 10 hex digits of the SHA-256 of the full name, and the extension
  when it is short: ``Very long…%~3fa9c0d12e.pdf``. Because a literal ``%``
  before ``~`` and 10 hex digits is always escaped, the marker never appears in
  an unshortened component, so a shortened component cannot collide with a
  plain one. It cannot be decoded alone: :class:`Resolver` maps it back given
  the names present in the directory.

Escapes are recognised only in the exact uppercase forms encode produces; any
other ``%`` is literal (``%2f``, ``%41``, ``50%``), which is what lets users
type names containing ``%``.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Iterable, Iterator

log = logging.getLogger(__name__)

NAME_MAX = 255
"""Largest component, in UTF-8 bytes (Linux NAME_MAX)."""

EMPTY_TOKEN = "%EMPTY"
"""The component standing for the empty name."""

_TOKENS = {"": EMPTY_TOKEN, ".": "%2E", "..": "%2E%2E"}
_TOKEN_NAMES = {token: name for name, token in _TOKENS.items()}

_HASH_DIGITS = 10
_MAX_EXT_BYTES = 16
_MARKER_LEN = 2 + _HASH_DIGITS

# What decode reads as an escape: C0 controls, %, /, DEL; lone surrogates.
_ESCAPE_RE = re.compile(r"%(?:(?P<code>[01][0-9A-F]|25|2F|7F)|u(?P<sur>D[89A-F][0-9A-F]{2}))")
_MARKER_RE = re.compile("%~[0-9a-f]{" + str(_HASH_DIGITS) + "}")
# After a literal '%', any of these would change meaning: such a '%' is escaped.
_AMBIGUOUS_RE = re.compile(f"{_ESCAPE_RE.pattern}|{_MARKER_RE.pattern}")


# A name without anything encode changes (no %, C0 control, /, DEL or lone surrogate) is its own component.
_PLAIN_RE = re.compile("[^\x00-\x1f%/\x7f\ud800-\udfff]*")


def _utf8_len(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


def _piece(name: str, i: int) -> str:
    """The encoding of ``name[i]``: one piece per character, so pieces can be cut cleanly."""
    ch = name[i]
    code = ord(ch)
    if ch == "%":
        return "%25" if _AMBIGUOUS_RE.match(name, i) else "%"
    if code < 0x20 or code == 0x7F or ch == "/":
        return f"%{code:02X}"
    if 0xD800 <= code <= 0xDFFF:
        return f"%u{code:04X}"
    return ch


def _pieces(name: str) -> list[str]:
    return [_piece(name, i) for i in range(len(name))]


def name_hash(name: str) -> str:
    """The 10 hex digits that identify ``name`` in its shortened component."""
    data = name.encode("utf-8", "surrogatepass")
    return hashlib.sha256(data).hexdigest()[:_HASH_DIGITS]


def _extension_start(name: str, pieces: list[str]) -> int:
    """Index of the extension's dot worth keeping when shortening, or ``len(name)``."""
    dot = name.rfind(".")
    if dot <= 0 or dot == len(name) - 1:
        return len(name)
    if _utf8_len("".join(pieces[dot:])) > _MAX_EXT_BYTES:
        return len(name)
    return dot


def _shorten(name: str, pieces: list[str]) -> str:
    """Prefix + marker + short extension, at most NAME_MAX bytes, cut between pieces."""
    ext_at = _extension_start(name, pieces)
    ext = "".join(pieces[ext_at:])
    budget = NAME_MAX - _MARKER_LEN - _utf8_len(ext)
    prefix: list[str] = []
    for piece in pieces[:ext_at]:
        budget -= _utf8_len(piece)
        if budget < 0:
            break
        prefix.append(piece)
    return "".join(prefix) + "%~" + name_hash(name) + ext


def encode(name: str) -> str:
    """Turn any REDCap name into a valid path component (see the module doc)."""
    if name in _TOKENS:
        return _TOKENS[name]
    if _PLAIN_RE.fullmatch(name) and (len(name) <= NAME_MAX // 4 or _utf8_len(name) <= NAME_MAX):
        return name  # the common case, taken for every entry of every listing: no piece would differ
    pieces = _pieces(name)
    text = "".join(pieces)
    if text in _TOKEN_NAMES:
        # The name literally spells a token: escape its leading '%'.
        text = "%25" + text[1:]
        pieces = ["%25"] + pieces[1:]
    if _utf8_len(text) > NAME_MAX:
        return _shorten(name, pieces)
    return text


def _unescape(match: re.Match[str]) -> str:
    code = match.group("code") or match.group("sur")
    return chr(int(code, 16))


def decode(component: str) -> str:
    """Turn a component back into the name it stands for.

    Never fails: unknown ``%`` sequences and lone surrogates (from a path that
    was not valid UTF-8) stay literal. A shortened component decodes to its
    literal text; use :class:`Resolver` to find the real name.
    """
    if "%" not in component:
        return component  # no escape and no token (every token starts with %)
    if component in _TOKEN_NAMES:
        return _TOKEN_NAMES[component]
    return _ESCAPE_RE.sub(_unescape, component)


def is_shortened(component: str) -> bool:
    """Whether the component is the shortened form of a name over 255 bytes."""
    return _MARKER_RE.search(component) is not None


def is_valid_component(component: str) -> bool:
    """Whether ``component`` can be a name on this mount.

    Valid: not empty, ``.`` or ``..``; no ``/`` or NUL; valid UTF-8 (no lone
    surrogates); at most 255 UTF-8 bytes. Every :func:`encode` result is valid.
    """
    if component in ("", ".", "..") or "/" in component or "\0" in component:
        return False
    try:
        size = len(component.encode("utf-8"))
    except UnicodeEncodeError:
        return False
    return size <= NAME_MAX


def needs_escape(name: str) -> bool:
    """Whether ``name`` is one REDCap cannot be given back as typed: a token name (empty, ``.``,
    ``..``) or one with a control character, DEL or a lone surrogate (bytes that were not UTF-8).

    Such names can be listed (REDCap may hold them) but are never created
    through the mount (``fs/rules.py``): REDCap would change, refuse or
    mis-store them (a NUL ends a C string in PHP). ``/`` is not among them:
    a record may hold one, and for a file REDCap's own rule refuses it
    (``redcapnames.stored_name``).
    """
    if name in _TOKENS:
        return True
    return any(ord(ch) < 0x20 or ch == "\x7f" or 0xD800 <= ord(ch) <= 0xDFFF for ch in name)


def is_canonical(component: str) -> bool:
    """Whether a user-typed component names itself: ``encode(decode(c)) == c``.

    A file created under a non-canonical name (``%25x``, a shortened form)
    would be listed under a different name afterwards; the filesystem should
    refuse such creates rather than let the file seem to vanish.
    """
    if not is_valid_component(component) or is_shortened(component):
        return False
    return encode(decode(component)) == component


class Resolver:
    """The components of one directory, mapped back to the real names.

    Lookups are by exact component: the filesystem lists ``encode(name)`` for
    every child, so a component names a child only if it equals one of those.
    This is also what makes shortened components reversible. Non-canonical
    aliases (``%25x`` for ``%x``) are deliberately not resolved: one name, one
    component, so ``ls`` and ``stat`` always agree.
    """

    def __init__(self, names: Iterable[str]) -> None:
        self._by_component: dict[str, str] = {}
        for name in names:
            component = encode(name)
            kept = self._by_component.setdefault(component, name)
            if kept != name:
                # Needs two names over 255 bytes with the same prefix, extension and
                # 40-bit hash: not expected in practice, but never silently merged.
                log.warning("names %r and %r share the component %r; only the first is shown",
                            kept, name, component)

    def resolve(self, component: str) -> str | None:
        """The real name listed as ``component``, or None."""
        return self._by_component.get(component)

    def components(self) -> list[str]:
        """The directory listing, in the order the names were given."""
        return list(self._by_component)

    def __contains__(self, component: object) -> bool:
        return component in self._by_component

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_component)

    def __len__(self) -> int:
        return len(self._by_component)


# A record may be named like the File Repository's top-level folder: it is listed escaped (docs/names.md).
RESERVED_RECORD = ".repository"
_RESERVED_ESCAPED = "%2E" + RESERVED_RECORD[1:]


def encode_record(name: str) -> str:
    """:func:`encode` for a record name, with ``.repository`` written ``%2Erepository`` (and that name
    itself ``%252Erepository``), so the File Repository folder cannot hide a record."""
    if name == RESERVED_RECORD:
        return _RESERVED_ESCAPED
    if name == _RESERVED_ESCAPED:
        return "%25" + name[1:]
    return encode(name)


def decode_record(component: str) -> str:
    """The inverse of :func:`encode_record`."""
    return RESERVED_RECORD if component == _RESERVED_ESCAPED else decode(component)
