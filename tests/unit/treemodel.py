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
"""

from __future__ import annotations

import errno
import re
from dataclasses import dataclass, field

SlotT = tuple[str, str, int | None]
Key = tuple[SlotT, str]

TEMP_NAMES = (".a.pdf.Ab12Cd", "a.pdf~", "4913", ".a.pdf.swp")  # rsync, vim backup, vim probe, vim swap
REAL_NAMES = ("a.pdf", "b.txt")
REMOTE_NAMES = ("a.pdf", "c.png")  # what a colleague uploads through the API
BAD_NAMES = ("it's.pdf",)  # REDCap would store it without the quote: refused at create

_RSYNC = re.compile(r"\..+\.[A-Za-z0-9]{6}")
_VIM_SWAP = re.compile(r"\..+\.sw[a-z]")


def is_temp(name: str) -> bool:
    """The temporary names of docs/temp-names.md that this test uses (rsync's, vim's)."""
    return name == "4913" or name.endswith("~") or bool(_RSYNC.fullmatch(name) or _VIM_SWAP.fullmatch(name))


def slot_dir(slot: SlotT) -> str:
    record, fld, instance = slot
    return f"/{record}/{fld}" + (f"/{instance}" if instance is not None else "")


class ModelError(AssertionError):
    """The tree did something the rules do not allow."""


def allow(observed: int | None, *allowed: int | None, what: str) -> None:
    if observed not in allowed:
        names = [errno.errorcode.get(a, str(a)) if a else "success" for a in allowed]
        got = errno.errorcode.get(observed, str(observed)) if observed else "success"
        raise ModelError(f"{what}: got {got}, the rules allow {' or '.join(names)}")


@dataclass(eq=False)
class Copy:
    """A private local copy: a writer's, or a temporary file. Mirrors one spool entry."""

    slot: SlotT
    name: str
    temp: bool
    content: bytearray = field(default_factory=bytearray)
    dirty: bool = False  # differs from what REDCap has
    wrote: bool = False  # changed by write/ftruncate, not only by O_CREAT/O_TRUNC
    refs: int = 0
    unlinked: bool = False
    origin: Key | None = None  # a temp copy made by renaming a real file: (its slot, its name)
    state: str = "open"  # the spool entry's state: open, temp, unsent, or gone
    target: Key | None = None  # where the spool entry says the bytes go
    renamed_onto: bool = False  # a temp copy renamed onto a real name (it is the real file now)
    changed_after_rename: bool = False  # written through a handle after that rename (POSIX: the real file)

    def __post_init__(self) -> None:
        self.state = "temp" if self.temp else "open"
        self.target = (self.slot, self.name)


@dataclass(eq=False)
class Handle:
    """An open file: a reader of one fixed version, or a handle on a copy."""

    writable: bool
    copy: Copy | None = None
    version: bytes | None = None  # what a reader of a server file must see, to its end
    path: str = ""  # the path it was opened by (what the kernel passes with fstat)


@dataclass(frozen=True)
class Node:
    name: str
    on_server: bool  # the listing's name comes from the records index
    copy: Copy | None


