"""``redcapfs status [MOUNTPOINT] [--json]``: what every mount of this user is doing.

It reads the status files the mounts keep (``status.py``); it makes no API call
and needs no token. The text form is for people, ``--json`` (an array, one
object per mount, keys in ``docs/status.md``) for scripts.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from redcapfs import status

_UNITS = ("B", "KiB", "MiB", "GiB", "TiB")


def human(n: int | float | None) -> str:
    """``1536`` -> ``1.5 KiB``."""
    if n is None:
        return "?"
    value = float(n)
    for unit in _UNITS:
        if value < 1024 or unit == _UNITS[-1]:
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"  # not reached


def _slot(t: dict[str, Any]) -> str:
    parts = [t.get("record"), t.get("event"), t.get("field"), t.get("instance"), t.get("name")]
    return "/".join(str(p) for p in parts if p not in (None, ""))


def _transfer_line(t: dict[str, Any]) -> str:
    total = t.get("bytes_total")
    done = human(t.get("bytes_done", 0))
    of = f" of {human(total)}" if total is not None else ""
    retry = f", attempt {t['attempts']}" if int(t.get("attempts") or 0) > 1 else ""
    return f"    {t.get('kind', '?')} {_slot(t)}: {done}{of}, {t.get('seconds', 0):.0f} s{retry}"


def _options_line(doc: dict[str, Any]) -> str:
    given = [item for value in doc.get("options_given") or [] for item in str(value).split(",") if item]
    return ",".join(given) if given else "(defaults)"


def _rate_line(doc: dict[str, Any]) -> str:
    calls = doc.get("calls") or {}
    rate = doc.get("rate") or {}
    limit = rate.get("limit")
    text = f"  API calls: {calls.get('total', 0)}"
    if calls.get("failed"):
        text += f" ({calls['failed']} failed)"
    text += f"; rate {rate.get('per_second', 0):g}/s over {rate.get('window_seconds', 0):g} s, limit "
    text += f"{limit:g}/s" if limit else "none"
    if limit and rate.get("burst"):
        text += f", burst {rate['burst']:g}"
    if rate.get("throttled_seconds"):
        text += f" (waited {rate['throttled_seconds']:g} s for it)"
    banned = doc.get("banned")
    if banned:
        text += (f"\n  BANNED: REDCap has banned this IP address ({banned.get('message')}); no calls are made. "
                 "A REDCap administrator must lift the ban; then remount")
    return text


def format_mount(doc: dict[str, Any]) -> str:
    """The text block of one mount."""
    state = doc.get("state", "?")
    lines = [f"{doc.get('mountpoint')}  {state}  (pid {doc.get('pid')}, since {doc.get('started')})"]
    if doc.get("mode") == "webdav":
        lines.append(f"  WebDAV share (redcapfs serve webdav), user {doc.get('share_user', '?')}")
    lines.append(f"  project {doc.get('project_id')} \"{doc.get('title', '')}\" at {doc.get('url')}"
                 + (f" (profile {doc['profile']})" if doc.get("profile") else ""))
    if "tls" in doc:
        how = f"https, trusting {doc.get('trust')}" if doc.get("tls") else "plain http, no TLS"
        lines.append(f"  connection: {how}" + (f", proxy {doc['proxy']}" if doc.get("proxy") else ""))
    lines.append(f"  options: {_options_line(doc)}")
    if state == "dead":
        lines.append(f"  the mount process died; last status {doc.get('updated')}")
        if doc.get("kernel_mounted"):
            lines.append(f"  its mount is stale: clear it with `fusermount3 -u {doc.get('mountpoint')}`")
    lines.append(_rate_line(doc))
    flying = doc.get("in_flight") or []
    lines.append(f"  in flight: {len(flying)}" if flying else "  in flight: none")
    lines.extend(_transfer_line(t) for t in flying)
    lines.append(f"  unsent {doc.get('unsent', 0)}, incomplete {doc.get('incomplete', 0)}, "
                 f"conflict {doc.get('conflict', 0)}" + ("  (see `redcapfs unsent`)" if doc.get("unsent") else ""))
    lines.append(f"  cache {human(doc.get('cache_bytes', 0))} of {human(doc.get('cache_limit'))}, "
                 f"trash {human(doc.get('trash_bytes', 0))}")
    if doc.get("log_file"):
        lines.append(f"  log: {doc['log_file']}")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="redcapfs status",
        description="Show every redcapfs mount of this user: project, transfers in flight, unsent files, "
                    "API calls and rate, cache use. Reads local status files only (no API call).")
    parser.add_argument("mountpoint", nargs="?", metavar="MOUNTPOINT|PROFILE",
                        help="only this mount, or the mounts of this profile")
    parser.add_argument("--profile", help="only the mounts made with this profile")
    parser.add_argument("--json", action="store_true", help="a JSON array, one object per mount")
    return parser


def main(argv: list[str]) -> int:
    """``redcapfs status``."""
    args = build_parser().parse_args(argv)
    if args.profile is None and args.mountpoint is not None and not os.path.isdir(args.mountpoint):
        from redcapfs.profiles import is_profile

        if is_profile(args.mountpoint):
            args.profile, args.mountpoint = args.mountpoint, None
    if args.profile is not None:
        docs = [doc for doc in status.read_all() if doc.get("profile") == args.profile]
    elif args.mountpoint is not None:
        doc = status.find(args.mountpoint)
        if doc is None:
            print(f"redcapfs status: {args.mountpoint} is not a redcapfs mount "
                  f"(no status for it under {status.mounts_dir()})", file=sys.stderr)
            return 1
        docs = [doc]
    else:
        docs = status.read_all()
    if args.json:
        text = json.dumps(docs, indent=2, sort_keys=True)
    elif docs:
        text = "\n\n".join(format_mount(doc) for doc in docs)
    else:
        text = "no redcapfs mounts"
    return _emit(text)


def _emit(text: str) -> int:
    """Print ``text``; a reader that went away (``| head``) ends the output quietly, not with a traceback."""
    try:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # the flush at exit must not fail again
        os.close(devnull)
        return 0
    return 0
