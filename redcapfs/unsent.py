"""``redcapfs unsent`` and ``redcapfs retry``: the files REDCap never accepted.

When an upload fails (or the mount dies mid-write) the bytes stay in the
spool (``spool.py``) under ``$REDCAPFS_STATE_DIR`` (default
``~/.local/state/redcapfs``). ``unsent`` lists them; ``retry`` sends them with
Import File, after checking the slot: a slot holds one file, so if it now holds
a file under a *different* name the entry is not sent unless ``--force`` (a
clinical file is never replaced silently).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time

from redcapfs.client.http import HttpClient
from redcapfs.credentials import CredentialError, read_token
from redcapfs.errors import EmptySlot, NoSuchRecord, RedcapError
from redcapfs.locations import state_root
from redcapfs.spool import Spool, SpoolEntry


def all_spools() -> list[Spool]:
    """Every project's spool under the state folder."""
    root = state_root()
    return [Spool(path) for path in sorted(root.glob("*/spool")) if path.is_dir()]


def unsent_entries() -> list[SpoolEntry]:
    return [entry for spool in all_spools() for entry in spool.unsent()]


def _line(entry: SpoolEntry) -> str:
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(entry.updated))
    t = entry.target
    error = entry.error or "the mount stopped before the upload (crash or kill)"
    return f"{entry.id}  {entry.size()} bytes  {when}  {t.url} {t.describe()}\n    {error}"


def main_unsent(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="redcapfs unsent", description="List files that never reached REDCap.")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    args = parser.parse_args(argv)
    entries = unsent_entries()
    if args.json:
        rows = [dict(entry.to_dict(), id=entry.id, size=entry.size(), data_path=str(entry.data_path))
                for entry in entries]
        print(json.dumps(rows, indent=2))
        return 0
    if not entries:
        print("no unsent files")
    for entry in entries:
        print(_line(entry))
    orphans = [p for spool in all_spools() for p in spool.orphans()]
    for path in orphans:
        print(f"data without a target (kept, inspect by hand): {path}")
    return 0


def main_retry(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="redcapfs retry", description="Send unsent files to REDCap again.")
    parser.add_argument("ids", nargs="*", help="entries to send (default: all)")
    parser.add_argument("--token-file", help="file holding the API token (mode 0600)")
    parser.add_argument("--url", help="only entries for this API URL")
    parser.add_argument("--force", action="store_true", help="send even if the slot now holds another file")
    parser.add_argument("--delete", action="store_true", help="remove the given entries without sending")
    args = parser.parse_args(argv)
    entries = _select(unsent_entries(), args.ids, args.url)
    if entries is None:
        return 2
    if args.delete:
        return _delete(entries, args.ids)
    if not entries:
        print("no unsent files")
        return 0
    urls = sorted({e.target.url for e in entries})
    if len(urls) > 1:
        print("redcapfs retry: entries for several servers; choose one with --url: " + ", ".join(urls),
              file=sys.stderr)
        return 2
    try:
        token = read_token(args.token_file)
    except CredentialError as exc:
        print(f"redcapfs retry: {exc}", file=sys.stderr)
        return 2
    with HttpClient(urls[0], token) as client:
        if not _same_project(client, entries):
            return 1
        results = [_send(client, entry, args.force) for entry in entries]
    return 0 if all(results) else 1


def _same_project(client: HttpClient, entries: list[SpoolEntry]) -> bool:
    """The token must open the project the bytes were written for: record names repeat across projects."""
    try:
        project_id = str(client.project_info().get("project_id", ""))
    except RedcapError as exc:
        for entry in entries:
            entry.mark_unsent(str(exc))
            print(f"failed {entry.id}: {entry.target.describe()}: {exc}")
        return False
    wrong = [e for e in entries if e.target.project_id and e.target.project_id != project_id]
    for entry in wrong:
        print(f"not sent {entry.id}: written for project {entry.target.project_id}, "
              f"but this token opens project {project_id}")
    return not wrong


def _select(entries: list[SpoolEntry], ids: list[str], url: str | None) -> list[SpoolEntry] | None:
    if url:
        entries = [e for e in entries if e.target.url == url]
    if not ids:
        return entries
    by_id = {e.id: e for e in entries}
    missing = [i for i in ids if i not in by_id]
    if missing:
        print(f"redcapfs retry: no unsent entry {', '.join(missing)} (see `redcapfs unsent`)", file=sys.stderr)
        return None
    return [by_id[i] for i in ids]


def _delete(entries: list[SpoolEntry], ids: list[str]) -> int:
    if not ids:
        print("redcapfs retry: --delete needs the IDs to remove", file=sys.stderr)
        return 2
    for entry in entries:
        entry.remove()
        print(f"removed {entry.id} ({entry.target.describe()}, {entry.size()} bytes) without sending")
    return 0


def _current_name(client: HttpClient, entry: SpoolEntry) -> str | None:
    """The name of the file the slot holds now, or None if it is empty."""
    t = entry.target
    try:
        info = client.file_info(t.record, t.field, event=t.event, repeat_instance=t.instance)
        if info is not None:
            return info.name
        with tempfile.TemporaryFile(dir=entry.root) as scratch:
            return client.export_file(t.record, t.field, scratch, event=t.event, repeat_instance=t.instance).name
    except (EmptySlot, NoSuchRecord):  # no data in that event yet: the slot is empty
        return None


def _send(client: HttpClient, entry: SpoolEntry, force: bool) -> bool:
    t = entry.target
    try:
        current = _current_name(client, entry)
        if current is not None and current != t.name and not force:
            print(f"not sent {entry.id}: {t.describe()}: the slot now holds {current!r}; "
                  "use --force to replace it")
            return False
        client.import_file(t.record, t.field, str(entry.data_path), t.name, event=t.event,
                           repeat_instance=t.instance)
    except RedcapError as exc:
        entry.mark_unsent(str(exc))
        print(f"failed {entry.id}: {t.describe()}: {exc}")
        return False
    print(f"sent {entry.id} -> {t.describe()} ({entry.size()} bytes)")
    entry.remove()
    return True

