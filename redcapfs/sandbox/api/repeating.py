"""``content=repeatingFormsEvents`` (PyCap: ``repeating``): ``[]`` when nothing repeats."""

from __future__ import annotations

from ..config import TokenGrant
from ..responses import ApiResponse, rows_response
from .context import Context
from .request import ApiRequest


def export_repeating_forms_events(ctx: Context, req: ApiRequest, grant: TokenGrant) -> ApiResponse:
    return rows_response(ctx.schema.structure.repeating, req.format)
