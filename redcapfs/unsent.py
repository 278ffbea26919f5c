"""``redcapfs unsent`` and ``redcapfs retry``: the files REDCap never got.

When an upload fails (or the mount dies mid-write) the bytes stay in the
spool (``spool.py``) under ``$REDCAPFS_STATE_DIR`` (default
``~/.local/state/redcapfs``). ``unsent`` lists them with their state:

* ``unsent``: complete (its writer closed it), refused or never delivered;
* ``incomplete``: its writer never closed it (the mount died while the file was
  open for writing): possibly half a file, so never sent without ``--incomplete``;
* ``conflict``: the slot changed behind the writer's back; only ``--force`` sends it.

``retry`` sends ``unsent`` entries (``retry.py`` says how it looks first).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from redcapfs.client.http import HttpClient
from redcapfs.cliout import finish, say
from redcapfs.credentials import CredentialError
from redcapfs.errors import RedcapError
from redcapfs.locations import normalize_url, state_root
from redcapfs.profiles import Profile, ProfileError, is_profile, known_project, load, remember
from redcapfs.remote import CLI_HINT, RemoteRefused, add_trust_arguments, check_remote, open_remote
from redcapfs.retry import send
from redcapfs.slotcheck import opened_project
from redcapfs.spool import Spool, SpoolEntry
from redcapfs.status_cli import human
from redcapfs.tokensource import token_for
from redcapfs.trash import iso_time

ERRORS = {
    "incomplete": "its writer never closed it (the mount stopped while it was open: crash, kill or power loss)",
    "in_flight": "the mount stopped during the upload; REDCap may have it (retry looks before sending)",
}
HINTS = {
    "incomplete": "possibly half a file: look at it (data_path in `redcapfs unsent --json`), then "
                  "`redcapfs retry --incomplete {id}` to send it as it is, or `redcapfs retry --delete {id}`",
    "conflict": "the slot changed meanwhile: `redcapfs retry --force {id}` sends it anyway",
}

RETRY_EPILOG = """states (see `redcapfs unsent`):
  unsent      complete (its writer closed it) but refused or not delivered: a plain retry sends it
  incomplete  its writer never closed it (the mount died while it was open for writing): it may be
              half a file; sent only with --incomplete ID
  conflict    the slot changed behind the writer's back; sent only with --force ID

Before sending, retry looks at the slot: if it already holds these exact bytes (an upload whose answer
was lost), the entry is removed and nothing is sent; a file under another name is replaced only with
--force; a file that is replaced is first kept in the local trash (`redcapfs trash`, `redcapfs restore`).
"""


def all_spools() -> list[Spool]:
    """Every project's spool under the state folder."""
    root = state_root()
    return [Spool(path) for path in sorted(root.glob("*/spool")) if path.is_dir()]


def unsent_entries() -> list[SpoolEntry]:
    """Every entry kept for the user (unsent, incomplete or conflict), oldest first."""
    return sorted((e for spool in all_spools() for e in spool.unsent()), key=lambda e: e.created)


def error_of(entry: SpoolEntry) -> str:
    """What went wrong, in words: REDCap's message, or what the state means."""
    status = entry.status()
    if status == "incomplete":
        return entry.error + "; " + ERRORS["incomplete"] if entry.error else ERRORS["incomplete"]
    if entry.error:
        return entry.error
    return ERRORS["in_flight"] if entry.may_be_delivered() else "the mount stopped before the upload"


def public(entry: SpoolEntry) -> dict[str, Any]:
    """The row of ``redcapfs unsent --json``."""
    t = entry.target
    return {"id": entry.id, "state": entry.status(), "url": t.url, "record": t.record, "event": t.event,
            "field": t.field, "instance": t.instance, "name": t.name, "bytes": entry.size(),
            "when": iso_time(entry.updated), "error": error_of(entry), "project_id": t.project_id,
            "data_path": str(entry.data_path), "may_be_on_server": entry.may_be_delivered(),
            # a File Repository document instead of a slot: its folder below .repository ("" the top level)
            "repository": t.is_repository, "folder": t.folder, "folder_id": t.folder_id,
            # the names of earlier versions, for scripts written against them
            "size": entry.size(), "target": asdict(t)}


