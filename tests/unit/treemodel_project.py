"""The project, the REDCap emulator and the server checks shared by the model tests.

``make_client`` is the one place that names the emulator; everything else
reaches the server through the client API only (records export, file export,
import and delete), so switching the emulator is one line.
"""

from __future__ import annotations

import errno
import io
import tempfile
from pathlib import Path
from typing import Any

from treemodel import BAD_NAMES, REAL_NAMES, REMOTE_NAMES, TEMP_NAMES, SlotT

from redcapfs.attrs import AttrStore
from redcapfs.cache import ContentCache
from redcapfs.errors import EmptySlot, errno_for
from redcapfs.sandbox.build import build_project
from redcapfs.sandbox.inprocess import InProcessClient
from redcapfs.shape import ProjectShape
from redcapfs.spool import Spool
from redcapfs.tree import Tree, TreeOptions

# ------------------------------------------------------------------ the project


def meta(name: str, form: str, ftype: str = "text", validation: str = "") -> dict[str, str]:
    return {"field_name": name, "form_name": form, "field_type": ftype,
            "text_validation_type_or_show_slider_number": validation}


METADATA = [meta("record_id", "main"), meta("doc", "main", "file"), meta("sig", "main", "file", "signature"),
            meta("att", "attachments", "file")]
REPEATING = [{"form_name": "attachments", "custom_form_label": ""}]
RECORDS = ["1", "2", "3"]
LOCKED = {"3"}  # every upload or delete there is refused (EROFS): the unsent path
NEW_RECORDS = ["4"]
INSTANCES = (1, 2)
FILES: dict[SlotT, tuple[str, bytes]] = {
    ("1", "doc", None): ("a.pdf", b"original"),
    ("1", "att", 1): ("b.txt", b"attachment one"),
    ("1", "sig", None): ("a.pdf", b"signature"),
    ("3", "doc", None): ("a.pdf", b"locked away"),
}
ALL_RECORDS = RECORDS + NEW_RECORDS
RECORDS_TTL = 60.0
SLOTS: list[SlotT] = [("1", "doc", None), ("1", "att", 1), ("1", "att", 2), ("2", "doc", None), ("2", "att", 1),
                      ("3", "doc", None), ("3", "att", 1), ("4", "doc", None), ("1", "sig", None)]
NAMES = list(dict.fromkeys(REAL_NAMES + REMOTE_NAMES + TEMP_NAMES + BAD_NAMES))


def make_client() -> Any:
    """The one place that names the REDCap emulator: the sandbox's API, called in-process.

    Record "3" is locked, so its uploads and deletes are refused (the unsent path).
    The store lives in a private temporary folder that ``client.close()`` removes.
    """
    files = {(r, None, f, i or 1): data for (r, f, i), data in FILES.items()}
    rows: list[dict[str, Any]] = [{"record_id": r} for r in RECORDS]
    rows.append({"record_id": "1", "redcap_repeat_instrument": "attachments", "redcap_repeat_instance": 1})
    with tempfile.TemporaryDirectory(prefix="redcapfs-model-") as workdir:
        project = build_project(workdir, metadata=METADATA, repeating=REPEATING, records=rows, files=files,
                                locked=LOCKED)
        return InProcessClient.from_project(project)


def make_tree(client: Any, root: Path, mount: int) -> tuple[Tree, Spool]:
    """A mount of the project: its own cache, the state folder's spool (kept across mounts).

    The records index is refreshed only when the test moves its clock (``RecordsClock``).
    """
    shape = ProjectShape.from_api(client.project_info(), client.metadata(), client.arms(), client.events(),
                                  client.form_event_mapping(), client.repeating_forms_events())
    spool = Spool(root / "spool")
    tree = Tree(client, shape, cache=ContentCache(root / f"cache-{mount}", 1 << 24, 1e9), attrs=AttrStore(None),
                spool=spool, url="model://", project_id="1",
                options=TreeOptions(records_ttl=RECORDS_TTL, content_ttl=1e9))
    return tree, spool


class RecordsClock:
    """The records index's clock, moved by the test: a refresh happens when the test says time passed.

    recordcache.py re-applies our own changes of the last second over a
    refresh (a refresh that started before them must not undo them). With a
    real clock, whether a step falls in that second depends on the machine's
    speed; this clock makes every refresh come long after the change before it.
    This is the one place that knows where the index reads the time.
    """

    def __init__(self) -> None:
        from redcapfs import recordcache

        self._module = recordcache
        self._real = recordcache.time
        self.now = 1_000_000.0
        recordcache.time = self  # type: ignore[assignment]

    def monotonic(self) -> float:
        return self.now

    def advance(self) -> None:
        self.now += 10 * RECORDS_TTL

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    def restore(self) -> None:
        self._module.time = self._real


# ------------------------------------------------------------------ server access through the API only


def server_rows(client: Any) -> tuple[set[str], set[tuple[str, str, int]], dict[SlotT, str]]:
    """Records, instances and stored names, read from a records export (independent of shape.py)."""
    records: set[str] = set()
    instances: set[tuple[str, str, int]] = set()
    names: dict[SlotT, str] = {}
    for row in client.export_records(fields=["record_id", "doc", "sig", "att"]):
        record = str(row["record_id"])
        records.add(record)
        if row.get("redcap_repeat_instrument") == "attachments":
            instance = int(row["redcap_repeat_instance"])
            instances.add((record, "att", instance))
            if row.get("att"):
                names[(record, "att", instance)] = row["att"]
            continue
        for fld in ("doc", "sig"):
            if row.get(fld):
                names[(record, fld, None)] = row[fld]
    return records, instances, names


def server_file(client: Any, slot: SlotT) -> tuple[str, bytes] | None:
    out = io.BytesIO()
    try:
        info = client.export_file(slot[0], slot[1], out, repeat_instance=slot[2])
    except EmptySlot:
        return None
    return str(info.name), out.getvalue()


def outcome(fn: Any, *args: Any) -> tuple[Any, int | None]:
    """(result, None) or (None, errno) the way fuse_ops.py would report it."""
    try:
        return fn(*args), None
    except Exception as exc:  # every error the tree raises maps to an errno; an unmapped one fails below
        code = errno_for(exc)
        if code == errno.EIO and not hasattr(exc, "message"):
            raise
        return None, code
