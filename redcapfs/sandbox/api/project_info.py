"""``content=project`` and ``content=version`` (PyCap: ``project_info``, ``version``)."""

from __future__ import annotations

from typing import Any

from ..config import TokenGrant
from ..responses import ApiResponse, json_response, rows_response, text_response
from .context import Context
from .request import ApiRequest

#: What REDCap answers for anything the loaded project does not say.
PROJECT_DEFAULTS: dict[str, Any] = {
    "project_id": 1,
    "project_title": "Sandbox project",
    "creation_time": "2024-01-01 00:00:00",
    "production_time": "",
    "in_production": 0,
    "project_language": "English",
    "purpose": 0,
    "purpose_other": "",
    "project_notes": "",
    "custom_record_label": "",
    "secondary_unique_field": "",
    "is_longitudinal": 0,
    "has_repeating_instruments_or_events": 0,
    "surveys_enabled": 0,
    "scheduling_enabled": 0,
    "record_autonumbering_enabled": 0,
    "randomization_enabled": 0,
    "ddp_enabled": 0,
    "project_irb_number": "",
    "project_grant_number": "",
    "project_pi_firstname": "",
    "project_pi_lastname": "",
    "display_today_now_button": 1,
    "missing_data_codes": "",
    "external_modules": "",
    "bypass_branching_erase_field_prompt": 0,
}


def export_project_info(ctx: Context, req: ApiRequest, grant: TokenGrant) -> ApiResponse:
    """The project row; the two structure flags always follow the loaded structure."""
    info = {**PROJECT_DEFAULTS, **ctx.schema.structure.info}
    info["is_longitudinal"] = int(ctx.schema.longitudinal)
    info["has_repeating_instruments_or_events"] = int(ctx.schema.has_repeating)
    if req.format in ("csv", "xml"):
        return rows_response([info], req.format, root="project")
    return json_response(info)


def export_version(ctx: Context, req: ApiRequest, grant: TokenGrant) -> ApiResponse:
    return text_response(ctx.config.redcap_version)
