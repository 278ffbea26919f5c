"""``content=metadata`` (PyCap: ``metadata``): the data dictionary rows as loaded."""

from __future__ import annotations

from ..config import TokenGrant
from ..responses import ApiResponse, rows_response
from .context import Context
from .request import ApiRequest


def export_metadata(ctx: Context, req: ApiRequest, grant: TokenGrant) -> ApiResponse:
    """Rows as stored; ``fields[]`` and ``forms[]`` select (a row matching either stays)."""
    rows = ctx.schema.structure.metadata
    fields, forms = req.array("fields"), req.array("forms")
    if fields or forms:
        rows = [r for r in rows if r["field_name"] in fields or r["form_name"] in forms]
    return rows_response(rows, req.format)
