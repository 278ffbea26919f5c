"""``content=dag`` and ``content=userDagMapping`` (PyCap: ``data_access_groups``).

A user in a DAG sees and changes only the records of that DAG (record and
file calls, see ``records`` and ``files``); a record created by such a user
joins their DAG. Changing DAGs needs the Data Access Groups privilege.
"""

from __future__ import annotations

from ..config import TokenGrant
from ..responses import ApiError, ApiResponse, rows_response, text_response
from ..team import unique_group_name
from . import messages as M
from .common import count_response, dispatch, import_rows
from .context import Context
from .request import ApiRequest

DAG_ACTION = "Manage/Design "


def _admin(ctx: Context, grant: TokenGrant) -> None:
    ctx.write_guard(grant, M.CLEANUP_RECORDS)
    ctx.right_guard(grant, "data_access_groups")


def export_dags(ctx: Context, req: ApiRequest, grant: TokenGrant) -> ApiResponse:
    return rows_response(ctx.team.load()["dags"], req.format)


def import_dags(ctx: Context, req: ApiRequest, grant: TokenGrant) -> ApiResponse:
    """A row with a known ``unique_group_name`` renames that DAG; a blank one creates a DAG."""
    _admin(ctx, grant)
    rows = import_rows(req)
    with ctx.team.change() as doc:
        for row in rows:
            label = str(row.get("data_access_group_name") or "").strip()
            given = str(row.get("unique_group_name") or "").strip()
            known = next((d for d in doc["dags"] if d["unique_group_name"] == given), None) if given else None
            if not label or (given and known is None):
                raise ApiError(400, M.BAD_DAGS.format(dags=given or "(no name)"))
            if known is not None:
                known["data_access_group_name"] = label
                continue
            name = unique_group_name(label, {d["unique_group_name"] for d in doc["dags"]})
            doc["dags"].append({"data_access_group_name": label, "unique_group_name": name,
                                "data_access_group_id": doc["next_dag_id"]})
            doc["next_dag_id"] += 1
    ctx.log(grant, DAG_ACTION, f"Create/rename data access groups (API): {len(rows)}")
    return count_response(len(rows))


def delete_dags(ctx: Context, req: ApiRequest, grant: TokenGrant) -> ApiResponse:
    """Members and records of a deleted DAG are left in no DAG."""
    _admin(ctx, grant)
    names = req.array("dags")
    with ctx.team.change() as doc:
        known = {d["unique_group_name"] for d in doc["dags"]}
        if not names or not set(names) <= known:
            raise ApiError(400, M.BAD_DAGS.format(dags=", ".join(sorted(set(names) - known))))
        doc["dags"] = [d for d in doc["dags"] if d["unique_group_name"] not in names]
        for row in doc["users"].values():
            if row.get("data_access_group") in names:
                row["data_access_group"] = ""
        doc["record_dags"] = {r: d for r, d in doc["record_dags"].items() if d not in names}
    ctx.log(grant, DAG_ACTION, "Delete data access groups (API): " + ", ".join(names))
    return count_response(len(names))


def switch_dag(ctx: Context, req: ApiRequest, grant: TokenGrant) -> ApiResponse:
    """Move the caller into another DAG ("" = none); answers ``1`` as REDCap does."""
    dag = req.get("dag") or ""
    with ctx.team.change() as doc:
        if dag and dag not in {d["unique_group_name"] for d in doc["dags"]}:
            raise ApiError(400, M.BAD_DAGS.format(dags=dag))
        doc["users"][grant.username]["data_access_group"] = dag
    return text_response("1")


def export_mapping(ctx: Context, req: ApiRequest, grant: TokenGrant) -> ApiResponse:
    users = ctx.team.users()
    rows = [{"username": u["username"], "redcap_data_access_group": u["data_access_group"]} for u in users]
    return rows_response(rows, req.format)


def import_mapping(ctx: Context, req: ApiRequest, grant: TokenGrant) -> ApiResponse:
    _admin(ctx, grant)
    rows = import_rows(req)
    with ctx.team.change() as doc:
        known = {d["unique_group_name"] for d in doc["dags"]}
        for row in rows:
            user, dag = str(row.get("username") or ""), str(row.get("redcap_data_access_group") or "")
            if user not in doc["users"]:
                raise ApiError(400, M.BAD_USERS.format(users=user))
            if dag and dag not in known:
                raise ApiError(400, M.BAD_DAGS.format(dags=dag))
            doc["users"][user]["data_access_group"] = dag
    ctx.log(grant, DAG_ACTION, f"Assign users to data access groups (API): {len(rows)}")
    return count_response(len(rows))


dag = dispatch({"export": export_dags, "import": import_dags, "delete": delete_dags, "switch": switch_dag})
user_dag_mapping = dispatch({"export": export_mapping, "import": import_mapping})
