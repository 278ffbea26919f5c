"""``content=user``, ``userRole``, ``userRoleMapping`` (PyCap: ``users``, ``user_roles``).

Export needs API Export and the User Rights privilege (REDCap's API
documentation of Export Users and Export User Roles: "API Export privileges
*and* User Rights privileges (Full Access or Read Only)"); import and delete
need API Import and the User Rights privilege. A user in a role has the role's rights; a user imported with only a
username gets no rights (every right 0, every instrument "no access").
"""

from __future__ import annotations

from typing import Any

from ..config import TokenGrant
from ..responses import ApiError, ApiResponse, rows_response
from ..team import PERSON_KEYS, RIGHT_KEYS, USER_DEFAULTS, Team
from . import messages as M
from .common import count_response, dispatch, import_rows
from .context import Context
from .request import ApiRequest

USER = "User "  # REDCap's ``action`` for user changes is not shown by public sources: see docs/sandbox.md


def _admin(ctx: Context, grant: TokenGrant) -> None:
    ctx.write_guard(grant, M.CLEANUP_RECORDS)
    ctx.right_guard(grant, "user_rights")


def _rights_of(row: dict[str, Any], forms: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in RIGHT_KEYS:
        if key in row and key not in ("forms", "forms_export"):
            out[key] = int(str(row[key] or 0)) if str(row[key] or 0).isdigit() else 0
    for key in ("forms", "forms_export"):
        if isinstance(row.get(key), dict):
            out[key] = {f: int(v) for f, v in row[key].items() if f in forms}
    return out


def _reader(ctx: Context, grant: TokenGrant) -> None:
    if not ctx.caller(grant).api_export:
        raise ApiError(403, M.NO_EXPORT)
    ctx.right_guard(grant, "user_rights")


def export_users(ctx: Context, req: ApiRequest, grant: TokenGrant) -> ApiResponse:
    """Every project user with their rights (a role's rights for a user in a role)."""
    _reader(ctx, grant)
    return rows_response(ctx.team.users(), req.format)


def import_users(ctx: Context, req: ApiRequest, grant: TokenGrant) -> ApiResponse:
    _admin(ctx, grant)
    rows = import_rows(req)
    forms = ctx.schema.forms
    with ctx.team.change() as doc:
        for row in rows:
            name = str(row.get("username") or "").strip()
            if not name:
                raise ApiError(400, M.BAD_DATA)
            current = doc["users"].get(name) or {"username": name, "forms": {f: 0 for f in forms},
                                                 "forms_export": {f: 0 for f in forms}}
            current.update({k: str(row[k]) for k in PERSON_KEYS if k in row and k != "data_access_group_id"})
            current.update(_rights_of(row, forms))
            doc["users"][name] = current
    for row in rows:
        ctx.log(grant, USER, f"Add/edit user (API) {row['username']}", kind="user")
    return count_response(len(rows))


def delete_users(ctx: Context, req: ApiRequest, grant: TokenGrant) -> ApiResponse:
    _admin(ctx, grant)
    names = req.array("users")
    with ctx.team.change() as doc:
        missing = [n for n in names if n not in doc["users"]]
        if missing or not names:
            raise ApiError(400, M.BAD_USERS.format(users=", ".join(missing)))
        for name in names:
            del doc["users"][name]
            doc["user_roles"].pop(name, None)
    for name in names:
        ctx.log(grant, USER, f"Delete user (API) {name}", kind="user")
    return count_response(len(names))


def _role_row(role: dict[str, Any], forms: list[str]) -> dict[str, Any]:
    """A role as REDCap exports it: scalar rights as strings, instrument rights as ints."""
    out: dict[str, Any] = {"unique_role_name": role["unique_role_name"], "role_label": role.get("role_label", "")}
    for key in RIGHT_KEYS:
        if key in ("forms", "forms_export"):
            given = role.get(key) or {}
            out[key] = {f: int(given.get(f, 0)) for f in forms}
        else:
            out[key] = str(role.get(key, USER_DEFAULTS[key]))
    return out


def export_roles(ctx: Context, req: ApiRequest, grant: TokenGrant) -> ApiResponse:
    _reader(ctx, grant)
    roles = ctx.team.load()["roles"]
    return rows_response([_role_row(r, ctx.schema.forms) for r in roles], req.format)


def import_roles(ctx: Context, req: ApiRequest, grant: TokenGrant) -> ApiResponse:
    """A row naming a known ``unique_role_name`` updates that role; any other row creates one."""
    _admin(ctx, grant)
    rows = import_rows(req)
    with ctx.team.change() as doc:
        for row in rows:
            known = next((r for r in doc["roles"] if r["unique_role_name"] == row.get("unique_role_name")), None)
            if known is None:
                known = {"unique_role_name": Team.new_role_name()}
                doc["roles"].append(known)
            if "role_label" in row:
                known["role_label"] = str(row["role_label"])
            known.update(_rights_of(row, ctx.schema.forms))
    ctx.log(grant, USER, f"Add/edit user roles (API): {len(rows)}", kind="user")
    return count_response(len(rows))


def delete_roles(ctx: Context, req: ApiRequest, grant: TokenGrant) -> ApiResponse:
    """REDCap refuses to delete a role that still has users."""
    _admin(ctx, grant)
    names = req.array("roles")
    with ctx.team.change() as doc:
        known = {r["unique_role_name"] for r in doc["roles"]}
        if not names or not set(names) <= known:
            raise ApiError(400, M.BAD_ROLES.format(roles=", ".join(sorted(set(names) - known))))
        if any(doc["user_roles"].get(u) in names for u in doc["users"]):
            raise ApiError(400, M.ROLE_HAS_USERS)
        doc["roles"] = [r for r in doc["roles"] if r["unique_role_name"] not in names]
    ctx.log(grant, USER, "Delete user roles (API): " + ", ".join(names), kind="user")
    return count_response(len(names))


def export_role_mapping(ctx: Context, req: ApiRequest, grant: TokenGrant) -> ApiResponse:
    doc = ctx.team.load()
    rows = [{"username": u, "unique_role_name": doc["user_roles"].get(u, ""),
             "data_access_group": doc["users"][u].get("data_access_group", "")} for u in sorted(doc["users"])]
    return rows_response(rows, req.format)


def import_role_mapping(ctx: Context, req: ApiRequest, grant: TokenGrant) -> ApiResponse:
    _admin(ctx, grant)
    rows = import_rows(req)
    with ctx.team.change() as doc:
        roles = {r["unique_role_name"] for r in doc["roles"]}
        for row in rows:
            user, role = str(row.get("username") or ""), str(row.get("unique_role_name") or "")
            if user not in doc["users"]:
                raise ApiError(400, M.BAD_USERS.format(users=user))
            if role and role not in roles:
                raise ApiError(400, M.BAD_ROLES.format(roles=role))
            if role:
                doc["user_roles"][user] = role
            else:
                doc["user_roles"].pop(user, None)
    ctx.log(grant, USER, f"Assign users to roles (API): {len(rows)}", kind="user")
    return count_response(len(rows))


user = dispatch({"export": export_users, "import": import_users, "delete": delete_users})
user_role = dispatch({"export": export_roles, "import": import_roles, "delete": delete_roles})
user_role_mapping = dispatch({"export": export_role_mapping, "import": import_role_mapping})
