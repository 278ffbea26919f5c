"""Loading the parts of a project beyond its structure and records: team, File Repository, first log rows.

Called by ``Store.initialise`` inside its transaction, so a project is loaded
whole or not at all.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .repository_store import Repository
from .team import initialise_team

if TYPE_CHECKING:  # the store imports this module to load a project
    from .store import Store


def initialise_extras(store: Store, project: Any) -> None:
    """Users, roles, DAGs, record DAGs, repository documents, and the project's log history if given.

    Loading writes no log rows of its own (the project's past is whatever it says).
    """
    initialise_team(store, project)
    repo = Repository(store)
    for entry in getattr(project, "repository", []):
        repo.copy_in(repo.folder_path(entry.folder), entry.source, entry.name, entry.mime)
    for row in reversed(getattr(project, "log", [])):  # given newest first, as the log exports
        store.add_log(row.get("username", "sandbox_api"), row["action"], row.get("details", ""),
                      row.get("record", ""), row.get("kind", "manage"))
