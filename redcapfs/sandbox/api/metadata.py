"""``content=metadata`` export and import, ``content=exportFieldNames`` (PyCap: ``metadata``, ``field_names``)."""

from __future__ import annotations

from ..config import TokenGrant
from ..metarows import METADATA_KEYS
from ..responses import ApiError, ApiResponse, rows_response
from . import messages as M
from .common import count_response, import_rows, in_production, save_structure
from .context import Context
from .request import ApiRequest


def export_metadata(ctx: Context, req: ApiRequest, grant: TokenGrant) -> ApiResponse:
    """Rows as stored; ``fields[]`` and ``forms[]`` select (a row matching either stays)."""
    rows = ctx.schema.structure.metadata
    fields, forms = req.array("fields"), req.array("forms")
    if fields or forms:
        rows = [r for r in rows if r["field_name"] in fields or r["form_name"] in forms]
    return rows_response(rows, req.format)


def import_metadata(ctx: Context, req: ApiRequest, grant: TokenGrant) -> ApiResponse:
    """The rows replace the data dictionary (development status only); instruments follow its forms."""
    ctx.write_guard(grant, M.CLEANUP_RECORDS)
    ctx.right_guard(grant, "design")
    if in_production(ctx):
        raise ApiError(400, M.METADATA_PRODUCTION)
    rows = [{k: str(r.get(k) or "") for k in METADATA_KEYS} for r in import_rows(req)]
    if not rows or any(not r["field_name"] or not r["form_name"] for r in rows):
        raise ApiError(400, M.BAD_DATA)
    labels = {i["instrument_name"]: i["instrument_label"] for i in ctx.schema.structure.instruments}
    forms: list[str] = []
    for row in rows:
        if row["form_name"] not in forms:
            forms.append(row["form_name"])
    instruments = [{"instrument_name": f, "instrument_label": labels.get(f, f.replace("_", " ").title())}
                   for f in forms]
    mapping = [m for m in ctx.schema.structure.form_event_mapping if m["form"] in forms]
    save_structure(ctx, metadata=rows, instruments=instruments, form_event_mapping=mapping)
    ctx.log(grant, "Manage/Design ", f"Upload data dictionary (API): {len(rows)} fields")
    return count_response(len(rows))


def export_field_names(ctx: Context, req: ApiRequest, grant: TokenGrant) -> ApiResponse:
    """One row per export column (checkbox options apart); file and descriptive fields have none here."""
    wanted = req.get("field") or ""
    if wanted and wanted not in ctx.schema.fields:
        raise ApiError(400, M.BAD_FIELD.format(field=wanted))
    rows = []
    for column, _form in ctx.schema.all_columns():
        original, _, choice = column.partition("___")
        if original not in ctx.schema.fields:
            original, choice = column, ""
        if ctx.schema.is_file_field(original) or (wanted and original != wanted):
            continue
        rows.append({"original_field_name": original, "choice_value": choice, "export_field_name": column})
    return rows_response(rows, req.format)
