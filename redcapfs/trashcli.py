"""``redcapfs trash`` and ``redcapfs restore``: list, empty and put back versions a replace or delete removed.

``restore ID`` uploads the kept version to its slot (Import File) under its
own name. It first checks that the slot still holds what that replace or
delete left there (the replacing file's name and size, and its bytes when
their hash is known; an empty slot after a delete); anything else (a later
upload by a colleague, say) is replaced only with ``--force``. Whatever the
restore replaces is kept in the trash first, so a restore can be undone too.
"""

from __future__ import annotations

import argparse
import json
import time

from redcapfs.cliout import finish, say
from redcapfs.credentials import CredentialError, read_token
from redcapfs.errors import RedcapError
from redcapfs.locations import state_root
from redcapfs.remote import CLI_HINT, RemoteRefused, add_trust_arguments, check_remote, open_remote
from redcapfs.reposend import restore_document
from redcapfs.slotcheck import Looker, SlotNow, opened_project
from redcapfs.spool import Target
from redcapfs.trash import Left, Trash, TrashEntry, TrashFull

TRASH_EPILOG = """Every replace and delete through the mount, and every replace made by `redcapfs retry` or
`redcapfs restore`, first keeps the version it removes here, byte for byte, for trash_days (default 7)
and within trash_size (default 2G), oldest first out. Mount options: -o trash_days=N, -o trash_size=SIZE,
-o trash=off. See `redcapfs docs unsent`.
"""


def all_trashes() -> list[Trash]:
    """Every project's trash under the state folder."""
    return [Trash(path) for path in sorted(state_root().glob("*/trash")) if path.is_dir()]


def _entries() -> list[tuple[Trash, TrashEntry]]:
    found: list[tuple[Trash, TrashEntry]] = []
    for trash in all_trashes():
        trash.expire()
        found.extend((trash, entry) for entry in trash.entries())
    return sorted(found, key=lambda pair: pair[1].when)


def _line(entry: TrashEntry) -> str:
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(entry.when))
    return f"{entry.id}  {entry.why}  {entry.bytes} bytes  {when}  {entry.target.url} {entry.target.describe()}"


def main_trash(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="redcapfs trash", description="List or empty the local trash.",
                                     epilog=TRASH_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument("--empty", nargs="*", metavar="ID", default=None,
                        help="remove the given entries (all of them when no ID is given)")
    args = parser.parse_args(argv)
    entries = _entries()
    if args.empty is not None:
        return finish(_empty(entries, args.empty))
    if args.json:
        say(json.dumps([entry.public() for _, entry in entries], indent=2))
        return finish(0)
    if not entries:
        say("the trash is empty")
    for _, entry in entries:
        say(_line(entry))
    return finish(0)


def _empty(entries: list[tuple[Trash, TrashEntry]], ids: list[str]) -> int:
    by_id = {entry.id: (trash, entry) for trash, entry in entries}
    missing = [i for i in ids if i not in by_id]
    if missing:
        say(f"redcapfs trash: no entry {', '.join(missing)} (see `redcapfs trash`)", err=True)
        return 2
    chosen = [by_id[i] for i in ids] if ids else entries
    for trash, entry in chosen:
        trash.remove(entry.id)
        say(f"removed {entry.id} ({entry.target.describe()}, {entry.bytes} bytes) from the trash")
    return 0


def main_restore(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="redcapfs restore", description="Put a version from the trash back.",
                                     epilog=TRASH_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("id", help="the trash entry (see `redcapfs trash`)")
    parser.add_argument("--token-file", help="file holding the API token (mode 0600)")
    parser.add_argument("--force", action="store_true",
                        help="restore even if the slot meanwhile holds something other than what the replace "
                             "or delete left there (that file is kept in the trash first)")
    add_trust_arguments(parser)
    args = parser.parse_args(argv)
    found = [(t, e) for t, e in _entries() if e.id == args.id]
    if not found:
        say(f"redcapfs restore: no trash entry {args.id} (see `redcapfs trash`)", err=True)
        return 2
    trash, entry = found[0]
    try:
        check_remote(entry.target.url, args.ca, args.insecure_http)  # before the token is asked for
        token = read_token(args.token_file)
    except (CredentialError, RemoteRefused) as exc:
        say(f"redcapfs restore: {exc}", err=True)
        return 2
    try:
        remote = open_remote(entry.target.url, token, ca=args.ca, insecure_http=args.insecure_http, hint=CLI_HINT)
    except RemoteRefused as exc:
        say(f"redcapfs restore: {exc}", err=True)
        return 2
    with remote.client as client:
        looker = Looker(client, trash.root)
        with looker.session():
            try:
                return finish(_restore(looker, trash, entry, args.force))
            except RedcapError as exc:
                say(f"not restored {entry.id}: {entry.target.describe()}: {remote.refusal(exc)}")
                return finish(1)
            except (TrashFull, OSError) as exc:
                say(f"not restored {entry.id}: {entry.target.describe()}: {exc}")
                return finish(1)


def _restore(looker: Looker, trash: Trash, entry: TrashEntry, force: bool) -> int:
    t = entry.target
    project_id = opened_project(looker.client)
    if t.project_id and t.project_id != project_id:
        say(f"not restored {entry.id}: kept from project {t.project_id}, but this token opens project {project_id}")
        return 1
    if t.is_repository:
        return restore_document(looker.client, trash, entry)  # reposend.py: a document, not a slot
    now = looker.look(t)
    if looker.holds(t, now, t.name, entry.bytes, entry.sha256):
        say(f"nothing to restore {entry.id}: {t.describe()} already holds this version")
        return 0
    if not force and not _as_left(looker, entry, now):
        say(f"not restored {entry.id}: {t.describe()}: the slot now holds {_what(now)}, not what the "
            f"{'delete' if entry.why == 'deleted' else 'replace'} left there ({_left(entry.left)}); "
            "use --force to replace it (it is kept in the trash first)")
        return 1
    if now is not None and trash.settings.enabled:
        current = Target(t.url, t.project_id, t.record, t.event, t.field, t.instance, now.name)
        kept = trash.keep(current, looker.copy(t, now), "replaced", Left(t.name, entry.bytes, entry.sha256))
        if kept is not None:
            say(f"kept {now.name!r} ({kept.bytes} bytes) in the trash as {kept.id}")
    looker.client.import_file(t.record, t.field, str(entry.data_path), t.name, event=t.event,
                              repeat_instance=t.instance)
    trash.remove(entry.id)
    say(f"restored {entry.id} -> {t.describe()} ({entry.bytes} bytes)")
    return 0


def _as_left(looker: Looker, entry: TrashEntry, now: SlotNow | None) -> bool:
    """Whether the slot holds what the replace or delete left there."""
    left = entry.left
    if left.name is None:
        return now is None
    if left.size is None:
        return now is not None and now.name == left.name
    return looker.holds(entry.target, now, left.name, left.size, left.sha256)


def _what(now: SlotNow | None) -> str:
    if now is None:
        return "nothing"
    return f"{now.name!r}" + (f" ({now.size} bytes)" if now.size is not None else "")


def _left(left: Left) -> str:
    if left.name is None:
        return "an empty slot"
    return f"{left.name!r}" + (f", {left.size} bytes" if left.size is not None else "")
