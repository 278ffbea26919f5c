"""Answers as REDCap shapes them: error bodies by ``returnFormat``, data in json/csv/xml.

The exact bytes matter because clients (PyCap, REDCapR, ours) detect errors by
content type and by body shape (``{"error": …}``, ``ERROR: …``, ``<error>``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, BinaryIO
from xml.sax.saxutils import escape

JSON_TYPE = "application/json; charset=utf-8"
CSV_ERROR_TYPE = "text/html; charset=utf-8"
CSV_TYPE = "text/csv; charset=utf-8"
XML_TYPE = "text/xml"
XML_DATA_TYPE = "text/xml; charset=utf-8"
TEXT_TYPE = "text/html; charset=utf-8"


class ApiError(Exception):
    """A REDCap error answer: HTTP status and REDCap's message text."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class ApiResponse:
    """What a handler answers. ``stream`` (with ``length``) replaces ``body`` for file downloads."""

    status: int = 200
    content_type: str | None = None
    body: bytes = b""
    stream: BinaryIO | None = None
    length: int = 0
    headers: list[tuple[str, str]] = field(default_factory=list)

    @property
    def size(self) -> int:
        return self.length if self.stream is not None else len(self.body)

    def close(self) -> None:
        if self.stream is not None:
            self.stream.close()


def error_response(status: int, message: str, return_format: str) -> ApiResponse:
    """An error body in the caller's ``returnFormat`` (xml when absent or unknown)."""
    if return_format == "json":
        body = json.dumps({"error": message}).encode()
        return ApiResponse(status, JSON_TYPE, body)
    if return_format == "csv":
        return ApiResponse(status, CSV_ERROR_TYPE, f"ERROR: {message}".encode())
    xml = f'<?xml version="1.0" encoding="UTF-8" ?><hash><error>{escape(message)}</error></hash>'
    return ApiResponse(status, XML_TYPE, xml.encode())


def text_response(text: str) -> ApiResponse:
    return ApiResponse(200, TEXT_TYPE, text.encode())


def json_response(value: Any) -> ApiResponse:
    return ApiResponse(200, JSON_TYPE, json.dumps(value, ensure_ascii=False).encode())


def rows_response(
    rows: Sequence[dict[str, Any]], fmt: str, header: Sequence[str] | None = None, root: str = "records"
) -> ApiResponse:
    """A list of flat rows as json (default), csv or xml."""
    if fmt == "csv":
        return ApiResponse(200, CSV_TYPE, to_csv(rows, header).encode())
    if fmt == "xml":
        return ApiResponse(200, XML_DATA_TYPE, to_xml(rows, root).encode())
    return json_response(list(rows))


def to_csv(rows: Sequence[dict[str, Any]], header: Sequence[str] | None = None) -> str:
    cols = list(header) if header is not None else (list(rows[0].keys()) if rows else [])
    lines = [",".join(csv_cell(c) for c in cols)]
    for row in rows:
        lines.append(",".join(csv_cell(row.get(c)) for c in cols))
    return "".join(line + "\n" for line in lines)


def csv_cell(value: Any) -> str:
    """REDCap's CSV quoting: a value with a space, comma, quote or line break is quoted (PyCap's doctest
    shows ``1,"Event 1",,1,Yes``), quotes doubled; everything else bare."""
    text = "" if value is None else str(value)
    if any(c in text for c in ' ,"\n\r'):
        return '"' + text.replace('"', '""') + '"'
    return text


def to_xml(rows: Sequence[dict[str, Any]], root: str) -> str:
    items = []
    for row in rows:
        cells = "".join(f"<{k}><![CDATA[{v}]]></{k}>" for k, v in row.items())
        items.append(f"<item>{cells}</item>")
    return f'<?xml version="1.0" encoding="UTF-8" ?>\n<{root}>\n' + "\n".join(items) + f"\n</{root}>"
