"""The namespace: which path names what, and what each directory lists. Holds no lock of its own.

Directories come from the records index (records, events, instances) and the
project's shape (fields). A slot directory lists, in this order: its server
file (unless a local backup copy hides it), new files being written under real
names, then temporary files. Local files are read from an immutable snapshot
of the registry, so a listing never holds a lock while it asks the server for
the real name behind "[document]".
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

from redcapfs import names
from redcapfs.errors import NotADirectory, NotFound
from redcapfs.fs.base import FileNode
from redcapfs.fs.content import ServerContent
from redcapfs.fs.localfiles import LocalFile, LocalFiles
from redcapfs.fs.rules import new_name
from redcapfs.fs.slots import SlotModel
from redcapfs.paths import PathModel, PathRef
from redcapfs.recordcache import RecordCache
from redcapfs.recordindex import RecordIndex
from redcapfs.shape import ProjectShape, Slot


@dataclasses.dataclass(frozen=True)
class ServerName:
    """A slot's server file with its real name resolved (the I/O part of a slot check)."""

    raw: str
    name: str


class Namespace:
    """Path lookups and listings over the records index, the slot model and the local files."""

    def __init__(self, shape: ProjectShape, records: RecordCache, slots: SlotModel, content: ServerContent,
                 local: LocalFiles) -> None:
        self.shape = shape
        self.model = PathModel(shape)
        self.records = records
        self.slots = slots
        self.content = content
        self.local = local

    # ------------------------------------------------------------ paths
    def resolve(self, path: str) -> PathRef:
        """Parse and check that every directory on the way exists; the file itself is checked later."""
        ref = self.model.parse(path)
        if ref.kind == "root":
            return ref
        with self.records.view() as index:  # one look at the index per path (find asks ~2 per directory)
            record = self.record_in(index, ref, path)
            if ref.kind != "record":
                if self.shape.longitudinal and ref.event not in index.events_of(record):
                    raise NotFound("no such event for this record", path)
                if ref.instance is not None and ref.field is not None \
                        and ref.instance not in index.instances(record, ref.event, ref.field):
                    raise NotFound("no such instance", path)
        if record != ref.record:  # a shortened component: carry the real name on
            ref = dataclasses.replace(ref, record=record)
        return ref

    def record(self, ref: PathRef, path: str = "") -> str:
        """The real record name of ``ref`` (shortened components resolved), or NotFound."""
        with self.records.view() as index:
            return self.record_in(index, ref, path)

    @staticmethod
    def record_in(index: RecordIndex, ref: PathRef, path: str) -> str:
        """The real record name of ``ref`` in ``index`` (shortened components resolved), or NotFound."""
        component = ref.record_component or ""
        if names.is_shortened(component):
            record = names.Resolver(index.records()).resolve(component)
        else:
            record = names.decode_record(component)
            if names.encode_record(record) != component:
                record = None
        if record is None or not index.has_record(record):
            raise NotFound("no such record", path or None)
        return record

    def exists(self, path: str) -> bool:
        try:
            ref = self.resolve(path)
            if ref.kind == "file":
                self.file(ref, path)
            return True
        except NotFound:
            return False

    def file(self, ref: PathRef, path: str) -> FileNode:
        """The file ``ref`` names in its slot, or NotFound."""
        component = ref.name_component or ""
        for node in self.slot_nodes(ref.slot()):
            if names.encode(node.name) == component:
                return node
        raise NotFound("no such file", path)

    def existing_or_new_name(self, ref: PathRef, path: str) -> str:
        try:
            return self.file(ref, path).name
        except NotFound:
            return new_name(ref, path)

    # ------------------------------------------------------------ slots
    def server_name(self, slot: Slot, fresh: bool = False) -> ServerName | None:
        """The slot's server file and its real name; may ask the server (never under a lock)."""
        known = self.slots.server_file(slot, fresh=fresh)
        if known is None:
            return None
        name = known.name if known.name is not None else self.content.display_name(slot, known.raw)
        return ServerName(known.raw, name)

    def known_server_name(self, slot: Slot) -> ServerName | bool | None:
        """Like :meth:`server_name` from memory only (for a re-check under a lock); False if unknown."""
        known = self.slots.server_file(slot, current=True)
        if known is None:
            return None
        return ServerName(known.raw, known.name) if known.name is not None else False

    def slot_nodes(self, slot: Slot) -> Iterator[FileNode]:
        """The real file (server or a writer's) first, then temporary files."""
        writers, temps = self.local.snapshot(slot)
        yield from self.nodes_of(slot, self.server_name(slot), writers, temps)

    def nodes_of(self, slot: Slot, server: ServerName | None, writers: dict[str, LocalFile],
                 temps: dict[str, LocalFile]) -> Iterator[FileNode]:
        """A slot's nodes from a server name and a snapshot of its local files (pure)."""
        writers = dict(writers)
        hidden = self.slots.hidden(slot)
        if server is not None and server.name != hidden:
            yield FileNode(slot, server.name, server.raw, writers.pop(server.name, None))
        for name, local in writers.items():
            yield FileNode(slot, name, None, local)
        for name, local in temps.items():
            yield FileNode(slot, name, None, local)

    def slot_names(self, slot: Slot) -> list[str]:
        return [node.name for node in self.slot_nodes(slot)]

    def known_slot_names(self, slot: Slot) -> list[str] | None:
        """Like :meth:`slot_names` from memory only: None when the server file's real name would need a call
        (an older server's "[document]" not learnt yet)."""
        server = self.known_server_name(slot)
        if isinstance(server, bool):
            return None
        writers, temps = self.local.snapshot(slot)
        return [node.name for node in self.nodes_of(slot, server, writers, temps)]

    # ------------------------------------------------------------ listings
    def readdir(self, path: str) -> list[tuple[str, bool]]:
        """(component, is_dir) pairs; never needs a file's size, so listing downloads nothing."""
        ref = self.resolve(path)
        if ref.kind == "file":
            raise NotADirectory("not a directory", path)
        if ref.kind == "root":
            with self.records.view() as index:
                return [(names.encode_record(r), True) for r in index.records()]
        if ref.kind == "record" and self.shape.longitudinal:
            record = self.record(ref)
            with self.records.view() as index:
                events = index.events_of(record)
            return [(names.encode(e), True) for e in events]
        if ref.kind in ("record", "event"):
            return [(component, True) for component in self.model.field_components(ref.event)]
        if ref.kind == "field" and ref.repeats and ref.field is not None:
            record = self.record(ref)
            with self.records.view() as index:
                instances = index.instances(record, ref.event, ref.field)
            return [(str(i), True) for i in instances]
        return [(names.encode(n), False) for n in self.slot_names(ref.slot())]
