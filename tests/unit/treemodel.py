"""A small reference model of what a mount over a REDCap project must show and keep.

``test_tree_model.py`` drives ``redcapfs.tree.Tree`` and this model with the
same random operations and compares them after every step. The model is
written from docs/SEMANTICS.md, not from tree.py's code: plain dicts of what
the server holds, what the records index (the listing) shows, which private
copies are open, and which bytes must be kept as unsent. Where the document is
silent, the model says what the mount does today, and the comment says so.

Slots are ``(record, field, instance)`` tuples (a classic project; instance is
None for a field that does not repeat). Every operation takes the errno the
tree gave (None for success), asserts that it is one the rules allow, and
applies the outcome, so the model never needs to know *how* the tree did it.

Three parts: treemodel_state.py (the data and the rules shared by every
operation), treemodel_files.py (open, write, close, truncate) and this module
(unlink, rename, directories, a colleague's changes, refreshes, unmount, and
what the spool must hold).
"""

from __future__ import annotations

import errno

from treemodel_files import FileRules
from treemodel_state import (  # noqa: F401  (re-exported for the tests)
    BAD_NAMES,
    REAL_NAMES,
    REMOTE_NAMES,
    TEMP_NAMES,
    Copy,
    Handle,
    Key,
    ModelError,
    Node,
    SlotT,
    allow,
    is_temp,
    slot_dir,
)


