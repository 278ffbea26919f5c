"""Helpers the import/delete handlers of every area share: the ``data`` rows and REDCap's count answer."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from ..responses import ApiError, ApiResponse, text_response
from ..schema import Schema, Structure
from ..store import STRUCTURE_KEYS
from . import messages as M
from .context import Context
from .request import ApiRequest


def import_rows(req: ApiRequest) -> list[dict[str, Any]]:
    """The ``data`` param as rows: json (a list or one object) or csv, by ``format`` (REDCap's default: xml)."""
    data = req.get("data")
    if data is None:
        raise ApiError(400, M.NO_DATA)
    fmt = (req.get("format") or "xml").lower()
    try:
        if fmt == "csv":
            return list(csv.DictReader(io.StringIO(data)))
        if fmt == "json":
            rows = json.loads(data)
            rows = [rows] if isinstance(rows, dict) else rows
            if isinstance(rows, list) and all(isinstance(r, dict) for r in rows):
                return rows
    except (ValueError, csv.Error):
        pass
    if fmt not in ("csv", "json"):
        raise ApiError(400, M.IMPORT_FORMATS)
    raise ApiError(400, M.BAD_DATA)


def count_response(n: int) -> ApiResponse:
    """Design, user and DAG imports and deletes answer the bare count in every format (PyCap reads an int)."""
    return text_response(str(n))


def save_structure(ctx: Context, **tables: Any) -> None:
    """Replace structure tables (``arms=[...]``...) and re-index the schema, under the store lock."""
    with ctx.store.transaction() as db:
        for key, rows in tables.items():
            assert key in STRUCTURE_KEYS, key
            db.execute("INSERT OR REPLACE INTO kv VALUES (?, ?)", (key, json.dumps(rows)))
        current: dict[str, Any] = {k: ctx.store.get_kv(k) for k in STRUCTURE_KEYS}
        ctx.store.schema = Schema(Structure(**current))


def in_production(ctx: Context) -> bool:
    return bool(int(ctx.schema.structure.info.get("in_production", 0) or 0))


def dispatch(actions: dict[str, Any]) -> Any:
    """A handler choosing by ``action``; without one, a ``data`` param means import (as REDCap reads it)."""

    def handle(ctx: Context, req: ApiRequest, grant: Any) -> ApiResponse:
        action = req.get("action") or ("import" if req.has("data") else "export")
        handler = actions.get(action)
        if handler is None:
            raise ApiError(400, M.BAD_ACTION)
        return handler(ctx, req, grant)

    return handle
