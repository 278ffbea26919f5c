"""Names that editors and copy tools use for temporary files: these stay local.

Tools rarely write a file in place. rsync writes ``.NAME.XXXXXX`` and renames it,
Python's ``tempfile`` and ``mktemp`` make ``tmpXXXXXXXX`` and ``tmp.XXXXXXXXXX``;
vim probes with ``4913``, keeps ``.NAME.swp`` and a ``NAME~`` backup; LibreOffice
keeps ``.~lock.NAME#`` and saves through ``luXXXX.tmp``. Uploading those would
put junk into a slot that holds one clinical file, or be refused because the
slot is occupied, so names matching these patterns are kept on local disk and
only a rename onto a real name uploads.

Patterns are shell globs (``fnmatch``, case-sensitive) matched against the
whole name. The user changes the list with ``-o temp_names=SPEC``
(docs/temp-names.md): ``+PAT`` adds, ``-PAT`` removes a default, a list with
neither replaces the defaults; items are separated by ``:``.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable

DEFAULT_PATTERNS: tuple[str, ...] = (
    ".*.[A-Za-z0-9][A-Za-z0-9][A-Za-z0-9][A-Za-z0-9][A-Za-z0-9][A-Za-z0-9]",  # rsync .NAME.XXXXXX
    "4913",             # vim's "can I create files here" probe (4913, 5036, …: see VIM_PROBE)
    ".*.sw[a-p]",       # vim swap files .NAME.swp, .swo, .swn, …
    ".*.sw[q-z]",
    "*~",               # vim/emacs backups NAME~
    "#*#",              # emacs auto-save #NAME#
    ".#*",              # emacs lock .#NAME
    ".~lock.*#",        # LibreOffice lock file
    "lu*.tmp",          # LibreOffice save-through temp file
    ".goutputstream-*",  # GNOME (gio) atomic save
    "~$*",              # Microsoft Office owner file
    "*.crdownload",     # Chromium download in progress
    "*.part",           # Firefox and others, download in progress
    "._*",              # macOS AppleDouble side files (Finder on a share)
    ".DS_Store",        # macOS Finder folder settings
    "Thumbs.db",        # Windows Explorer thumbnails
    "desktop.ini",      # Windows Explorer folder settings
    "~WRL*.tmp",        # Microsoft Office save-through temporary file
    "tmp" + "[a-z0-9_]" * 8,        # Python's tempfile (NamedTemporaryFile, mkstemp): tmp + 8 of [a-z0-9_]
    "tmp." + "[A-Za-z0-9]" * 10,    # mktemp's default template tmp.XXXXXXXXXX
)

# vim tries 4913, then 4913 + 123*k while the name exists.
_VIM_PROBE = re.compile(r"[0-9]{4,6}")


def _is_vim_probe(name: str) -> bool:
    return bool(_VIM_PROBE.fullmatch(name)) and int(name) >= 4913 and (int(name) - 4913) % 123 == 0


class TempNames:
    """Decides whether a file name is a tool's temporary file."""

    def __init__(self, patterns: Iterable[str] = DEFAULT_PATTERNS) -> None:
        self._patterns = tuple(dict.fromkeys(patterns))
        self._regexes = [re.compile(fnmatch.translate(p)) for p in self._patterns]
        self._vim_probe = "4913" in self._patterns

    @property
    def patterns(self) -> tuple[str, ...]:
        return self._patterns

    def is_temp(self, name: str) -> bool:
        if self._vim_probe and _is_vim_probe(name):
            return True
        return any(regex.fullmatch(name) for regex in self._regexes)

    @classmethod
    def from_option(cls, value: str | None) -> TempNames:
        """Parse ``-o temp_names=SPEC`` (None or empty: the defaults)."""
        if not value:
            return cls()
        items = [item for item in value.split(":") if item]
        if not any(item[0] in "+-" for item in items):
            return cls(items)
        patterns = list(DEFAULT_PATTERNS)
        for item in items:
            if item.startswith("+"):
                patterns.append(item[1:])
            elif item.startswith("-"):
                if item[1:] not in patterns:
                    raise ValueError(f"temp_names: {item[1:]!r} is not in the list")
                patterns.remove(item[1:])
            else:
                patterns.append(item)
        return cls(patterns)
