"""Imports and deletes of the project design: arms, events, form-event mappings, repeating setup, metadata.

REDCap's rules (see docs/sandbox.md, "Project design"): these need the Project
Design and Setup right; arms and events cannot be changed in production;
``override=1`` replaces every arm (or event) with the ones imported; deleting
an arm deletes its events, deleting an event deletes its form mappings.
"""

from __future__ import annotations

import re
from typing import Any

from ..config import TokenGrant
from ..responses import ApiError, ApiResponse
from . import messages as M
from .common import count_response, import_rows, in_production, save_structure
from .context import Context
from .request import ApiRequest

DESIGN = "Manage/Design "


def _guard(ctx: Context, req: ApiRequest, grant: TokenGrant, what: str, production_ok: bool = False) -> None:
    ctx.write_guard(grant, M.CLEANUP_RECORDS)
    ctx.right_guard(grant, "design")
    if not production_ok and in_production(ctx):
        raise ApiError(400, M.PRODUCTION.format(what=what))


def import_arms(ctx: Context, req: ApiRequest, grant: TokenGrant) -> ApiResponse:
    ctx.classic_guard("arm")
    _guard(ctx, req, grant, "arms")
    rows = import_rows(req)
    arms = [] if req.get("override") == "1" else list(ctx.schema.structure.arms)
    for row in rows:
        num = int(row.get("arm_num") or 0)
        if num < 1:
            raise ApiError(400, M.BAD_ARM.format(arm=row.get("arm_num")))
        arms = [a for a in arms if int(a["arm_num"]) != num] + [{"arm_num": num, "name": str(row.get("name", ""))}]
    arms.sort(key=lambda a: int(a["arm_num"]))
    kept = {int(a["arm_num"]) for a in arms}
    events = [e for e in ctx.schema.structure.events if int(e["arm_num"]) in kept]
    save_structure(ctx, arms=arms, events=events, form_event_mapping=_mapping_for(ctx, events))
    ctx.log(grant, DESIGN, f"Create/update arms (API): {len(rows)}")
    return count_response(len(rows))


def delete_arms(ctx: Context, req: ApiRequest, grant: TokenGrant) -> ApiResponse:
    ctx.classic_guard("arm")
    _guard(ctx, req, grant, "arms")
    nums = {int(a) for a in req.array("arms") if a.strip().isdigit()}
    known = {int(a["arm_num"]) for a in ctx.schema.structure.arms}
    if not nums or not nums <= known:
        raise ApiError(400, M.BAD_ARM.format(arm=", ".join(str(n) for n in sorted(nums - known)) or "(none)"))
    arms = [a for a in ctx.schema.structure.arms if int(a["arm_num"]) not in nums]
    events = [e for e in ctx.schema.structure.events if int(e["arm_num"]) not in nums]
    save_structure(ctx, arms=arms, events=events, form_event_mapping=_mapping_for(ctx, events))
    ctx.log(grant, DESIGN, "Delete arms (API): " + ", ".join(str(n) for n in sorted(nums)))
    return count_response(len(nums))


