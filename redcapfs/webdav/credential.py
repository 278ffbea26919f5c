"""The share's own password: random, kept 0600 in the state folder, reused so a mapped drive keeps working.

It is never the REDCap token: the token can read and change the whole project
through the API and must not be typed into a desktop's "remember my
credentials" box, sent in a Basic header or stored by a WebDAV client. One
file per project (named by the project's hash, like its other state), made
with O_EXCL and 0600 inside the 0700 state folder; ``--new-password``
replaces it (the old one stops working at the next start).
"""

from __future__ import annotations

import os
import secrets
import stat
import string
from pathlib import Path

from redcapfs.locations import private_dir, project_key, state_root

USER = "redcapfs"
LENGTH = 24  # letters and digits: about 143 bits, and nothing a dialog, a shell or an argv parser reads specially


class CredentialFileError(Exception):
    """The password file cannot be trusted (wrong owner, readable by others, a link)."""


def password_file(url: str, project_id: str) -> Path:
    return private_dir(state_root() / "webdav") / f"{project_key(url, project_id)}.password"


def load_or_make(path: Path, renew: bool = False) -> str:
    """The password kept at ``path``; a new random one if there is none or ``renew``."""
    if not renew:
        existing = _read(path)
        if existing:
            return existing
    alphabet = string.ascii_letters + string.digits
    password = "".join(secrets.choice(alphabet) for _ in range(LENGTH))
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        os.write(fd, (password + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    return password


def _read(path: Path) -> str | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise CredentialFileError(f"cannot read the share's password file {path}: {exc.strerror}") from None
    try:
        st = os.fstat(fd)
        if st.st_uid != os.getuid() or stat.S_IMODE(st.st_mode) & 0o077:
            raise CredentialFileError(f"{path} is readable by others or not ours; remove it or run with "
                                      "--new-password")
        text = os.read(fd, 4096).decode("utf-8", "replace").strip()
    finally:
        os.close(fd)
    return text or None
