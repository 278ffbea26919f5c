"""The optional team and File Repository parts of a JSON project directory (see docs/project-formats.md).

::

    users.json                 content=user rows (any subset of keys; ``unique_role_name`` and
                               ``data_access_group`` assign a role and a DAG)
    userRoles.json             content=userRole rows
    dags.json                  content=dag rows (``data_access_group_name``, ``unique_group_name``)
    repository/manifest.json   list of {folder, name, path, mime}: File Repository documents,
                               ``folder`` a ``/``-separated folder path ("" = top level)
    log.json                   the project's log history, newest first

A record row's ``redcap_data_access_group`` puts the record in that DAG.
"""

from __future__ import annotations

import mimetypes
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

from .project import ProjectDef, RepositoryFile

Reader = Callable[[Path], list[dict[str, Any]]]


def _document(root: Path, rel: object, where: str) -> Path:
    if not isinstance(rel, str) or not rel:
        raise ValueError(f"{where}: 'path' must be a non-empty string")
    pure = PurePosixPath(rel)
    if pure.is_absolute() or ".." in pure.parts or "\\" in rel:
        raise ValueError(f"{where}: path {rel!r} must stay inside repository/")
    target = root.joinpath(*pure.parts)
    if not target.is_file():
        raise ValueError(f"{where}: {target} does not exist")
    return target


def load_team(root: Path, project: ProjectDef, _list: Reader) -> None:
    """Fill ``project``'s users, roles, DAGs, record DAGs, repository and log from ``root``.

    ``_list`` is ``jsondir``'s strict reader of a file of objects (absent: no rows).
    """
    project.users = _list(root / "users.json")
    for i, user in enumerate(project.users):
        if not isinstance(user.get("username"), str) or not user["username"]:
            raise ValueError(f"{root / 'users.json'}: entry {i}: 'username' is required")
    project.roles = _list(root / "userRoles.json")
    project.dags = _list(root / "dags.json")
    rid = project.record_id_field
    for row in project.records:
        dag = row.pop("redcap_data_access_group", "") or ""
        if dag:
            project.record_dags[str(row.get(rid))] = str(dag)
    manifest = root / "repository" / "manifest.json"
    for i, entry in enumerate(_list(manifest)):
        where = f"{manifest}: entry {i}"
        source = _document(root / "repository", entry.get("path"), where)
        name = str(entry.get("name") or source.name)
        project.repository.append(RepositoryFile(
            name, str(source), str(entry.get("folder") or ""),
            str(entry.get("mime") or mimetypes.guess_type(name)[0] or "application/octet-stream")))
    project.log = _list(root / "log.json")
