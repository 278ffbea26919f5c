"""The ``redcapfs`` command. Subcommands are dispatched to the module that owns them.

Only ``sandbox`` exists so far; ``mount``, ``unmount``, ``demo``, ``unsent`` and
``retry`` arrive with the filesystem.
"""

from __future__ import annotations

import sys
from typing import Optional

USAGE = """usage: redcapfs COMMAND [ARGS]

commands:
  sandbox [PROJECT] [options]   run the REDCap-compatible sandbox API server (see docs/sandbox.md)
"""


def main(argv: Optional[list[str]] = None) -> int:
    """Entry point of the console script."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(USAGE, end="")
        return 0
    command, rest = args[0], args[1:]
    if command == "sandbox":
        from .sandbox.cli import main as sandbox_main

        return sandbox_main(rest)
    print(f"redcapfs: unknown command {command!r}\n{USAGE}", end="", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
