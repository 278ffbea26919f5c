"""The ``redcapfs`` command. Subcommands are dispatched to the module that owns them."""

from __future__ import annotations

import sys

USAGE = """usage: redcapfs COMMAND [ARGS]

commands:
  mount URL MOUNTPOINT [-o OPTIONS]  mount a REDCap project (token from REDCAP_API_TOKEN,
                                     --token-file or a prompt); see docs/SEMANTICS.md
  unmount MOUNTPOINT                 unmount it
  demo [MOUNTPOINT]                  run the sandbox with the demo project and mount it
  unsent                             list files written through a mount that never reached REDCap
  retry [ID ...]                     send them again (--incomplete ID, --force ID, --delete ID; see --help)
  trash [--empty [ID ...]]           list (or empty) the versions that replaces and deletes removed
  restore ID                         put a version from the trash back
  status [MOUNTPOINT] [--json]       what each mount is doing: transfers, unsent files, API calls, cache
  serve webdav URL [--addr H:P]      serve the project as a WebDAV share (docs/webdav.md)
  sandbox [PROJECT] [options]        run the REDCap-compatible sandbox API server (docs/sandbox.md)
"""


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(USAGE, end="")
        return 0
    command, rest = args[0], args[1:]
    if command == "sandbox":
        from .sandbox.cli import main as sandbox_main

        return sandbox_main(rest)
    if command == "serve":
        if rest[:1] != ["webdav"]:
            print("usage: redcapfs serve webdav URL [--addr HOST:PORT] (see --help)", file=sys.stderr)
            return 2
        from .webdav.command import main as webdav_main

        return webdav_main(rest[1:])
    if command == "mount":
        from .mount import main as mount_main

        return mount_main(rest)
    if command in ("unmount", "umount"):
        from .mount import unmount_main

        return unmount_main(rest)
    if command == "demo":
        from .demo import main as demo_main

        return demo_main(rest)
    if command == "unsent":
        from .unsent import main_unsent

        return main_unsent(rest)
    if command == "status":
        from .status_cli import main as status_main

        return status_main(rest)
    if command == "retry":
        from .unsent import main_retry

        return main_retry(rest)
    if command in ("trash", "restore"):
        from .trashcli import main_restore, main_trash

        return main_trash(rest) if command == "trash" else main_restore(rest)
    print(f"redcapfs: unknown command {command!r}\n{USAGE}", end="", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
