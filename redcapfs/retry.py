"""Sending one spool entry again (``redcapfs retry``): look at the slot, keep what a replace removes, send.

Before an upload, the slot is looked at (``slotcheck.py``):

* it holds a file of the same name and size whose bytes equal the entry's:
  the upload already arrived (its answer was lost to a crash, a timeout or a
  dropped connection); the entry is removed and nothing is sent;
* it holds a file under another name: not sent without ``--force``;
* it holds a file that will be replaced: that version is kept in the trash
  first (``trash.py``); if it cannot be kept (larger than ``trash_size``), the
  entry is not sent.

A failure keeps the entry with the new error, and an entry whose send began is
marked first, so a retry killed mid-upload is checked the same way next time.
"""

from __future__ import annotations

from redcapfs.client.base import RedcapClient
from redcapfs.cliout import say
from redcapfs.errors import RedcapError
from redcapfs.reposend import send_document
from redcapfs.slotcheck import Looker, SlotNow
from redcapfs.spool import SpoolEntry, Target
from redcapfs.trash import Left, Trash, TrashFull, sha256_file


def send(client: RedcapClient, entry: SpoolEntry, force: bool) -> bool:
    """Send one entry; print one line saying what happened; True when nothing is left to send."""
    t = entry.target
    trash = Trash(entry.root.parent / "trash")  # beside the spool, with the last mount's settings
    looker = Looker(client, trash.root)
    with looker.session():
        try:
            return _send(looker, trash, entry, force)
        except TrashFull as exc:
            say(f"not sent {entry.id}: {t.describe()}: {exc}")
        except RedcapError as exc:
            _keep_error(entry, str(exc))
            say(f"failed {entry.id}: {t.describe()}: {exc}")
        except OSError as exc:
            _keep_error(entry, f"local error: {exc}")
            say(f"failed {entry.id}: {t.describe()}: local error: {exc}")
    return False


def _send(looker: Looker, trash: Trash, entry: SpoolEntry, force: bool) -> bool:
    t = entry.target
    if t.is_repository:
        return send_document(looker.client, trash, entry)  # reposend.py: a document, not a slot
    size = entry.size()
    digest = sha256_file(entry.data_path)
    now = looker.look(t)
    if now is not None and looker.holds(t, now, t.name, size, digest):
        entry.remove()
        say(f"already on the server {entry.id}: {t.describe()} ({size} bytes): "
            "REDCap has these exact bytes; removed from the spool without sending")
        return True
    if now is not None and now.name != t.name and not force:
        say(f"not sent {entry.id}: {t.describe()}: the slot now holds {now.name!r}; "
            "use --force to replace it")
        return False
    if now is not None:
        _keep_replaced(looker, trash, t, now, Left(t.name, size, digest))
    entry.mark_attempt()  # from here REDCap may have it: a crash is checked like a lost answer
    looker.client.import_file(t.record, t.field, str(entry.data_path), t.name, event=t.event,
                              repeat_instance=t.instance)
    entry.remove()
    say(f"sent {entry.id} -> {t.describe()} ({size} bytes)")
    return True


def _keep_replaced(looker: Looker, trash: Trash, t: Target, now: SlotNow, left: Left) -> None:
    """The version about to be replaced goes to the trash first (TrashFull stops the send)."""
    if not trash.settings.enabled:
        return
    old = Target(t.url, t.project_id, t.record, t.event, t.field, t.instance, now.name)
    kept = trash.keep(old, looker.copy(t, now), "replaced", left)
    if kept is not None:
        say(f"kept {now.name!r} ({kept.bytes} bytes) in the trash as {kept.id} (`redcapfs restore {kept.id}`)")


def _keep_error(entry: SpoolEntry, error: str) -> None:
    """A refused or failed send keeps the entry, and what it is (an incomplete one stays incomplete)."""
    if entry.status() == "unsent" and entry.state != "conflict":
        entry.mark_unsent(error)
    else:
        entry.note_error(error)
