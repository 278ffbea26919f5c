"""``redcapfs docs [NAME] [--path]``: the documentation, from wherever this copy of redcapfs is installed.

A ``pipx install`` has no source tree, so ``docs/SEMANTICS.md`` means nothing
to its user. The wheel carries ``docs/*.md`` (plus README and CHANGELOG) as
``redcapfs/docs/`` (setup.py copies them at build time); a source checkout
run in place reads its own ``docs/`` folder.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from redcapfs.cliout import finish, say

_PACKAGE = Path(__file__).resolve().parent


def docs_dir() -> Path | None:
    """The installed docs folder, else the source tree's, else None."""
    for candidate in (_PACKAGE / "docs", _PACKAGE.parent / "docs"):
        if (candidate / "SEMANTICS.md").is_file():
            return candidate
    return None


def available(folder: Path) -> dict[str, Path]:
    """``{"semantics": …/SEMANTICS.md, "readme": …}``: names as users type them."""
    found = {path.stem.lower(): path for path in sorted(folder.glob("*.md"))}
    for extra in ("README.md", "CHANGELOG.md"):  # at the top of a source tree, inside the folder in a wheel
        path = folder.parent / extra
        if path.stem.lower() not in found and path.is_file():
            found[path.stem.lower()] = path
    return found


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="redcapfs docs",
                                     description="List the documentation installed with redcapfs, or print one.")
    parser.add_argument("name", nargs="?", help="e.g. semantics, troubleshooting, unsent, status, names, readme")
    parser.add_argument("--path", action="store_true", help="print where the file (or folder) is instead")
    return parser


def main(argv: list[str]) -> int:
    """``redcapfs docs``."""
    args = build_parser().parse_args(argv)
    folder = docs_dir()
    if folder is None:
        say("redcapfs docs: this installation has no docs folder (it was built without them)", err=True)
        return finish(1)
    docs = available(folder)
    if args.name is None:
        if args.path:
            say(str(folder))
            return finish(0)
        say(f"documentation in {folder} (`redcapfs docs NAME` prints one):")
        for name, path in docs.items():
            say(f"  {name:<18} {path.name}")
        return finish(0)
    key = args.name.lower().removesuffix(".md")
    if key not in docs:
        say(f"redcapfs docs: no document {args.name!r}; there are: {', '.join(docs)}", err=True)
        return finish(2)
    say(str(docs[key]) if args.path else docs[key].read_text(encoding="utf-8").rstrip("\n"))
    return finish(0)
