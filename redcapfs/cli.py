"""The ``redcapfs`` command: one table of subcommands, each dispatched to the module that owns its parser.

Subcommands keep their own argparse parsers (they are imported only when
used, so ``redcapfs status`` does not load FUSE). This module adds what holds
the tree together: ``--help`` listing every command, ``--version``,
``help CMD`` (the same text as ``CMD --help``), ``completion bash``, and the
form mount.fuse3(8) uses for ``mount -t fuse.redcapfs`` and fstab lines:
``redcapfs URL MOUNTPOINT -o OPTIONS`` with no subcommand.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from typing import NamedTuple


class Command(NamedTuple):
    module: str
    function: str
    usage: str
    summary: str


COMMANDS: dict[str, Command] = {
    "mount": Command("redcapfs.mount", "main", "[URL|PROFILE] MOUNTPOINT [-o OPTIONS]",
                     "mount a REDCap project (by URL or profile; token from the profile, --token-file, "
                     "REDCAP_API_TOKEN or a prompt)"),
    "unmount": Command("redcapfs.mount", "unmount_main", "MOUNTPOINT",
                       "unmount it, after the uploads in flight (alias: umount)"),
    "demo": Command("redcapfs.demo", "main", "[MOUNTPOINT]", "run the sandbox with the demo project and mount it"),
    "unsent": Command("redcapfs.unsent", "main_unsent", "[PROFILE] [--json]",
                      "list files written through a mount that never reached REDCap"),
    "retry": Command("redcapfs.unsent", "main_retry", "[PROFILE] [ID ...]",
                     "send them again (--incomplete ID, --force ID, --delete ID)"),
    "trash": Command("redcapfs.trashcli", "main_trash", "[--empty [ID ...]]",
                     "list (or empty) the versions that replaces and deletes removed"),
    "restore": Command("redcapfs.trashcli", "main_restore", "ID", "put a version from the trash back"),
    "status": Command("redcapfs.status_cli", "main", "[MOUNTPOINT|PROFILE] [--json]",
                      "what each mount is doing: transfers, unsent files, API calls, cache"),
    "profiles": Command("redcapfs.profiles_cli", "main", "[--json]",
                        "the profiles of ~/.config/redcapfs/config.toml (never their tokens)"),
    "clean": Command("redcapfs.clean", "main", "[--project KEY|PROFILE] [--dry-run] [--force]",
                     "remove local copies no mount is using (cache, spool, trash, logs)"),
    "docs": Command("redcapfs.doccmd", "main", "[NAME]", "print the installed documentation (semantics, ...)"),
    "serve": Command("redcapfs.webdav.command", "main", "webdav URL [--addr H:P]",
                     "serve the project as a WebDAV share (redcapfs docs webdav)"),
    "sandbox": Command("redcapfs.sandbox.cli", "main", "[PROJECT] [options]",
                       "run the REDCap-compatible sandbox API server (redcapfs docs sandbox)"),
    "help": Command("redcapfs.cli", "help_main", "[COMMAND]", "this list, or a command's own --help"),
    "completion": Command("redcapfs.completion", "main", "bash", "print a bash completion script"),
}
ALIASES = {"umount": "unmount"}


def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version("redcapfs")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


def usage() -> str:
    lines = ["usage: redcapfs COMMAND [ARGS]      (redcapfs help COMMAND, or COMMAND --help, for its options)",
             "       redcapfs URL MOUNTPOINT -o OPTIONS   (as mount -t fuse.redcapfs and fstab run it)",
             "       redcapfs --version", "",
             "documentation: `redcapfs docs` lists it (installed with the package), `redcapfs docs semantics` "
             "prints one", "", "commands:"]
    for name, cmd in COMMANDS.items():
        left = f"  {name} {cmd.usage}".rstrip()
        lines.append(f"{left:<38} {cmd.summary}" if len(left) < 38 else f"{left}\n{'':<38} {cmd.summary}")
    return "\n".join(lines) + "\n"


def _entry(name: str) -> Callable[[list[str]], int]:
    cmd = COMMANDS[name]
    return getattr(importlib.import_module(cmd.module), cmd.function)


def help_main(argv: list[str]) -> int:
    """``redcapfs help [CMD]``: the same text as ``redcapfs CMD --help``."""
    if not argv:
        print(usage(), end="")
        return 0
    name = ALIASES.get(argv[0], argv[0])
    if name not in COMMANDS:
        print(f"redcapfs: unknown command {argv[0]!r}\n{usage()}", end="", file=sys.stderr)
        return 2
    if name == "help":
        print(usage(), end="")
        return 0
    return _run(name, ["--help"])


def _run(name: str, rest: list[str]) -> int:
    if name == "serve" and rest[:1] != ["webdav"] and rest[:1] not in (["-h"], ["--help"]):
        print("usage: redcapfs serve webdav URL [--addr HOST:PORT] (see redcapfs help serve)", file=sys.stderr)
        return 2
    if name == "serve":
        rest = rest[1:] if rest[:1] == ["webdav"] else rest
    try:
        return _entry(name)(rest)
    except SystemExit as exc:  # argparse's --help and usage errors
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script: no command prints a traceback when its reader goes away."""
    from redcapfs.cliout import finish, quiet_pipe

    try:
        return finish(_main(list(sys.argv[1:] if argv is None else argv)))
    except BrokenPipeError:  # `redcapfs … | head`: the reader has all it wanted
        quiet_pipe()
        return 0


def _main(args: list[str]) -> int:
    if not args or args[0] in ("-h", "--help"):
        print(usage(), end="")
        return 0
    if args[0] in ("-V", "--version"):
        print(f"redcapfs {version()}")
        return 0
    if "://" in args[0]:  # mount.fuse3: redcapfs URL MOUNTPOINT -o OPTIONS
        return _run("mount", args)
    name = ALIASES.get(args[0], args[0])
    if name not in COMMANDS and not args[0].startswith("-") and len(args) > 1:
        from redcapfs.profiles import is_profile

        if is_profile(args[0]):  # mount -t fuse.redcapfs PROFILE MOUNTPOINT
            return _run("mount", args)
    if name not in COMMANDS:
        print(f"redcapfs: unknown command {args[0]!r}\n{usage()}", end="", file=sys.stderr)
        return 2
    return _run(name, args[1:])


if __name__ == "__main__":
    sys.exit(main())
