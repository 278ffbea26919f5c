"""Directories that can be made or removed: new records, a record's event in another arm, local instances.

REDCap has no empty records, so ``mkdir /ID`` imports a record row at once. A
new instance directory stays local (the records index keeps it over refreshes)
until its first upload makes it real.
"""

from __future__ import annotations

from redcapfs.errors import AlreadyExists, DirectoryNotEmpty, NotADirectory, NotFound, NotPermitted
from redcapfs.fs import rules
from redcapfs.fs.base import TreeOptions
from redcapfs.fs.namespace import Namespace
from redcapfs.fs.writing import Writing
from redcapfs.paths import PathRef


class RecordDirs:
    """mkdir and rmdir."""

    def __init__(self, options: TreeOptions, ns: Namespace, writing: Writing) -> None:
        self.options = options
        self.ns = ns
        self.shape = ns.shape
        self.records = ns.records
        self.writing = writing

    def mkdir(self, path: str) -> None:
        """A new record (root), a record's event in another arm, or a local instance; nothing else."""
        ref = self.ns.model.parse(path)
        if ref.kind == "root" or self.ns.exists(path):
            raise AlreadyExists("exists", path)
        if ref.kind == "record":
            self._mkdir_record(ref, path)
        elif ref.kind == "event":
            self._mkdir_event(ref, path)
        elif ref.kind == "instance":
            self._mkdir_instance(ref, path)
        else:
            raise NotPermitted("only records, events and instances can be created", path)

    def _mkdir_record(self, ref: PathRef, path: str) -> None:
        record = rules.creatable(ref.record_component or "", path, what="record name", record=True)
        self.writing.require_writable(None, path)
        event = rules.first_event(self.shape, self.options.arm)
        self.writing.uploader.import_record(record, event, self.shape.record_id_field)

    def _mkdir_event(self, ref: PathRef, path: str) -> None:
        record = self.ns.record(ref)
        self.writing.require_writable(None, path)
        self.writing.uploader.import_record(record, ref.event, self.shape.record_id_field)

    def _mkdir_instance(self, ref: PathRef, path: str) -> None:
        record = self.ns.record(ref)
        self.writing.require_writable(None, path, probe=False)
        with self.records.view() as index:
            if self.shape.longitudinal and ref.event not in index.events_of(record):
                raise NotFound("no such event for this record", path)
        assert ref.field is not None and ref.instance is not None
        self.records.add_local_instance(record, ref.event, ref.field, ref.instance)

    def rmdir(self, path: str) -> None:
        """Only an empty instance directory that exists locally only."""
        ref = self.ns.resolve(path)
        if ref.kind == "file":
            raise NotADirectory("not a directory", path)
        if ref.kind != "instance":
            raise NotPermitted("only local, empty instance directories can be removed", path)
        record = self.ns.record(ref)
        assert ref.field is not None and ref.instance is not None
        if not self.records.is_local_instance(record, ref.event, ref.field, ref.instance):
            raise NotPermitted("this instance exists in REDCap; it cannot be removed here", path)
        if self.ns.slot_names(ref.slot()):
            raise DirectoryNotEmpty("directory not empty", path)
        self.records.remove_local_instance(record, ref.event, ref.field, ref.instance)
