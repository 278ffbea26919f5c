"""``redcapfs retry`` and ``redcapfs restore`` for File Repository documents (``.repository``).

A repository entry's target names a folder and a file name, not a slot, and
REDCap's ``import`` never replaces a document, so these are simpler and
safer than a slot's:

* retry imports the kept bytes as a new document in the folder. If the upload
  began before (its answer may have been lost), the folder's documents of that
  name are downloaded and compared first: the same bytes mean it arrived, and
  nothing is sent. An upload that was saving over a document (``replaces``)
  then keeps that old document in the trash and deletes it, as the mount does;
  if that fails both stay and the command says so.
* restore imports the kept version as a new document; a version that was
  *replaced* then takes the place of the document that replaced it (known by
  its id, which never changes): that one is kept in the trash first and then
  deleted, so a restore is undone by another restore.

A folder that no longer exists (or that the token may no longer see) makes
REDCap refuse the import: the entry stays, with REDCap's message.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
from pathlib import Path

from redcapfs.client.base import RedcapClient
from redcapfs.cliout import say
from redcapfs.fs.repokeep import documents_named, downloader, keep_and_delete
from redcapfs.spool import SpoolEntry, Target
from redcapfs.trash import Left, Trash, TrashEntry, sha256_file

COMPARED = 3  # documents of the name, newest first, downloaded to tell an arrived upload from a lost one


def send_document(client: RedcapClient, trash: Trash, entry: SpoolEntry) -> bool:
    """Send one repository entry (retry); True when nothing is left to send."""
    t = entry.target
    size, digest = entry.size(), sha256_file(entry.data_path)
    if entry.may_be_delivered() and _holds(client, t, digest, trash.root):
        entry.remove()
        say(f"already on the server {entry.id}: {t.describe()} ({size} bytes): REDCap has these exact bytes; "
            "removed from the spool without sending")
        return True
    entry.mark_attempt()
    client.repo_import(str(entry.data_path), t.name, t.folder_id)
    entry.remove()
    say(f"sent {entry.id} -> {t.describe()} ({size} bytes)")
    _replace(client, trash, t, t.replaces, Left(t.name, size, digest))
    return True


def restore_document(client: RedcapClient, trash: Trash, entry: TrashEntry) -> int:
    """Put a kept repository version back (restore); the exit status."""
    t = entry.target
    client.repo_import(str(entry.data_path), t.name, t.folder_id)
    trash.remove(entry.id)
    say(f"restored {entry.id} -> {t.describe()} ({entry.bytes} bytes)")
    if entry.why == "replaced":
        _replace(client, trash, t, entry.left.doc_id, Left(t.name, entry.bytes, entry.sha256))
    return 0


def _replace(client: RedcapClient, trash: Trash, t: Target, old_id: int | None, left: Left) -> None:
    """After an import under ``t``: the document ``old_id`` it replaces goes to the trash, then is deleted."""
    if old_id is None:
        return
    rows = client.repo_list(t.folder_id)
    old = next((r for r in rows if str(r.get("doc_id") or "") == str(old_id)), None)
    if old is None:
        say(f"    the document it replaces ({old_id}) is no longer in the folder: nothing else changed")
        return
    new = documents_named(client, t.folder_id, t.name)
    left = dataclasses.replace(left, doc_id=new[-1] if new else None)
    target = dataclasses.replace(t, name=str(old.get("name") or t.name), doc_id=old_id, replaces=None)
    if keep_and_delete(client, trash, target, downloader(client, old_id), left):
        say(f"    replaced document {old_id} (kept in the trash first: `redcapfs trash`)")
    else:
        say(f"    document {old_id} could not be kept or deleted: both stay listed (see the log above)")


def _holds(client: RedcapClient, t: Target, digest: str, scratch: Path) -> bool:
    """Whether the folder already has a document of this name with these bytes (downloads, newest first)."""
    for doc_id in reversed(documents_named(client, t.folder_id, t.name)[-COMPARED:]):
        path = scratch / f"compare-{secrets.token_hex(8)}.part"
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as out:
                client.repo_export(doc_id, out)
            if sha256_file(path) == digest:
                return True
        finally:
            path.unlink(missing_ok=True)
    return False
