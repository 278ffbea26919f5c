"""Where redcapfs keeps local state, and how those folders are kept private.

The state folder holds the spool: bytes users wrote that have not reached REDCap
yet. Those are clinical files, so every folder here is 0700 and owned by us, and
no path ever contains a record name, a file name or the server's URL (a folder
listing must not leak what a study holds). A project's folder is named by a hash
of its URL and project id instead.

Lookup order of the root: ``$REDCAPFS_STATE_DIR``, then
``$XDG_STATE_HOME/redcapfs``, then ``~/.local/state/redcapfs`` on Linux (or
wherever that folder already exists), else platformdirs' user state folder
(``~/Library/Application Support/redcapfs`` on macOS).
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import stat
import sys
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

log = logging.getLogger(__name__)

PRIVATE_MODE = 0o700
KEY_LENGTH = 16  # hex digits of sha256 naming a project folder
_DEFAULT_PORTS = {"http": 80, "https": 443}


class UnsafeDirectoryError(PermissionError):
    """A folder meant to be private is a symlink, not a folder, or owned by someone else.

    Writing clinical files into it could hand them to another user, so redcapfs
    refuses rather than repairs.
    """

    def __init__(self, path: Path, why: str) -> None:
        super().__init__(errno.EPERM, f"refusing to use {path}: {why}", str(path))
        self.path = path
        self.why = why

    def __str__(self) -> str:
        return f"refusing to use {self.path}: {self.why}"


def private_dir(path: Path) -> Path:
    """Create ``path`` (and parents) if needed and make sure only we can use it.

    An existing folder we own with a looser mode is tightened to 0700 (an old
    umask or a copy may have left it open); a symlink or a folder owned by
    another uid raises :class:`UnsafeDirectoryError`.
    """
    path = Path(path)
    try:
        path.mkdir(mode=PRIVATE_MODE, parents=True, exist_ok=True)
    except FileExistsError:
        pass  # a symlink or a file in the way: reported by the check below
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode):
        raise UnsafeDirectoryError(path, "it is a symbolic link")
    if not stat.S_ISDIR(st.st_mode):
        raise UnsafeDirectoryError(path, "it is not a directory")
    if st.st_uid != os.getuid():
        raise UnsafeDirectoryError(path, f"it is owned by uid {st.st_uid}, not by us (uid {os.getuid()})")
    if stat.S_IMODE(st.st_mode) != PRIVATE_MODE:
        log.info("tightening %s from mode %o to 0700", path, stat.S_IMODE(st.st_mode))
        os.chmod(path, PRIVATE_MODE)
    return path


def _root_candidate(environ: Mapping[str, str]) -> Path:
    """The state root the environment asks for (not yet created)."""
    explicit = environ.get("REDCAPFS_STATE_DIR", "").strip()
    if explicit:
        return Path(explicit).expanduser()
    xdg = environ.get("XDG_STATE_HOME", "").strip()
    if xdg and os.path.isabs(xdg):  # the XDG spec says relative values are to be ignored
        return Path(xdg) / "redcapfs"
    linux = Path.home() / ".local" / "state" / "redcapfs"
    if sys.platform.startswith("linux") or linux.exists():
        return linux
    import platformdirs

    return Path(platformdirs.user_state_dir("redcapfs", appauthor=False))


def state_root_path(environ: Mapping[str, str] | None = None) -> Path:
    """Where the state root is, without creating it (for lookups that must leave nothing behind)."""
    return _root_candidate(os.environ if environ is None else environ)


def state_root(environ: Mapping[str, str] | None = None) -> Path:
    """The private root folder of all redcapfs state, created 0700."""
    return private_dir(_root_candidate(os.environ if environ is None else environ))


def normalize_url(url: str) -> str:
    """The API URL in one canonical spelling, so one server always maps to one folder.

    Scheme and host are lowercased, a default port and any ``user:password@``
    are dropped, query and fragment are dropped, and the path ends in ``/``
    (``…/api`` and ``…/api/`` are the same endpoint).
    """
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"  # IPv6 literal
    try:
        port = parts.port
    except ValueError:
        port = None
    if port is not None and port != _DEFAULT_PORTS.get(scheme):
        host = f"{host}:{port}"
    path = parts.path.rstrip("/") + "/"
    return f"{scheme}://{host}{path}"


def project_key(url: str, project_id: str) -> str:
    """The folder name of one project: a hash, so no URL or name shows in any path."""
    text = normalize_url(url) + "\n" + str(project_id)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:KEY_LENGTH]


def project_dir(url: str, project_id: str) -> Path:
    """The private folder of one project (``state_root()/<key>``), created 0700."""
    return private_dir(state_root() / project_key(url, project_id))
