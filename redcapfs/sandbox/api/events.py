"""``content=event`` (PyCap: ``events``)."""

from __future__ import annotations

from ..config import TokenGrant
from ..responses import ApiResponse, rows_response
from .context import Context
from .request import ApiRequest


def export_events(ctx: Context, req: ApiRequest, grant: TokenGrant) -> ApiResponse:
    """Events as loaded, ``arms[]`` selecting by arm; a classic project answers 400."""
    ctx.classic_guard("event")
    wanted = req.array("arms")
    rows = [e for e in ctx.schema.structure.events if not wanted or str(e["arm_num"]) in wanted]
    return rows_response(rows, req.format)