class Model(FileRules):
    """What the server holds and what the tree must show, per docs/SEMANTICS.md."""

    # ------------------------------------------------------------ unlink
    def unlink(self, slot: SlotT, name: str, observed: int | None) -> None:
        what = f"unlink {slot_dir(slot)}/{name}"
        node = self.node(slot, name)
        if node is None:
            return allow(observed, errno.ENOENT, what=what)
        if self.may_write_in(slot):
            return allow(observed, errno.EPERM, what=what)
        copy = node.copy
        if copy is not None and copy.temp:
            hidden = self.shadowed.get(slot)
            if hidden is not None and copy.origin == (slot, hidden):
                # `mv f f~; rm f~` means: delete f.
                if not self.delete(slot, hidden, observed, what):
                    return None
            else:
                allow(observed, None, what=what)
            self.temps[slot].pop(name)
            self.drop(copy)
            return None
        if copy is not None and not node.on_server:
            allow(observed, None, what=what)  # a new file never uploaded: nothing on the server
            copy.unlinked = True
            self.forget_writer(copy)
            return None
        if not self.delete(slot, name, observed, what):
            return None
        if copy is not None:
            copy.unlinked = True
            self.forget_writer(copy)
        return None

    # ------------------------------------------------------------ rename
    def rename(self, src: SlotT, sname: str, dst: SlotT, dname: str, observed: int | None) -> None:
        what = f"rename {slot_dir(src)}/{sname} -> {slot_dir(dst)}/{dname}"
        node = self.node(src, sname)
        if node is None or not self.slot_exists(dst):
            return allow(observed, errno.ENOENT, what=what)
        if src == dst and sname == dname:
            return allow(observed, None, what=what)
        if self.may_write_in(dst):
            return allow(observed, errno.EPERM, what=what)
        copy = node.copy
        if copy is not None and copy.temp:
            return self.rename_temp(copy, dst, dname, observed, what)
        if is_temp(dname):
            return self.rename_to_temp(node, src, dst, dname, observed, what)
        return self.rename_real(node, src, dst, dname, observed, what)

    def rename_temp(self, copy: Copy, dst: SlotT, dname: str, observed: int | None, what: str) -> None:
        if is_temp(dname):
            allow(observed, None, what=what)
            self.temps[copy.slot].pop(copy.name)
            replaced = self.temps.setdefault(dst, {}).pop(dname, None)
            copy.slot, copy.name = dst, dname
            self.temps[dst][dname] = copy
            if replaced is not None:
                self.drop(replaced)
            return None
        if dname in BAD_NAMES:
            return allow(observed, errno.EINVAL, what=what)
        if any(n != dname for n in self.real_names(dst)):
            return allow(observed, errno.EPERM, what=what)  # a rename into a taken slot (EEXIST at create)
        self.upload(copy, dst, dname, observed, what)
        if observed is None:  # the temporary name is gone; the copy is the real file now
            self.temps[copy.slot].pop(copy.name)
            copy.slot, copy.name = dst, dname
            copy.renamed_onto = True
            self.drop(copy)
        return None

    def rename_to_temp(self, node: Node, src: SlotT, dst: SlotT, dname: str, observed: int | None,
                       what: str) -> None:
        """An editor's backup: a local copy, the server untouched, the real name hidden here."""
        if dst != src:
            return allow(observed, errno.EXDEV, what=what)
        if node.copy is not None:
            return allow(observed, errno.EPERM, what=what)
        got = self.content(src, node.name)
        if got is None:
            return allow(observed, errno.ENOENT, what=what)
        allow(observed, None, what=what)
        copy = self.new_copy(dst, dname, temp=True)
        copy.content[:] = got
        copy.origin = (src, node.name)
        replaced = self.temps.setdefault(dst, {}).pop(dname, None)
        self.temps[dst][dname] = copy
        self.shadowed[src] = node.name
        if replaced is not None:
            self.drop(replaced)
        return None

    def rename_real(self, node: Node, src: SlotT, dst: SlotT, dname: str, observed: int | None,
                    what: str) -> None:
        """Real to real: upload under the new name, then (another slot) delete the source."""
        if node.copy is not None:
            return allow(observed, errno.EPERM, what=what)
        if dname in BAD_NAMES:
            return allow(observed, errno.EINVAL, what=what)
        moving = node.name if dst == src else None
        if any(n != dname and n != moving for n in self.real_names(dst)):
            return allow(observed, errno.EPERM, what=what)
        got = self.content(src, node.name)
        if got is None:
            return allow(observed, errno.ENOENT, what=what)
        copy = self.new_copy(dst, dname, temp=False)
        copy.content[:] = got
        if dst[0] in self.locked:
            self.upload(copy, dst, dname, observed, what)
            self.kept.append(copy)  # the refused copy stays as unsent
            return None
        if src == dst:
            self.upload(copy, dst, dname, observed, what)
            copy.state = "gone"
            self.forget(src, node.name)
            return None
        # Uploaded to the target first; a refused delete of the source leaves both and returns its error.
        self.upload(copy, dst, dname, None, what)
        copy.state = "gone"
        self.delete(src, node.name, observed, what)
        return None

    # ------------------------------------------------------------ directories
    def mkdir_record(self, record: str, observed: int | None) -> None:
        what = f"mkdir /{record}"
        if record in self.records:
            return allow(observed, errno.EEXIST, what=what)
        allow(observed, None, what=what)
        self.records.add(record)
        return None

    def mkdir_instance(self, record: str, fld: str, instance: int, observed: int | None) -> None:
        what = f"mkdir /{record}/{fld}/{instance}"
        if record not in self.records:
            return allow(observed, errno.ENOENT, what=what)
        if (record, fld, instance) in self.instances | self.local_instances:
            return allow(observed, errno.EEXIST, what=what)
        allow(observed, None, what=what)
        self.local_instances.add((record, fld, instance))
        return None

    def rmdir_instance(self, record: str, fld: str, instance: int, observed: int | None) -> bool:
        """Only an empty instance made here; True when the records index is then reread."""
        what = f"rmdir /{record}/{fld}/{instance}"
        slot = (record, fld, instance)
        if not self.slot_exists(slot):
            allow(observed, errno.ENOENT, what=what)
            return False
        if (record, fld, instance) not in self.local_instances:
            allow(observed, errno.EPERM, what=what)
            return False
        if self.nodes(slot):
            allow(observed, errno.ENOTEMPTY, what=what)
            return False
        allow(observed, None, what=what)
        self.local_instances.discard((record, fld, instance))
        return True

    # ------------------------------------------------------------ a colleague, and refreshes
    def remote_upload(self, slot: SlotT, name: str, data: bytes) -> None:
        self.server[slot] = (name, data)
        self.remote_changed(slot)

    def remote_delete(self, slot: SlotT) -> None:
        self.server.pop(slot, None)
        self.remote_changed(slot)

    def remote_changed(self, slot: SlotT) -> None:
        self.ever_remote.add(slot)

    def may_list_two_files(self, slot: SlotT) -> bool:
        """A slot lists one real file, except while our new file waits for its close and a colleague's
        upload has arrived meanwhile (the create was allowed when the slot was empty)."""
        pending = [n for n, ls in self.writers.get(slot, {}).items() if ls and n != self.index.get(slot)]
        return slot in self.ever_remote and bool(pending)

    def refresh(self, records: set[str], instances: set[tuple[str, str, int]], names: dict[SlotT, str]) -> None:
        """A new records export (parsed by the caller from the server's rows) replaces the index.

        The test's clock has moved past records_ttl and past the second during
        which recordcache.py re-applies our own changes over a refresh, so the
        index is exactly the server's; local instances stay.
        """
        self.records = set(records)
        self.instances = set(instances)
        self.index = dict(names)

    def unmount(self) -> None:
        """Every handle released in order; temporary files go unless they hold refused bytes."""
        for fh in sorted(self.handles):
            self.release(fh)
        for temps in self.temps.values():
            for copy in temps.values():
                if copy.state == "unsent":
                    self.kept.append(copy)
                else:
                    copy.state = "gone"
        self.temps.clear()
        assert not self.writers, "writers without handles"
        self.shadowed.clear()
        self.cache.clear()
        self.sizes.clear()
        self.local_instances.clear()

    # ------------------------------------------------------------ what the spool must hold
    def spool_expected(self) -> list[tuple[str, Key | None, bytes]]:
        """(state, target if unsent, bytes) of every spool entry, sorted."""
        live: dict[int, Copy] = {}
        for group in self.writers.values():
            for copies in group.values():
                for copy in copies:
                    live[id(copy)] = copy
        for temps in self.temps.values():
            for copy in temps.values():
                live[id(copy)] = copy
        for handle in self.handles.values():
            if handle.copy is not None:
                live[id(handle.copy)] = handle.copy
        for copy in self.kept:
            live[id(copy)] = copy
        rows = []
        for copy in live.values():
            if copy.state == "gone":
                continue
            rows.append((copy.state, copy.target if copy.state == "unsent" else None, bytes(copy.content)))
        return sorted(rows, key=repr)