def _mapping_for(ctx: Context, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    names = {e["unique_event_name"] for e in events}
    return [m for m in ctx.schema.structure.form_event_mapping if m["unique_event_name"] in names]


def unique_event_name(label: str, arm: int, taken: set[str]) -> str:
    """REDCap's unique event name: the label cleaned (18 characters), ``_arm_N``, then ``b``, ``c``… if taken."""
    base = re.sub(r"[^a-z0-9]+", "_", label.lower()).strip("_")[:18].strip("_") or "event"
    name = f"{base}_arm_{arm}"
    suffix = ord("b")
    while name in taken:
        name = f"{base}_arm_{arm}{chr(suffix)}"
        suffix += 1
    return name


def import_events(ctx: Context, req: ApiRequest, grant: TokenGrant) -> ApiResponse:
    ctx.classic_guard("event")
    _guard(ctx, req, grant, "events")
    rows = import_rows(req)
    events = [] if req.get("override") == "1" else [dict(e) for e in ctx.schema.structure.events]
    arms = {int(a["arm_num"]) for a in ctx.schema.structure.arms}
    next_id = max([int(e.get("event_id") or 0) for e in ctx.schema.structure.events] + [0]) + 1
    for row in rows:
        arm = int(row.get("arm_num") or 0)
        if arm not in arms:
            raise ApiError(400, M.BAD_ARM.format(arm=row.get("arm_num")))
        given = str(row.get("unique_event_name") or "")
        current = next((e for e in events if e["unique_event_name"] == given), None) if given else None
        if current is not None:
            current.update(event_name=str(row.get("event_name", current["event_name"])), arm_num=arm)
            continue
        name = unique_event_name(str(row.get("event_name", "")), arm, {e["unique_event_name"] for e in events})
        events.append({"event_name": str(row.get("event_name", "")), "arm_num": arm, "unique_event_name": name,
                       "custom_event_label": str(row.get("custom_event_label") or ""), "event_id": next_id})
        next_id += 1
    save_structure(ctx, events=events, form_event_mapping=_mapping_for(ctx, events))
    ctx.log(grant, DESIGN, f"Create/update events (API): {len(rows)}")
    return count_response(len(rows))


def delete_events(ctx: Context, req: ApiRequest, grant: TokenGrant) -> ApiResponse:
    ctx.classic_guard("event")
    _guard(ctx, req, grant, "events")
    names = set(req.array("events"))
    known = {e["unique_event_name"] for e in ctx.schema.structure.events}
    if not names or not names <= known:
        raise ApiError(400, M.BAD_EVENTS.format(events=", ".join(sorted(names - known)) or "(none)"))
    events = [e for e in ctx.schema.structure.events if e["unique_event_name"] not in names]
    save_structure(ctx, events=events, form_event_mapping=_mapping_for(ctx, events))
    ctx.log(grant, DESIGN, "Delete events (API): " + ", ".join(sorted(names)))
    return count_response(len(names))


def import_mappings(ctx: Context, req: ApiRequest, grant: TokenGrant) -> ApiResponse:
    """The imported rows replace the mappings of every arm they name (REDCap: "designates" forms)."""
    ctx.classic_guard("formEventMapping")
    _guard(ctx, req, grant, "form-event mappings", production_ok=True)
    rows = import_rows(req)
    events = {e["unique_event_name"]: int(e["arm_num"]) for e in ctx.schema.structure.events}
    arms = set()
    new = []
    for row in rows:
        event, form = str(row.get("unique_event_name", "")), str(row.get("form", ""))
        if event not in events:
            raise ApiError(400, M.BAD_EVENTS.format(events=event))
        if form not in ctx.schema.forms:
            raise ApiError(400, M.BAD_FORM.format(form=form))
        arms.add(events[event])
        new.append({"arm_num": events[event], "unique_event_name": event, "form": form})
    kept = [m for m in ctx.schema.structure.form_event_mapping if int(m["arm_num"]) not in arms]
    save_structure(ctx, form_event_mapping=kept + new)
    ctx.log(grant, DESIGN, f"Designate instruments for events (API): {len(new)}")
    return count_response(len(new))


def import_repeating(ctx: Context, req: ApiRequest, grant: TokenGrant) -> ApiResponse:
    """The rows replace the whole repeating setup."""
    _guard(ctx, req, grant, "the repeating setup", production_ok=True)
    rows = [{"event_name": str(r.get("event_name") or ""), "form_name": str(r.get("form_name") or ""),
             "custom_form_label": str(r.get("custom_form_label") or "")} for r in import_rows(req)]
    if not ctx.schema.longitudinal:
        rows = [{k: v for k, v in r.items() if k != "event_name"} for r in rows]
    save_structure(ctx, repeating=rows)
    ctx.log(grant, DESIGN, f"Set up repeating instruments/events (API): {len(rows)}")
    return count_response(len(rows))
