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
from redcapfs.fs.refusals import REFUSALS, mark
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
    """The decoded name a new file at ``ref`` gets; a name that would not list back as typed is refused.

    This is the create half of the bijection (docs/names.md, "Creating files"):
    a name is taken only if it is valid UTF-8, is the one component that lists
    its name (``encode(decode(c)) == c``), and needs no escape on the way out
    (no empty name, ``.``, ``..``, control character or DEL). What REDCap then
    does to the name is :func:`check_upload_name`'s part.
    """
    component = ref.name_component or ""
    slot = ref.slot() if ref.kind == "file" else None
    return creatable(component, path, slot)


def creatable(component: str, path: str, slot: Slot | None = None, what: str = "name",
              record: bool = False) -> str:
    """The name ``component`` stands for, or InvalidArgument (logged once per slot and reason).

    ``record``: a record's component, read with ``names.decode_record``.
    """
    reason = _not_creatable(component, record)
    if reason is None:
        return names.decode_record(component) if record else names.decode(component)
    key, message = reason
    where = describe(slot, component) if slot is not None else repr(component)  # repr: \udcff, never a raw byte
    REFUSALS.warn(log, (slot, key), "%s: %s refused at create: %s (see docs/names.md)", where, what, message)
    raise mark(InvalidArgument(f"{message} (see docs/names.md)", path))


def _not_creatable(component: str, record: bool = False) -> tuple[str, str] | None:
    """Why a typed component cannot be created (a short key and the words for the user), or None."""
    try:
        component.encode("utf-8")
    except UnicodeEncodeError:
        return "utf8", "the name is not valid UTF-8"
    if not names.is_valid_component(component):
        return "invalid", "not a valid file name"
    if names.is_shortened(component):
        return "shortened", "the name has the mark of a shortened name (%~ and 10 hex digits)"
    decoded = names.decode_record(component) if record else names.decode(component)
    listed = names.encode_record(decoded) if record else names.encode(decoded)
    if listed != component:
        return "canonical", f"it would be listed as {listed!r}, not as typed"
    if names.needs_escape(decoded):
        return "escape", "empty names, '.', '..', control characters and DEL cannot be stored in REDCap"
    return None


def check_upload_name(slot: Slot, name: str, path: str) -> None:
    """Refuse a name REDCap would store differently (it would list back differently), before any bytes."""
    stored = stored_name(name) if not names.needs_escape(name) else None
    if stored != name:
        said = f"REDCap would store this name as {stored!r}" if stored else "REDCap cannot store this name"
        REFUSALS.warn(log, (slot, "stored"), "%s: refused, %s", describe(slot, name), said)
        raise mark(InvalidArgument(
            "REDCap would change this name (quotes, backslashes, HTML entities, '/', control characters)", path))


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
            REFUSALS.warn(log, (slot, "occupied"), "%s: refused, the slot already holds %r (a slot holds one "
                          "file; delete it first to replace it)", describe(slot, name), node.name)
            if renaming:
                raise mark(NotPermitted(f"the slot already holds {node.name!r}", path))
            raise mark(AlreadyExists(f"the slot already holds {node.name!r}", path))


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
    return (0o444 if options.read_only else 0o666) & ~options.umask


def dir_mode(options: TreeOptions) -> int:
    return (0o555 if options.read_only else 0o777) & ~options.umask
