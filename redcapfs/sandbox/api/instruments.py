"""``content=instrument`` and ``content=formEventMapping`` (PyCap: ``instruments``)."""

from __future__ import annotations

from ..config import TokenGrant
from ..responses import ApiResponse, rows_response
from .context import Context
from .request import ApiRequest


def export_instruments(ctx: Context, req: ApiRequest, grant: TokenGrant) -> ApiResponse:
    return rows_response(ctx.schema.structure.instruments, req.format)


def export_instrument_event_mappings(ctx: Context, req: ApiRequest, grant: TokenGrant) -> ApiResponse:
    """Which forms each event uses, ``arms[]`` selecting by arm; a classic project answers 400."""
    ctx.classic_guard("formEventMapping")
    wanted = req.array("arms")
    rows = [m for m in ctx.schema.structure.form_event_mapping if not wanted or str(m["arm_num"]) in wanted]
    return rows_response(rows, req.format)
