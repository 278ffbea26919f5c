"""``content=arm`` (PyCap: ``arms``)."""

from __future__ import annotations

from ..config import TokenGrant
from ..responses import ApiResponse, rows_response
from .context import Context
from .request import ApiRequest


def export_arms(ctx: Context, req: ApiRequest, grant: TokenGrant) -> ApiResponse:
    """Arms as loaded, ``arms[]`` selecting by number; a classic project answers 400."""
    ctx.classic_guard("arm")
    wanted = req.array("arms")
    rows = [a for a in ctx.schema.structure.arms if not wanted or str(a["arm_num"]) in wanted]
    return rows_response(rows, req.format)
