"""Users, user roles and Data Access Groups of the sandbox project, kept in the store's kv table.

Why one JSON document: these tables are small, change rarely and are always
read whole (every call resolves its token's user), so a single kv entry under
the store lock is simpler than more SQL tables and keeps ``store.py`` small.

Rights as REDCap stores them (the ``content=user`` export keys): ints 0/1 for
most, ``forms`` (instrument -> 0 no access, 1 view and edit, 2 read only, 3 edit
survey responses) and ``forms_export`` (instrument -> 0 no access, 1 full data
set, 2 de-identified, 3 remove identifier fields). A user in a role has the
role's rights (REDCap: "the user's privileges are determined by the role").
"""

from __future__ import annotations

import copy
import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the store imports this module (through ``extras``) to load a project
    from .store import Store

KV_KEY = "team"

#: ``content=user`` keys in REDCap's export order, with the value of a user imported with only a username.
USER_DEFAULTS: dict[str, Any] = {
    "username": "", "email": "", "firstname": "", "lastname": "", "expiration": "",
    "data_access_group": "", "data_access_group_id": "",
    "design": 0, "alerts": 0, "user_rights": 0, "data_access_groups": 0, "reports": 0,
    "stats_and_charts": 0, "manage_survey_participants": 0, "calendar": 0, "data_import_tool": 0,
    "data_comparison_tool": 0, "logging": 0, "email_logging": 0, "file_repository": 0,
    "data_quality_create": 0, "data_quality_execute": 0, "api_export": 0, "api_import": 0,
    "api_modules": 0, "mobile_app": 0, "mobile_app_download_data": 0, "record_create": 0,
    "record_rename": 0, "record_delete": 0, "lock_records_customization": 0, "lock_records": 0,
    "lock_records_all_forms": 0, "forms": {}, "forms_export": {},
}
#: Keys of ``USER_DEFAULTS`` that are rights (a role carries these; the rest belong to the person).
PERSON_KEYS = ("username", "email", "firstname", "lastname", "expiration", "data_access_group",
               "data_access_group_id")
RIGHT_KEYS = tuple(k for k in USER_DEFAULTS if k not in PERSON_KEYS)
FULL_RIGHTS = {k: 1 for k in RIGHT_KEYS if k not in ("forms", "forms_export")}


def _empty() -> dict[str, Any]:
    return {"users": {}, "roles": [], "dags": [], "record_dags": {}, "user_roles": {},
            "next_dag_id": 1, "next_user": 1}


class Team:
    """Read and change the project's users, roles and DAGs (thread-safe: the store lock)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def load(self) -> dict[str, Any]:
        with self.store.lock:
            return copy.deepcopy(self.store.get_kv(KV_KEY) or _empty())

    @contextmanager
    def change(self) -> Iterator[dict[str, Any]]:
        """The team document to edit in place; saved when the block ends without an error."""
        with self.store.lock:
            doc = self.load()
            yield doc
            self.store.set_kv(KV_KEY, doc)

    # ------------------------------------------------------------------ users

    def user(self, username: str) -> dict[str, Any] | None:
        """The user's effective row (role rights applied), or None when not a project user."""
        doc = self.load()
        row = doc["users"].get(username)
        return None if row is None else self._effective(doc, row)

    def users(self) -> list[dict[str, Any]]:
        doc = self.load()
        return [self._effective(doc, doc["users"][u]) for u in sorted(doc["users"])]

    def _effective(self, doc: dict[str, Any], row: dict[str, Any]) -> dict[str, Any]:
        out = {**USER_DEFAULTS, **row}
        role = self.role_of(doc, row["username"])
        if role is not None:
            out.update({k: _as_int(role.get(k, USER_DEFAULTS[k])) for k in RIGHT_KEYS})
        dag_name = row.get("data_access_group") or ""
        dag_row = next((d for d in doc["dags"] if d["unique_group_name"] == dag_name), None)
        out["data_access_group"] = dag_name if dag_row else ""
        out["data_access_group_id"] = dag_row["data_access_group_id"] if dag_row else ""
        return out

    @staticmethod
    def role_of(doc: dict[str, Any], username: str) -> dict[str, Any] | None:
        name = doc["user_roles"].get(username) or ""
        return next((r for r in doc["roles"] if r["unique_role_name"] == name), None)

    def ensure_user(self, username: str, rights: dict[str, Any], forms: list[str]) -> None:
        """Add ``username`` with ``rights`` (all instruments) unless the project has (or had) them.

        A user once seeded and then deleted through the API stays deleted: their token is refused.
        """
        with self.change() as doc:
            seeded = doc.setdefault("seeded", [])
            if username not in doc["users"] and username not in seeded:
                seeded.append(username)
                level = 1 if rights.get("api_export", 1) else 0
                doc["users"][username] = {
                    "username": username, **rights,
                    "forms": {f: 1 for f in forms}, "forms_export": {f: level for f in forms},
                }

    # ------------------------------------------------------------------ roles

    @staticmethod
    def new_role_name() -> str:
        """REDCap's role names look like ``U-2119C4Y87T``: ``U-`` and ten capitals or digits."""
        alphabet = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
        return "U-" + "".join(secrets.choice(alphabet) for _ in range(10))

    # ------------------------------------------------------------------- DAGs

    def record_dag(self, record: str) -> str:
        return str(self.load()["record_dags"].get(record, ""))

    def set_record_dag(self, record: str, dag: str) -> None:
        with self.change() as doc:
            if dag:
                doc["record_dags"][record] = dag
            else:
                doc["record_dags"].pop(record, None)


def unique_group_name(label: str, taken: set[str]) -> str:
    """REDCap's unique DAG name: the label lower-cased, non-alphanumerics as ``_``, 18 characters at most."""
    base = re.sub(r"[^a-z0-9]+", "_", label.lower()).strip("_")[:18] or "dag"
    name, n = base, 1
    while name in taken:
        n += 1
        name = f"{base[:16]}{n}"
    return name


def _as_int(value: Any) -> Any:
    if isinstance(value, str) and value.isdigit():
        return int(value)
    if isinstance(value, dict):
        return {k: _as_int(v) for k, v in value.items()}
    return value


def initialise_team(store: Store, project: Any) -> None:
    """Fill the team document from a loaded ``ProjectDef`` (users, roles, DAGs, record DAGs)."""
    doc = _empty()
    for i, dag in enumerate(project.dags, start=1):
        name = dag.get("unique_group_name") or unique_group_name(
            dag["data_access_group_name"], {d["unique_group_name"] for d in doc["dags"]})
        doc["dags"].append({"data_access_group_name": dag["data_access_group_name"],
                            "unique_group_name": name,
                            "data_access_group_id": int(dag.get("data_access_group_id") or i)})
        doc["next_dag_id"] = max(doc["next_dag_id"], doc["dags"][-1]["data_access_group_id"] + 1)
    for role in project.roles:
        doc["roles"].append({"unique_role_name": role.get("unique_role_name") or Team.new_role_name(),
                             **{k: v for k, v in role.items() if k != "unique_role_name"}})
    for user in project.users:
        row = {k: v for k, v in user.items() if k != "unique_role_name"}
        doc["users"][user["username"]] = row
        if user.get("unique_role_name"):
            doc["user_roles"][user["username"]] = user["unique_role_name"]
    doc["record_dags"] = dict(project.record_dags)
    store.set_kv(KV_KEY, doc)
