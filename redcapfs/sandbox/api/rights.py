"""Who is calling and what they may do: a token's grant combined with its user's rights and DAG.

A token belongs to a user (``--token T:RIGHTS:USER``). What a call may do is
what both allow: the token's RIGHTS (full, export, none) as a cap, and the
user's rights as the project holds them (loaded, or set through ``content=user``
/ ``userRole`` / ``userRoleMapping`` / ``userDagMapping``). A token whose user
is no longer a project user is refused like an unknown token.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..config import TokenGrant
from ..team import FULL_RIGHTS, Team

#: ``forms_export`` levels (REDCap 12+): what a record export shows of an instrument.
NO_ACCESS, FULL_DATA, DEIDENTIFIED, REMOVE_IDENTIFIERS = 0, 1, 2, 3


def seed_rights(grant: TokenGrant) -> dict[str, Any]:
    """The rights a token's user gets when the project does not know the user yet: all of them.

    The token's RIGHTS still cap every call (several tokens may share one user name).
    """
    del grant
    return dict(FULL_RIGHTS)


@dataclass(frozen=True)
class Caller:
    """The resolved caller of one API call."""

    grant: TokenGrant
    user: dict[str, Any]

    @property
    def username(self) -> str:
        return self.grant.username

    def right(self, key: str) -> bool:
        return bool(int(self.user.get(key, 0) or 0))

    @property
    def api_export(self) -> bool:
        return self.right("api_export")

    @property
    def api_import(self) -> bool:
        return self.grant.can_import and self.right("api_import")

    @property
    def dag(self) -> str:
        """The user's DAG ("" = sees every record)."""
        return str(self.user.get("data_access_group") or "")

    def export_level(self, form: str) -> int:
        """``forms_export`` of one instrument, capped by a ``none`` token (No Access)."""
        if not self.grant.can_export_data:
            return NO_ACCESS
        levels = self.user.get("forms_export") or {}
        return int(levels.get(form, FULL_DATA) if isinstance(levels, dict) else FULL_DATA)

    def any_export(self, forms: list[str]) -> bool:
        return any(self.export_level(f) != NO_ACCESS for f in forms)

    def edit_level(self, form: str) -> int:
        """``forms``: 0 no access, 1 view and edit, 2 read only, 3 edit survey responses."""
        levels = self.user.get("forms") or {}
        return int(levels.get(form, 1) if isinstance(levels, dict) else 1)

    def sees_record(self, record_dag: str) -> bool:
        return not self.dag or self.dag == record_dag


def resolve(team: Team, grant: TokenGrant) -> Caller | None:
    user = team.user(grant.username)
    return None if user is None else Caller(grant, user)
