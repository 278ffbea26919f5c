"""The raw input of a project XML file: the attribute-newline filter, the Study tree, base64 to disk.

Low-level pieces of ``odm`` (the reader) and ``odm_study`` (the Study part),
kept apart so each module stays one job: these know bytes and elements, not
REDCap's meaning.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

REDCAP_NS_MARK = "projectredcap.org"


class OdmError(ValueError):
    """Malformed project XML; the message names the file and, where known, the line."""



# ------------------------------------------------------------------ the input


class AttributeNewlineEscaper:
    """Byte filter: inside quoted attribute values, turn CR/LF/TAB into character references.

    XML normalises those characters in attribute values to spaces, which would
    lose the line breaks of REDCap's ``Value="line 1\\nline 2"``. The filter tracks
    just enough syntax (tags, quotes, CDATA, comments) to touch nothing else, and
    works on bytes so multi-byte UTF-8 is never split.
    """

    REPLACE: ClassVar[dict[bytes, bytes]] = {b"\n": b"&#10;", b"\r": b"&#13;", b"\t": b"&#9;"}

    def __init__(self) -> None:
        self.state = "text"
        self.quote = b""
        self.held = b""

    def feed(self, data: bytes, final: bool = False) -> bytes:
        data = self.held + data
        self.held = b""
        out: list[bytes] = []
        pos = 0
        while pos < len(data):
            step = getattr(self, "_" + self.state)(data, pos, out, final)
            if step is None:  # needs more input
                self.held = data[pos:]
                break
            pos = step
        return b"".join(out)

    def _text(self, data: bytes, pos: int, out: list[bytes], final: bool) -> int | None:
        lt = data.find(b"<", pos)
        if lt < 0:
            out.append(data[pos:])
            return len(data)
        out.append(data[pos:lt])
        head = data[lt:lt + 9]
        if len(head) < 9 and not final and (b"<![CDATA["[: len(head)] == head or b"<!--"[: len(head)] == head):
            return None if lt == pos else lt
        if head.startswith(b"<![CDATA["):
            self.state = "cdata"
            out.append(head)
            return lt + 9
        if head.startswith(b"<!--"):
            self.state = "comment"
            out.append(b"<!--")
            return lt + 4
        self.state = "tag"
        out.append(b"<")
        return lt + 1

    def _tag(self, data: bytes, pos: int, out: list[bytes], final: bool) -> int | None:
        ends = [i for i in (data.find(b">", pos), data.find(b'"', pos), data.find(b"'", pos)) if i >= 0]
        if not ends:
            out.append(data[pos:])
            return len(data)
        stop = min(ends)
        out.append(data[pos:stop + 1])
        char = data[stop:stop + 1]
        if char == b">":
            self.state = "text"
        else:
            self.state, self.quote = "quoted", char
        return stop + 1

    def _quoted(self, data: bytes, pos: int, out: list[bytes], final: bool) -> int | None:
        stop = data.find(self.quote, pos)
        chunk = data[pos:] if stop < 0 else data[pos:stop]
        if stop < 0 and chunk.endswith(b"\r") and not final:
            chunk = chunk[:-1]  # keep a CR to pair it with a following LF
            out.append(self._escape(chunk))
            return None if not chunk else pos + len(chunk)
        out.append(self._escape(chunk))
        if stop < 0:
            return len(data)
        out.append(self.quote)
        self.state = "tag"
        return stop + 1

    def _escape(self, chunk: bytes) -> bytes:
        chunk = chunk.replace(b"\r\n", b"\n")
        for raw, ref in self.REPLACE.items():
            chunk = chunk.replace(raw, ref)
        return chunk

    def _skip_until(self, marker: bytes, data: bytes, pos: int, out: list[bytes], final: bool) -> int | None:
        stop = data.find(marker, pos)
        if stop < 0:
            keep = 0 if final else len(marker) - 1
            cut = max(pos, len(data) - keep)
            out.append(data[pos:cut])
            return None if cut == pos and not final else (cut if cut < len(data) else len(data))
        out.append(data[pos:stop + len(marker)])
        self.state = "text"
        return stop + len(marker)

    def _cdata(self, data: bytes, pos: int, out: list[bytes], final: bool) -> int | None:
        return self._skip_until(b"]]>", data, pos, out, final)

    def _comment(self, data: bytes, pos: int, out: list[bytes], final: bool) -> int | None:
        return self._skip_until(b"-->", data, pos, out, final)


# ------------------------------------------------------------ the Study tree


@dataclass
class Node:
    """An element of the (small) ``Study`` part: tag, attributes, children, text."""

    tag: str
    attrib: dict[str, str]
    children: list[Node] = field(default_factory=list)
    parts: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "".join(self.parts)

    def find(self, tag: str) -> Node | None:
        return next((c for c in self.children if c.tag == tag), None)

    def findall(self, tag: str) -> list[Node]:
        return [c for c in self.children if c.tag == tag]

    def iter(self, tag: str) -> Iterator[Node]:
        for child in self.children:
            if child.tag == tag:
                yield child
            yield from child.iter(tag)

    def get(self, key: str, default: str = "") -> str:
        return self.attrib.get(key, default)


def local_name(name: str) -> str:
    """``"URI local"`` (expat namespace form) → ``redcap:local`` for REDCap's namespace, else ``local``."""
    uri, _, local = name.rpartition(" ")
    if uri and REDCAP_NS_MARK in uri:
        return "redcap:" + local
    return local


# ------------------------------------------------------------ base64 to disk


class Base64Sink:
    """Decodes base64 text arriving in pieces into a file, 4 characters at a time."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fh = open(path, "wb")  # noqa: SIM115  (closed by close() or abort(), across many writes)
        self.pending = ""
        self.padded = False

    def write(self, text: str) -> None:
        text = self.pending + "".join(text.split())
        cut = len(text) - len(text) % 4
        if cut:
            if self.padded:
                raise ValueError("data after base64 padding")
            block = text[:cut]
            self.padded = "=" in block
            self.fh.write(base64.b64decode(block, validate=True))
        self.pending = text[cut:]

    def close(self) -> None:
        self.fh.close()
        if self.pending:
            raise ValueError("base64 data is truncated (length not a multiple of 4)")

    def abort(self) -> None:
        self.fh.close()