def _profile(name: str | None) -> Profile | None:
    return None if name is None else load().get(name)


def of_profile(entries: list[SpoolEntry], profile: Profile | None) -> list[SpoolEntry]:
    """The entries of a profile's project: its URL, and its project once a mount or retry has learned it."""
    if profile is None:
        return entries
    url, project = normalize_url(profile.url), known_project(profile.name)
    return [e for e in entries if normalize_url(e.target.url) == url
            and (project is None or not e.target.project_id or e.target.project_id == project)]


def _line(entry: SpoolEntry) -> str:
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(entry.updated))
    t, status = entry.target, entry.status() or "?"
    text = f"{entry.id}  {status}  {entry.size()} bytes  {when}  {t.url} {t.describe()}\n    {error_of(entry)}"
    if status in HINTS:
        text += "\n    " + HINTS[status].format(id=entry.id)
    return text


def main_unsent(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="redcapfs unsent", description="List files that never reached REDCap.",
                                     epilog=RETRY_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("profile_name", nargs="?", metavar="PROFILE", help="only this profile's project")
    parser.add_argument("--profile", help="the same as PROFILE")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    args = parser.parse_args(argv)
    try:
        profile = _profile(args.profile or args.profile_name)
    except ProfileError as exc:
        say(f"redcapfs unsent: {exc}", err=True)
        return finish(2)
    entries = of_profile(unsent_entries(), profile)
    if args.json:
        say(json.dumps([public(entry) for entry in entries], indent=2))
        return finish(0)
    if not entries:
        say("no unsent files")
    for entry in entries:
        say(_line(entry))
    for path in (p for spool in all_spools() for p in spool.orphans()):
        say(f"data without a target (kept, inspect by hand): {path}")
    return finish(0)


def _retry_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="redcapfs retry", description="Send unsent files to REDCap again.",
                                     epilog=RETRY_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("ids", nargs="*", metavar="[PROFILE] ID",
                        help="entries to send (default: every entry in state unsent); a first word naming a "
                             "profile picks its project and token")
    parser.add_argument("--profile", help="only this profile's entries, sent with its token")
    parser.add_argument("--token-file", help="file holding the API token (mode 0600)")
    parser.add_argument("--url", help="only entries for this API URL")
    parser.add_argument("--incomplete", action="store_true",
                        help="also send the given incomplete entries as they are (their writer never closed them)")
    parser.add_argument("--force", action="store_true",
                        help="also send the given conflict entries, and replace a slot that now holds a file "
                             "under another name (that file is kept in the trash first)")
    parser.add_argument("--delete", action="store_true", help="remove the given entries without sending")
    add_trust_arguments(parser)
    return parser


def main_retry(argv: list[str]) -> int:
    args = _retry_parser().parse_args(argv)
    if args.profile is None and args.ids and is_profile(args.ids[0]):
        args.profile, args.ids = args.ids[0], args.ids[1:]
    try:
        args.profile_obj = _profile(args.profile)
    except ProfileError as exc:
        say(f"redcapfs retry: {exc}", err=True)
        return 2
    if (args.incomplete or args.force or args.delete) and not args.ids:
        flag = "--delete" if args.delete else "--incomplete" if args.incomplete else "--force"
        say(f"redcapfs retry: {flag} needs the IDs it applies to (see `redcapfs unsent`)", err=True)
        return 2
    entries = _select(of_profile(unsent_entries(), args.profile_obj), args.ids, args.url)
    if entries is None:
        return 2
    if args.delete:
        return finish(_delete(entries))
    entries = _sendable(entries, args)
    if entries is None:
        return 2
    if not entries:
        say("nothing to send")
        return finish(0)
    return finish(_send_all(entries, args))


def _sendable(entries: list[SpoolEntry], args: argparse.Namespace) -> list[SpoolEntry] | None:
    """A plain retry sends unsent entries and says which others it skipped; named ones need their flag."""
    allowed = {"unsent"} | ({"incomplete"} if args.incomplete else set()) | ({"conflict"} if args.force else set())
    chosen = []
    for entry in entries:
        status = entry.status() or "unsent"
        if status in allowed:
            chosen.append(entry)
            continue
        flag = "--incomplete" if status == "incomplete" else "--force"
        if args.ids:
            say(f"redcapfs retry: {entry.id} is {status}: {error_of(entry)}; send it with {flag} {entry.id}",
                err=True)
            return None
        say(f"skipped {entry.id}: {entry.target.describe()}: {status}; " + HINTS[status].format(id=entry.id))
    return chosen


def _send_all(entries: list[SpoolEntry], args: argparse.Namespace) -> int:
    urls = sorted({e.target.url for e in entries})
    if len(urls) > 1:
        say("redcapfs retry: entries for several servers; choose one with --url: " + ", ".join(urls), err=True)
        return 2
    try:
        check_remote(urls[0], args.ca, args.insecure_http)  # before the token is asked for
        token = token_for(args.profile_obj, args.token_file)
    except (CredentialError, RemoteRefused) as exc:
        say(f"redcapfs retry: {exc}", err=True)
        return 2
    try:
        remote = open_remote(urls[0], token, ca=args.ca, insecure_http=args.insecure_http, hint=CLI_HINT)
    except RemoteRefused as exc:
        say(f"redcapfs retry: {exc}", err=True)
        return 2
    with remote.client as client:
        chosen = _same_project(client, entries, remote.refusal, args.profile_obj)
        if chosen is None:
            return 1
        return _send_each(client, chosen, args.force)


def _send_each(client: HttpClient, entries: list[SpoolEntry], force: bool) -> int:
    """Send one after another, saying N/M and the bytes so far; a total at the end."""
    total = sum(e.size() for e in entries)
    done_bytes, sent = 0, 0
    for n, entry in enumerate(entries, 1):
        size = entry.size()
        say(f"[{n}/{len(entries)}] {entry.id}: {entry.target.describe()} ({human(size)}; "
            f"{human(done_bytes)} of {human(total)} done)")
        if send(client, entry, force):
            sent += 1
        done_bytes += size
    failed = len(entries) - sent
    say(f"retry: {sent} of {len(entries)} file(s) done, {human(total)} looked at"
        + (f"; {failed} not sent (see `redcapfs unsent`)" if failed else ""))
    return 0 if not failed else 1


def _same_project(client: HttpClient, entries: list[SpoolEntry], explain: Callable[[RedcapError], str] = str,
                  profile: Profile | None = None) -> list[SpoolEntry] | None:
    """The token must open the project the bytes were written for: record names repeat across projects.

    With a profile, entries of the server's other projects are left for their own profiles.
    """
    try:
        project_id = opened_project(client)
    except RedcapError as exc:
        for entry in entries:
            entry.note_error(str(exc))
            say(f"failed {entry.id}: {entry.target.describe()}: {explain(exc)}")
        return None
    wrong = [e for e in entries if e.target.project_id and e.target.project_id != project_id]
    if profile is not None:
        remember(profile.name, profile.url, project_id)
        if wrong:
            say(f"left {len(wrong)} entr(y/ies) of other projects on this server (profile {profile.name} "
                f"opens project {project_id})")
        return [e for e in entries if e not in wrong]
    for entry in wrong:
        say(f"not sent {entry.id}: written for project {entry.target.project_id}, "
            f"but this token opens project {project_id}")
    return None if wrong else entries


def _select(entries: list[SpoolEntry], ids: list[str], url: str | None) -> list[SpoolEntry] | None:
    if url:
        entries = [e for e in entries if e.target.url == url]
    if not ids:
        return entries
    by_id = {e.id: e for e in entries}
    missing = [i for i in ids if i not in by_id]
    if missing:
        say(f"redcapfs retry: no unsent entry {', '.join(missing)} (see `redcapfs unsent`)", err=True)
        return None
    return [by_id[i] for i in ids]


def _delete(entries: list[SpoolEntry]) -> int:
    for entry in entries:
        size = entry.size()  # before the bytes are gone
        entry.remove()
        say(f"removed {entry.id} ({entry.target.describe()}, {size} bytes) without sending")
    return 0
