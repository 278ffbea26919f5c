"""``redcapfs clean [--project KEY|PROFILE] [--dry-run] [--force]``: remove local copies no mount is using.

What stays on this machine (``redcapfs docs local-data`` lists it all): per
project ``STATE/<key>/`` holds the download cache, the spool, the trash, the
manifest and the attribute store; ``STATE/logs/`` the mount logs;
``STATE/mounts/`` the status files. A project folder a live mount (or a live
writer) uses is left whole. Elsewhere everything goes except spooled files
REDCap never got (unsent, incomplete, conflict, or data without its json):
those only with ``--force``, since they may be the only copy of a file.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from redcapfs import status
from redcapfs.cliout import finish, say
from redcapfs.locations import KEY_LENGTH, project_key, state_root_path
from redcapfs.spool import Spool, pid_alive
from redcapfs.status_cli import human

_KEY = re.compile(rf"[0-9a-f]{{{KEY_LENGTH}}}")
_CACHE = re.compile(r"cache-(\d+)")


@dataclass
class Plan:
    """What clean removes from one project folder, and what it keeps and why."""

    folder: Path
    label: str
    busy: str = ""
    remove: list[Path] = field(default_factory=list)
    keep: list[str] = field(default_factory=list)
    whole: bool = False  # the folder itself goes (nothing is kept)


def _size(path: Path) -> int:
    if path.is_symlink() or not path.is_dir():
        try:
            return path.lstat().st_size
        except OSError:
            return 0
    return status.folder_bytes(path)


def _label(folder: Path) -> str:
    about = status.read_private_json(folder / "about.json") or {}
    if about.get("url"):
        return f"{about['url']} project {about.get('project_id', '?')} \"{about.get('title', '')}\""
    for entry in Spool(folder / "spool").entries() if (folder / "spool").is_dir() else []:
        return f"{entry.target.url} project {entry.target.project_id}"
    return "(project unknown: no mount recorded it)"


def _busy(folder: Path, live: list[dict]) -> str:
    """Why a live process needs this folder, or ""."""
    for doc in live:
        if doc.get("state_dir") == str(folder):
            return f"mounted at {doc.get('mountpoint')} (pid {doc.get('pid')})"
    for child in folder.iterdir():
        match = _CACHE.fullmatch(child.name)
        if match and pid_alive(int(match.group(1)), None):
            return f"its cache is in use by pid {match.group(1)}"
    spool = folder / "spool"
    if spool.is_dir():
        for entry in Spool(spool).entries():
            if entry.state in ("open", "temp") and entry.alive():
                return f"a file is being written by pid {entry.pid}"
    return ""


def _plan_spool(plan: Plan, spool: Path, force: bool) -> bool:
    """Add the spool's removable entries; True if it keeps nothing."""
    keeps = 0
    sp = Spool(spool)
    for entry in sp.entries():
        if entry.status() is not None and not force:
            keeps += 1
            continue
        plan.remove += [entry.data_path, entry.meta_path]
    orphans = sp.orphans()
    others = [p for p in spool.iterdir() if p.is_dir() and not p.is_symlink()]  # File Repository uploads
    if not force:
        keeps += len(orphans) + len(others)
        if keeps:
            plan.keep.append(f"{keeps} spooled file(s) or folder(s) REDCap may not have "
                             "(see `redcapfs unsent`; --force removes them)")
        return keeps == 0
    plan.remove += orphans + others
    return True


def plan_folder(folder: Path, live: list[dict], force: bool) -> Plan:
    plan = Plan(folder, _label(folder), busy=_busy(folder, live))
    if plan.busy:
        return plan
    spool_empty = True
    for child in sorted(folder.iterdir()):
        if child.name == "spool" and child.is_dir() and not child.is_symlink():
            spool_empty = _plan_spool(plan, child, force)
        else:
            plan.remove.append(child)
    plan.whole = spool_empty
    return plan


def _live_docs() -> list[dict]:
    return [d for d in status.read_all() if d.get("state") != "dead"]


