"""The state of the reference model of test_tree_model.py: what the server and the mount hold.

See treemodel.py for what the model is and how it is used. This part holds
the plain data (server files, the records index as listed, private copies,
handles, the content cache as documented) and the rules every operation
shares: which names a slot lists, what a server file reads as, what an
upload or a delete changes.
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


class ModelState:
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
        if held is None or held[0] != name:  # gone, or a colleague's other file: never served as this one
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

    # ------------------------------------------------------------ copies and handles
    def new_copy(self, slot: SlotT, name: str, temp: bool) -> Copy:
        return Copy(slot, name, temp)

    def add_handle(self, fh: int, handle: Handle) -> None:
        self.handles[fh] = handle
        if handle.copy is not None:
            handle.copy.refs += 1

    def may_write_in(self, slot: SlotT) -> int | None:
        return errno.EPERM if slot[1] == "sig" else None


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
