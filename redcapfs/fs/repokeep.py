"""What the mount, ``retry`` and ``restore`` share for File Repository documents: targets, the trash, overwrites.

REDCap's ``fileRepository`` API has no replace: every ``import`` adds a new
document, even of a name already there. So "saving over" a document is an
import of the new bytes and then a delete of the old document, and that old
document is kept in the local trash before it is deleted, exactly as a
replaced record file is (``trash.py``; ``redcapfs restore`` puts it back). If
the old document cannot be kept or deleted, both stay listed (the newer as
``NAME [doc ID].EXT``) and the log says so: nothing is ever deleted that the
trash has not got, and a failed delete loses nothing.

A repository document's :class:`~redcapfs.spool.Target` has ``folder`` set
(its folder's path below ``.repository``, "" for the top level) and no slot.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import BinaryIO

from redcapfs.client.base import RedcapClient
from redcapfs.errors import RedcapError
from redcapfs.spool import Target
from redcapfs.trash import Left, Source, Trash, TrashEntry, TrashFull

log = logging.getLogger(__name__)


def repo_target(url: str, project_id: str, folder: str, folder_id: int | None, name: str,
                doc_id: int | None = None, replaces: int | None = None) -> Target:
    """The target of a document ``name`` in the folder ``folder`` (its path below ``.repository``)."""
    return Target(url, project_id, "", None, "", None, name, folder=folder, folder_id=folder_id, doc_id=doc_id,
                  replaces=replaces)


def downloader(client: RedcapClient, doc_id: int) -> Callable[[BinaryIO], object]:
    """A trash source that downloads the document (one ``export``, in REDCap's audit log)."""
    def download(out: BinaryIO) -> object:
        return client.repo_export(doc_id, out)
    return download


def documents_named(client: RedcapClient, folder_id: int | None, name: str) -> list[int]:
    """The ids of the documents called ``name`` in the folder, oldest first (one ``list`` call)."""
    rows = client.repo_list(folder_id)
    return sorted(int(r["doc_id"]) for r in rows if str(r.get("doc_id") or "").isdigit() and r.get("name") == name)


def keep(trash: Trash | None, target: Target, source: Source, why: str, left: Left) -> TrashEntry | None:
    """Keep the document ``target`` names in the trash (None when the trash is off); raises on failure."""
    if trash is None or not trash.settings.enabled:
        return None
    return trash.keep(target, source, why, left)


def keep_and_delete(client: RedcapClient, trash: Trash | None, old: Target, source: Source, left: Left) -> bool:
    """After an import that replaces ``old``: keep it in the trash, then delete it.

    False (with a log line saying both stay) when the keep or the delete
    failed; the new document is in REDCap either way.
    """
    assert old.doc_id is not None
    try:
        kept = keep(trash, old, source, "replaced", left)
    except (TrashFull, RedcapError, OSError) as exc:
        log.error("File Repository: %s was uploaded, but its old document %d could not be kept in the trash "
                  "(%s), so it is not deleted: both stay listed", old.describe(), old.doc_id, exc)
        return False
    try:
        client.repo_delete(old.doc_id)
    except RedcapError as exc:
        log.error("File Repository: %s was uploaded but deleting its old document %d failed: %s; both stay listed",
                  old.describe(), old.doc_id, exc)
        return False
    log.info("File Repository: deleted the replaced document %d of %s%s", old.doc_id, old.describe(),
             f" (kept in the trash as {kept.id})" if kept is not None else "")
    return True