def _dead_mount_files(root: Path, live: list[dict]) -> list[Path]:
    """Status files of dead mounts no kernel still lists, and logs no live mount writes."""
    out: list[Path] = []
    in_use_logs = {str(d.get("log_file")) for d in live}
    mounts = root / "mounts"
    if mounts.is_dir() and not mounts.is_symlink():
        for doc_path in sorted(mounts.glob(f"*{status.SUFFIX}")):
            doc = status.read_private_json(doc_path)
            if doc is not None:
                doc = status.with_state(doc, status.mount_table())
            if doc is None or (doc["state"] == "dead" and not doc.get("kernel_mounted")):
                out.append(doc_path)
    logs = [root / "mount.log", *sorted((root / "logs").glob("*.log*"))] if (root / "logs").is_dir() \
        else [root / "mount.log"]
    out += [p for p in logs if p.exists() and not p.is_symlink() and str(p) not in in_use_logs
            and not _log_of_live(p, live)]
    return out


def _log_of_live(path: Path, live: list[dict]) -> bool:
    """A rotated log (``x.log.1``) of a live mount may go; the one it writes may not; the shared old one may not."""
    if path.name == "mount.log":
        return bool(live)  # mounts of earlier versions all wrote here
    return any(str(d.get("log_file")) == str(path) for d in live)


def _wanted(root: Path, project: str | None) -> list[Path]:
    folders = [p for p in sorted(root.iterdir()) if _KEY.fullmatch(p.name) and p.is_dir() and not p.is_symlink()]
    if project is None:
        return folders
    key = project if _KEY.fullmatch(project) else _key_of_profile(project)
    return [p for p in folders if p.name == key]


def _key_of_profile(name: str) -> str | None:
    from redcapfs.profiles import ProfileError, known_project, load

    try:
        profile = load().get(name)
    except ProfileError:
        return None
    pid = known_project(name)
    return project_key(profile.url, pid) if pid else None


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="redcapfs clean",
        description="Remove what redcapfs keeps on this machine for projects no mount is using: the download "
                    "cache, the trash, the manifest and attribute store, spooled copies REDCap already has, "
                    "logs and status files of dead mounts. Files REDCap never got stay unless --force. "
                    "`redcapfs docs local-data` lists every place.")
    parser.add_argument("--project", metavar="KEY|PROFILE", help="only this project folder (KEY as --dry-run "
                                                                 "shows it) or a profile's project")
    parser.add_argument("--dry-run", action="store_true", help="say what would go, remove nothing")
    parser.add_argument("--force", action="store_true", help="also remove unsent and incomplete files")
    parser.add_argument("--json", action="store_true", help="what was (or would be) removed, as JSON")
    return parser


def main(argv: list[str]) -> int:
    """``redcapfs clean``."""
    args = build_parser().parse_args(argv)
    root = state_root_path()
    if not root.is_dir():
        say(f"nothing to clean: {root} does not exist")
        return finish(0)
    live = _live_docs()
    plans = [plan_folder(folder, live, args.force) for folder in _wanted(root, args.project)]
    if args.project and not plans:
        say(f"redcapfs clean: no project folder {args.project!r} under {root}", err=True)
        return finish(2)
    loose = [] if args.project else _dead_mount_files(root, live)
    report = [_apply(plan, args.dry_run) for plan in plans]
    freed = sum(r["bytes"] for r in report)
    for path in loose:
        freed += _size(path)
        if not args.dry_run:
            _remove(path)
    if args.json:
        say(json.dumps({"dry_run": args.dry_run, "projects": report, "other": [str(p) for p in loose],
                        "bytes": freed}, indent=2))
        return finish(0)
    for r in report:
        say(_describe(r, args.dry_run))
    if loose:
        say(f"{'would remove' if args.dry_run else 'removed'} {len(loose)} log or status file(s) of dead mounts")
    say(f"{'would free' if args.dry_run else 'freed'} {human(freed)}")
    return finish(0)


def _apply(plan: Plan, dry_run: bool) -> dict:
    size = 0 if plan.busy else sum(_size(p) for p in plan.remove)
    if not dry_run and not plan.busy:
        for path in plan.remove:
            _remove(path)
        if plan.whole:
            shutil.rmtree(plan.folder, ignore_errors=True)
    return {"key": plan.folder.name, "project": plan.label, "busy": plan.busy or None, "bytes": size,
            "removed": [p.name for p in plan.remove] if not plan.busy else [], "kept": plan.keep}


def _describe(r: dict, dry_run: bool) -> str:
    head = f"{r['key']}  {r['project']}"
    if r["busy"]:
        return f"{head}\n    left alone: {r['busy']}"
    verb = "would remove" if dry_run else "removed"
    text = f"{head}\n    {verb} {len(r['removed'])} item(s), {human(r['bytes'])}"
    return text + "".join(f"\n    kept {k}" for k in r["kept"])
