"""What may be created, written, renamed or deleted: pure decisions over names and nodes, no I/O.

Every function here either returns or raises a ``redcapfs.errors`` exception
that says why (the FUSE layer turns it into an errno). Keeping them apart from
the code that calls REDCap makes each rule readable in one place and testable
without a server.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from redcapfs import names
from redcapfs.errors import AlreadyExists, InvalidArgument, NotPermitted, ReadOnly
from redcapfs.fs.base import FileNode, TreeOptions
from redcapfs.paths import PathRef
from redcapfs.redcapnames import stored_name
from redcapfs.shape import ProjectShape, Slot

log = logging.getLogger(__name__)


def describe(slot: Slot, name: str) -> str:
    """Which file, in REDCap's terms, for log lines and errors."""
    parts = [f"record {slot.record!r}"]
    if slot.event:
        parts.append(f"event {slot.event}")
    parts.append(f"field {slot.field}")
    if slot.instance is not None:
        parts.append(f"instance {slot.instance}")
    return f"{name!r} ({', '.join(parts)})"


def new_name(ref: PathRef, path: str) -> str:
    """The decoded name a new file at ``ref`` gets; a name that would not list back as typed is refused."""
    component = ref.name_component or ""
    if not names.is_canonical(component):
        raise InvalidArgument("this name cannot be stored as typed (see docs/names.md)", path)
    return names.decode(component)


def check_upload_name(slot: Slot, name: str, path: str) -> None:
    """Refuse a name REDCap would change on upload (it would list back differently)."""
    if stored_name(name) != name:
        log.warning("%s: refused, REDCap would store this name as %r", describe(slot, name), stored_name(name))
        raise InvalidArgument("REDCap would change this name (quotes, backslashes, HTML entities, line breaks)", path)


def check_writable(options: TreeOptions, shape: ProjectShape, slot: Slot | None, path: str) -> None:
    """Refuse up front what no token could write: ro mounts and signature fields."""
    if options.read_only:
        raise ReadOnly("read-only mount", path)
    if slot is not None and shape.file_fields[slot.field].signature:
        raise NotPermitted("signature fields cannot be uploaded through the API", path)


def require_empty_for(nodes: Iterable[FileNode], slot: Slot, name: str, path: str,
                      moving_from: FileNode | None = None, renaming: bool = False) -> None:
    """A slot holds one file: a different real name there is refused (temporary files do not count).

    A create gets EEXIST (what O_CREAT|O_EXCL means). A rename gets EPERM: EEXIST for a
    target name that does not exist sends coreutils' mv into a stat of that name and a
    message built from a stat buffer it never filled ("cannot overwrite directory"
    about one time in twenty), while EPERM is reported as it is.
    """
    for node in nodes:
        if node.local is not None and node.local.temp:
            continue
        if moving_from is not None and node.name == moving_from.name:
            continue
        if node.name != name:
            log.warning("%s: refused, the slot already holds %r (a slot holds one file; "
                        "delete it first to replace it)", describe(slot, name), node.name)
            if renaming:
                raise NotPermitted(f"the slot already holds {node.name!r}", path)
            raise AlreadyExists(f"the slot already holds {node.name!r}", path)


def require_closed(node: FileNode, path: str) -> None:
    """A real file being written cannot be renamed: its upload at close would go to the old name."""
    if node.local is not None:
        raise NotPermitted("the file is being written; close it first", path)


def first_event(shape: ProjectShape, arm: int | None) -> str | None:
    """Where ``mkdir /NEWID`` puts a record: the first event of ``-o arm=N`` (default the first arm)."""
    if not shape.longitudinal:
        return None
    chosen = arm if arm is not None else shape.arms()[0]
    events = shape.events_of_arm(chosen)
    if not events:
        raise NotPermitted(f"arm {chosen} has no events")
    return events[0]


def file_mode(options: TreeOptions) -> int:
    return 0o444 if options.read_only else 0o644


def dir_mode(options: TreeOptions) -> int:
    return 0o555 if options.read_only else 0o755
