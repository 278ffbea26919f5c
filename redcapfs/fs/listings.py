"""Folder listings: what ``ls`` and ``find`` see, and the listings of a folder's slot folders made with it.

A listing never needs a file's size, so listing downloads nothing. Files carry
no attributes (their size may cost a call); folders carry theirs, so that the
kernel, which gets them through READDIRPLUS, need not look each folder up again.

``find`` enters every folder it lists. Below a record (classic) or an event
(longitudinal) every folder is a file field's slot folder, which holds at most
one file and the slot's local temporaries: :meth:`Listings.below` makes all of
their listings at once, from memory only, while the record's or event's own
listing is made, so that the FUSE layer can answer the kernel's next requests,
one per slot folder, without coming back here (dirfill.py keeps them for a
moment). A slot folder whose listing would need a call (an older server's
"[document]" name not learnt yet) or would not list (a field the token may not
export, whose files were never seen) is left out: it is made, or refused, when
that folder is listed on its own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from redcapfs import names
from redcapfs.errors import RedcapfsError
from redcapfs.fs.base import Stat
from redcapfs.fs.repotree import is_repo_path
from redcapfs.shape import Slot

if TYPE_CHECKING:
    from redcapfs.tree import Tree

Entry = tuple[str, bool, Stat | None]  # (component, is_dir, the folder's attributes; None for files)


class Listings:
    """Listings over a tree's namespace, rights, File Repository and prefetch (looked up on the tree each
    time: a design reload replaces some of them)."""

    def __init__(self, tree: Tree) -> None:
        self.tree = tree

    def readdir(self, path: str) -> list[tuple[str, bool]]:
        """(component, is_dir) pairs."""
        t = self.tree
        t.feed.touch()
        if is_repo_path(path):
            return t.repo.readdir(path)
        entries = t.ns.readdir(path)
        if not entries:  # a field the token may not export, whose files were never seen: not "empty"
            t.rights.check_listable(t.ns.model.parse(path).field, path)
        base = path.rstrip("/") or "/"
        if base == "/":
            entries = t.repo.root_entry() + entries  # .repository (fs/repository.py)
        if entries:
            t.ahead.listed(base, any(not is_dir for _, is_dir in entries))
        return entries

    def readdir_stats(self, path: str) -> list[Entry]:
        """Like :meth:`readdir`, with each folder's attributes."""
        entries = self.readdir(path)
        if is_repo_path(path):
            return [(name, is_dir, None) for name, is_dir in entries]
        return self.tree.stats.listed_stats(path, entries)

    def below(self, path: str) -> dict[str, list[Entry]]:
        """The listings of the slot folders in folder ``path`` (component -> entries), as :meth:`readdir_stats`
        would make each; empty where ``path`` holds no slot folders (the top, a longitudinal record, the
        File Repository) or is not a folder."""
        t = self.tree
        record = self._record_here(path)
        if record is None:
            return {}
        event = t.ns.model.parse(path).event
        base = path.rstrip("/")
        out: dict[str, list[Entry]] = {}
        for field in t.shape.fields_in_event(event):
            if t.shape.repeats(event, field):
                continue  # its folder lists instances, not files
            component = names.encode(field)
            known = t.ns.known_slot_names(Slot(record, event, field, None))
            if known is None:
                continue  # its listing would ask the server: made only if the folder is listed itself
            if not known:
                try:
                    t.rights.check_listable(field, f"{base}/{component}")
                except RedcapfsError:
                    continue
            out[component] = [(names.encode(n), False, None) for n in known]
        return out

    def _record_here(self, path: str) -> str | None:
        """The record of ``path`` if it is a folder of slot folders that exists, from the index as it is now
        (never starting a refresh: the folder's own listing has just looked)."""
        t = self.tree
        if is_repo_path(path):
            return None
        try:
            ref = t.ns.model.parse(path)
            if ref.kind not in ("record", "event") or (ref.kind == "record" and t.shape.longitudinal):
                return None
            with t.records.current() as index:
                record = t.ns.record_in(index, ref, path)
                if ref.kind == "event" and ref.event not in index.events_of(record):
                    return None
        except RedcapfsError:
            return None
        return record

    def used(self, path: str) -> None:
        """A listing made ahead that shows a file answered the kernel: the folder counts as listed for the
        sizes asked ahead (fs/prefetch.py), as if :meth:`readdir` had made it."""
        self.tree.ahead.listed(path.rstrip("/"), True)