class Model:
    """What the server holds and what the tree must show, per docs/SEMANTICS.md."""

    def __init__(self, records: list[str], locked: set[str], files: dict[SlotT, tuple[str, bytes]],
                 instances: set[tuple[str, str, int]]) -> None:
        self.locked = set(locked)
        self.server: dict[SlotT, tuple[str, bytes]] = dict(files)
        # The records index as the tree shows it (refreshed only when asked).
        self.records: set[str] = set(records)
        self.instances: set[tuple[str, str, int]] = set(instances)
        self.index: dict[SlotT, str] = {slot: name for slot, (name, _) in files.items()}
        self.local_instances: set[tuple[str, str, int]] = set()
        self.shadowed: dict[SlotT, str] = {}
        self.writers: dict[SlotT, dict[str, list[Copy]]] = {}
        self.temps: dict[SlotT, dict[str, Copy]] = {}
        self.cache: dict[Key, bytes] = {}
        self.sizes: dict[Key, int] = {}
        self.handles: dict[int, Handle] = {}
        self.kept: list[Copy] = []  # released copies whose entries stay as unsent
        self.remote_touched: set[SlotT] = set()  # a colleague changed it since the last refresh
        self.ever_remote: set[SlotT] = set()  # a colleague changed it at some time

    # ------------------------------------------------------------ structure
    def slot_exists(self, slot: SlotT) -> bool:
        record, fld, instance = slot
        if record not in self.records:
            return False
        return instance is None or (record, fld, instance) in self.instances | self.local_instances

    def nodes(self, slot: SlotT) -> list[Node]:
        """What the slot directory lists: the server's file (or its writer), new files, temporary files."""
        writers = {n: ls for n, ls in self.writers.get(slot, {}).items() if ls}
        out = []
        name = self.index.get(slot)
        if name is not None and name != self.shadowed.get(slot):
            mine = writers.pop(name, None)
            out.append(Node(name, True, mine[-1] if mine else None))
        out += [Node(n, False, ls[-1]) for n, ls in writers.items()]
        out += [Node(n, False, c) for n, c in self.temps.get(slot, {}).items()]
        return out

    def listing(self, slot: SlotT) -> list[str]:
        return sorted(n.name for n in self.nodes(slot))

    def listing_if(self, slot: SlotT, index_name: str | None) -> list[str]:
        """The listing if the records index said ``index_name`` for this slot."""
        saved = self.index.get(slot)
        self._set_index(slot, index_name)
        try:
            return self.listing(slot)
        finally:
            self._set_index(slot, saved)

    def _set_index(self, slot: SlotT, name: str | None) -> None:
        if name is None:
            self.index.pop(slot, None)
        else:
            self.index[slot] = name

    def node(self, slot: SlotT, name: str) -> Node | None:
        if not self.slot_exists(slot):
            return None
        return next((n for n in self.nodes(slot) if n.name == name), None)

    def real_names(self, slot: SlotT) -> list[str]:
        return [n.name for n in self.nodes(slot) if not is_temp(n.name)]

    # ------------------------------------------------------------ server content as the tree serves it
    def content(self, slot: SlotT, name: str) -> bytes | None:
        """A server file's bytes: the cached copy, else one download of what the slot holds now."""
        key = (slot, name)
        if key in self.cache:
            return self.cache[key]
        held = self.server.get(slot)
        if held is None:
            return None
        self.cache[key] = held[1]
        self.sizes[key] = len(held[1])
        return held[1]

    def size(self, slot: SlotT, name: str) -> int | None:
        """A server file's size: known, or the cached copy's, or asked of the server (fileinfo)."""
        key = (slot, name)
        if key in self.sizes:
            return self.sizes[key]
        if key in self.cache:
            self.sizes[key] = len(self.cache[key])
            return self.sizes[key]
        held = self.server.get(slot)
        if held is None:
            return None
        self.sizes[key] = len(held[1])
        return self.sizes[key]

    def forget(self, slot: SlotT, name: str) -> None:
        self.cache.pop((slot, name), None)
        self.sizes.pop((slot, name), None)

    # ------------------------------------------------------------ our uploads and deletes
    def upload(self, copy: Copy, slot: SlotT, name: str, observed: int | None, what: str) -> None:
        """Import File of a copy: refused in a locked record (the bytes become unsent), else stored."""
        if copy.target != (slot, name):
            copy.target, copy.state = (slot, name), "temp" if copy.temp else "open"
        if slot[0] in self.locked:
            allow(observed, errno.EROFS, what=what)
            copy.state = "unsent"
            return
        allow(observed, None, what=what)
        data = bytes(copy.content)
        self.server[slot] = (name, data)
        self.note(slot, name)
        if slot[2] is not None:
            self.local_instances.discard((slot[0], slot[1], slot[2]))
            self.instances.add((slot[0], slot[1], slot[2]))
        self.shadowed.pop(slot, None)
        self.forget(slot, name)
        self.cache[(slot, name)] = data
        self.sizes[(slot, name)] = len(data)

    def delete(self, slot: SlotT, name: str, observed: int | None, what: str) -> bool:
        """Delete File: refused in a locked record, ENOENT when the slot is already empty."""
        if slot[0] in self.locked:
            allow(observed, errno.EROFS, what=what)
            return False
        if slot not in self.server:
            allow(observed, errno.ENOENT, what=what)
            return False
        if self.server[slot][0] != name:  # a colleague's file replaced ours: it is not what the user removes
            allow(observed, errno.ENOENT, errno.ESTALE, what=what)
            return False
        allow(observed, None, what=what)
        del self.server[slot]
        self.note(slot, None)
        self.shadowed.pop(slot, None)
        self.forget(slot, name)
        return True

    def note(self, slot: SlotT, name: str | None) -> None:
        if name is None:
            self.index.pop(slot, None)
        else:
            self.index[slot] = name

    # ------------------------------------------------------------ opening and creating
    def new_copy(self, slot: SlotT, name: str, temp: bool) -> Copy:
        return Copy(slot, name, temp)

    def add_handle(self, fh: int, handle: Handle) -> None:
        self.handles[fh] = handle
        if handle.copy is not None:
            handle.copy.refs += 1

    def may_write_in(self, slot: SlotT) -> int | None:
        return errno.EPERM if slot[1] == "sig" else None

    def create(self, slot: SlotT, name: str, fh: int | None, observed: int | None) -> None:
        """O_CREAT of a name the slot does not list."""
        what = f"create {slot_dir(slot)}/{name}"
        if not self.slot_exists(slot):
            return allow(observed, errno.ENOENT, what=what)
        if self.may_write_in(slot):
            return allow(observed, errno.EPERM, what=what)
        if is_temp(name):
            allow(observed, None, what=what)
            copy = self.new_copy(slot, name, temp=True)
            self.temps.setdefault(slot, {})[name] = copy
        else:
            if name in BAD_NAMES:
                return allow(observed, errno.EINVAL, what=what)
            if any(n != name for n in self.real_names(slot)):
                return allow(observed, errno.EEXIST, what=what)
            allow(observed, None, what=what)
            copy = self.new_copy(slot, name, temp=False)
            copy.dirty = True  # even an empty new file is uploaded
            self.writers.setdefault(slot, {}).setdefault(name, []).append(copy)
        assert fh is not None
        self.add_handle(fh, Handle(True, copy))

    def open_write(self, slot: SlotT, name: str, truncate: bool, fh: int | None, observed: int | None) -> None:
        """Open an existing file for writing: a new private copy (a temporary file is itself)."""
        what = f"open {slot_dir(slot)}/{name} for writing"
        node = self.node(slot, name)
        if node is None:
            return allow(observed, errno.ENOENT, what=what)
        if node.copy is not None and node.copy.temp:
            allow(observed, None, what=what)
            if truncate:
                node.copy.content[:] = b""
            assert fh is not None
            return self.add_handle(fh, Handle(True, node.copy))
        if self.may_write_in(slot):
            return allow(observed, errno.EPERM, what=what)
        start = b""
        if not truncate:
            if node.copy is not None:
                start = bytes(node.copy.content)
            else:
                got = self.content(slot, name)
                if got is None:  # gone from the server since the last listing
                    return allow(observed, errno.ENOENT, what=what)
                start = got
        allow(observed, None, what=what)
        copy = self.new_copy(slot, name, temp=False)
        copy.content[:] = start
        copy.dirty = truncate
        self.writers.setdefault(slot, {}).setdefault(name, []).append(copy)
        assert fh is not None
        self.add_handle(fh, Handle(True, copy))

    def open_read(self, slot: SlotT, name: str) -> tuple[int | None, Handle | None]:
        """What a reader gets: a copy's live bytes, or one whole server version (or ENOENT if gone)."""
        node = self.node(slot, name)
        if node is None:
            return errno.ENOENT, None
        if node.copy is not None:
            return None, Handle(False, node.copy)
        got = self.content(slot, name)
        if got is None:
            return errno.ENOENT, None
        return None, Handle(False, None, got)

    def expected_bytes(self, handle: Handle) -> bytes:
        if handle.copy is not None:
            return bytes(handle.copy.content)
        assert handle.version is not None
        return handle.version

    # ------------------------------------------------------------ writing through a handle
    def write(self, handle: Handle, data: bytes, offset: int) -> None:
        copy = handle.copy
        assert copy is not None
        content = copy.content
        if data and offset > len(content):  # pwrite of nothing does not extend the file
            content.extend(b"\0" * (offset - len(content)))
        if data:
            content[offset:offset + len(data)] = data
        copy.dirty = copy.wrote = True
        copy.changed_after_rename = copy.renamed_onto

    def ftruncate(self, copy: Copy, length: int) -> None:
        content = copy.content
        if length < len(content):
            del content[length:]
        else:
            content.extend(b"\0" * (length - len(content)))
        copy.dirty = copy.wrote = True
        copy.changed_after_rename = copy.renamed_onto

    def flush(self, handle: Handle, observed: int | None, what: str) -> None:
        """Every close: upload a copy that was written to and not yet sent; the rest succeeds."""
        copy = handle.copy
        if copy is None or not handle.writable or copy.temp or copy.unlinked:
            return allow(observed, None, what=what)
        if copy.dirty and copy.wrote:
            self.upload(copy, copy.slot, copy.name, observed, what)
            if observed is None:
                copy.dirty = False
        else:
            allow(observed, None, what=what)

    def release(self, fh: int) -> None:
        """The last close of a copy: clean copies go; one never sent stays as unsent, never lost."""
        handle = self.handles.pop(fh)
        copy = handle.copy
        if copy is None:
            return
        copy.refs -= 1
        if copy.refs > 0 or (copy.temp and not copy.unlinked):
            return
        if not copy.temp and not copy.unlinked and copy.dirty and not copy.wrote:
            # Only created or truncated: sent now; a refusal cannot reach close() any more.
            self.upload(copy, copy.slot, copy.name, errno.EROFS if copy.slot[0] in self.locked else None,
                        what="upload at release")
            if copy.slot[0] not in self.locked:
                copy.dirty = False
        if not copy.temp:
            self.forget_writer(copy)
        if copy.temp or not copy.dirty or copy.unlinked:
            copy.state = "gone"
        else:
            copy.state = "unsent"
            self.kept.append(copy)

    def forget_writer(self, copy: Copy) -> None:
        group = self.writers.get(copy.slot, {})
        if copy in group.get(copy.name, []):
            group[copy.name].remove(copy)
        if not group.get(copy.name, True):
            group.pop(copy.name)
        if not group:
            self.writers.pop(copy.slot, None)

    def drop(self, copy: Copy) -> None:
        """A copy the user removed (unlink, or replaced by a rename): its bytes go."""
        copy.unlinked = True
        if copy.refs == 0:
            copy.state = "gone"

    def truncate_path(self, slot: SlotT, name: str, length: int, observed: int | None) -> None:
        """truncate(2) without an open file: a temp file changes locally, a real one is uploaded at once."""
        what = f"truncate {slot_dir(slot)}/{name} to {length}"
        node = self.node(slot, name)
        if node is None:
            return allow(observed, errno.ENOENT, what=what)
        if node.copy is not None and node.copy.temp:
            allow(observed, None, what=what)
            content = node.copy.content
            del content[length:]
            content.extend(b"\0" * (length - len(content)))
            return None
        if self.may_write_in(slot):
            return allow(observed, errno.EPERM, what=what)
        start = b""
        if length != 0:
            if node.copy is not None:
                start = bytes(node.copy.content)
            else:
                got = self.content(slot, name)
                if got is None:
                    return allow(observed, errno.ENOENT, what=what)
                start = got
        copy = self.new_copy(slot, name, temp=False)
        copy.content[:] = start
        self.ftruncate(copy, length)
        self.upload(copy, slot, name, observed, what)
        if observed is None:
            copy.dirty = False
            copy.state = "gone"
        else:
            copy.state = "unsent"
            self.kept.append(copy)
        return None

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
            return allow(observed, errno.EEXIST, what=what)
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
            return allow(observed, errno.EEXIST, what=what)
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
        self.remote_touched.add(slot)
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
        self.remote_touched.clear()

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
