"""``content=fileRepository``: createFolder, list, export, import, delete (PyCap: ``file_repository``).

Needs the File Repository privilege. A folder may be restricted to one DAG
and/or one role (``dag_id`` / ``role_id`` at creation): users of another DAG
(or not in that role) neither see it nor reach it or its documents, and get
REDCap's "does not exist or else you do not have permission" answer. Users in
a DAG create folders restricted to their DAG. Each import is a new document,
also when the folder holds one of the same name.
"""

from __future__ import annotations

import mimetypes

from ...redcapnames import cleaned_name, php_basename
from ..config import TokenGrant
from ..repository_store import ROOT, Folder
from ..responses import ApiError, ApiResponse, rows_response
from . import messages as M
from .context import Context, by_action
from .request import ApiRequest
from .rights import Caller

EMPTY_OK = "text/html; charset=utf-8"
LIST_COLUMNS = ("folder_id", "doc_id", "name", "role", "dag")


def _caller(ctx: Context, grant: TokenGrant) -> Caller:
    return ctx.right_guard(grant, "file_repository")


def _role_of(ctx: Context, caller: Caller) -> str:
    return ctx.team.load()["user_roles"].get(caller.username, "")


def _may_see(ctx: Context, caller: Caller, folder: Folder) -> bool:
    if folder.dag and caller.dag and folder.dag != caller.dag:
        return False
    return not folder.role or folder.role == _role_of(ctx, caller)


def _folder_id(ctx: Context, req: ApiRequest, caller: Caller) -> int:
    """The ``folder_id`` param: the top level when absent; every folder on the way must be visible."""
    raw = (req.get("folder_id") or "").strip()
    if not raw:
        return ROOT
    folder_id = int(raw) if raw.isdigit() else -1
    current = folder_id
    while current != ROOT:
        folder = ctx.repository.folder(current)
        if folder is None or not _may_see(ctx, caller, folder):
            raise ApiError(400, M.REPO_FOLDER.format(folder=raw))
        current = folder.parent_id
    return folder_id


def _dag_name(ctx: Context, dag_id: str) -> str:
    if not dag_id:
        return ""
    for dag in ctx.team.load()["dags"]:
        if str(dag["data_access_group_id"]) == dag_id:
            return str(dag["unique_group_name"])
    raise ApiError(400, M.BAD_DAGS.format(dags=dag_id))


def create_folder(ctx: Context, req: ApiRequest, grant: TokenGrant) -> ApiResponse:
    ctx.write_guard(grant, M.CLEANUP)
    caller = _caller(ctx, grant)
    name = (req.get("name") or "").strip()
    if not name:
        raise ApiError(400, M.REPO_NO_NAME)
    parent = _folder_id(ctx, req, caller)
    dag = caller.dag or _dag_name(ctx, (req.get("dag_id") or "").strip())
    role = (req.get("role_id") or "").strip()
    if role and role not in {r["unique_role_name"] for r in ctx.team.load()["roles"]}:
        raise ApiError(400, M.BAD_ROLES.format(roles=role))
    folder_id = ctx.repository.create_folder(name[:150], parent, dag, role)
    ctx.log(grant, "Manage/Design ", f"Create folder (API) {name}")
    return rows_response([{"folder_id": folder_id}], req.format)


def list_folder(ctx: Context, req: ApiRequest, grant: TokenGrant) -> ApiResponse:
    """Folders first, then documents, each by name; no sizes or times (as REDCap).

    JSON rows are ``{folder_id, name}`` / ``{doc_id, name}`` (PyCap's doctest); CSV has the
    columns ``folder_id,doc_id,name,role,dag`` (REDCapR's ``file-repo-list-oneshot`` test).
    """
    caller = _caller(ctx, grant)
    folder_id = _folder_id(ctx, req, caller)
    folders = [f for f in ctx.repository.folders_in(folder_id) if _may_see(ctx, caller, f)]
    rows: list[dict[str, object]] = [{"folder_id": f.folder_id, "name": f.name} for f in folders]
    rows += [{"doc_id": d.doc_id, "name": d.name} for d in ctx.repository.docs_in(folder_id)]
    if req.format != "json":  # csv (REDCapR's test): every row has all five columns
        dag_ids = {d["unique_group_name"]: d["data_access_group_id"] for d in ctx.team.load()["dags"]}
        extra = {f.folder_id: {"role": f.role, "dag": dag_ids.get(f.dag, "")} for f in folders}
        rows = [{"folder_id": "", "doc_id": "", **r, "role": "", "dag": "",
                 **extra.get(int(str(r.get("folder_id") or 0)), {})} for r in rows]
        return rows_response(rows, req.format, header=LIST_COLUMNS)
    return rows_response(rows, req.format)


def _doc(ctx: Context, req: ApiRequest, caller: Caller) -> int:
    raw = (req.get("doc_id") or "").strip()
    doc_id = int(raw) if raw.isdigit() else -1
    folder = ctx.repository.doc_folder(doc_id)
    if folder is None:
        raise ApiError(400, M.REPO_DOC.format(doc=raw))
    current = folder
    while current != ROOT:
        found = ctx.repository.folder(current)
        if found is None or not _may_see(ctx, caller, found):
            raise ApiError(400, M.REPO_DOC.format(doc=raw))
        current = found.parent_id
    return doc_id


def export_doc(ctx: Context, req: ApiRequest, grant: TokenGrant) -> ApiResponse:
    caller = _caller(ctx, grant)
    opened = ctx.repository.open_doc(_doc(ctx, req, caller))
    if opened is None:
        raise ApiError(400, M.REPO_DOC.format(doc=req.get("doc_id")))
    doc, handle = opened
    ctx.log(grant, "Download file (API)", f"doc_id = {doc.doc_id}", kind="export")
    content_type = f'{doc.mime}; name="{doc.name}"' + (";charset=UTF-8" if ctx.config.charset_suffix else "")
    return ApiResponse(200, content_type, stream=handle, length=doc.size)


def import_doc(ctx: Context, req: ApiRequest, grant: TokenGrant) -> ApiResponse:
    ctx.write_guard(grant, M.CLEANUP)
    caller = _caller(ctx, grant)
    folder_id = _folder_id(ctx, req, caller)
    upload = req.upload
    if upload is None or not php_basename(upload.filename):
        raise ApiError(400, M.NO_VALID_FILE)
    if upload.too_large or upload.path is None:
        raise ApiError(400, M.TOO_LARGE.format(mb=ctx.config.max_upload_mb))
    name = cleaned_name(upload.filename)
    given = (upload.content_type or "").split(";")[0].strip()
    mime = given if given and given != "application/octet-stream" else (
        mimetypes.guess_type(name)[0] or "application/octet-stream")
    doc_id = ctx.repository.add_doc(folder_id, upload.path, name, mime)
    upload.path = None
    ctx.log(grant, "Upload file to File Repository (API)", f"doc_id = {doc_id}, name = '{name}'")
    return ApiResponse(200, EMPTY_OK, b"")


def delete_doc(ctx: Context, req: ApiRequest, grant: TokenGrant) -> ApiResponse:
    ctx.write_guard(grant, M.CLEANUP)
    caller = _caller(ctx, grant)
    doc_id = _doc(ctx, req, caller)
    ctx.repository.delete_doc(doc_id)
    ctx.log(grant, "Delete file from File Repository (API)", f"doc_id = {doc_id}")
    return ApiResponse(200, EMPTY_OK, b"")


file_repository = by_action({"createFolder": create_folder, "list": list_folder, "export": export_doc,
                             "import": import_doc, "delete": delete_doc})
