"""Getting the REDCap API token from the user without ever exposing it.

A token opens a whole project of clinical data, so it is taken only from places
other users cannot see: a private file, the environment, or a hidden prompt;
never from argv (``ps`` shows argv to everyone). Error messages describe the
token's problem but never repeat the token.

Order: ``--token-file`` path, else ``REDCAP_API_TOKEN``, else a hidden prompt if
stdin is a terminal, else an error saying how to give one. The mount's parent
hands the token to its child through an inherited pipe (``read_token_from_fd``).
"""

from __future__ import annotations

import getpass
import logging
import os
import re
import stat
import sys
from collections.abc import Mapping
from typing import TextIO

log = logging.getLogger(__name__)

ENV_VAR = "REDCAP_API_TOKEN"
PROMPT = "REDCap API token: "
MAX_TOKEN_BYTES = 4096  # far above any real token; bounds what a wrong file makes us read
_TOKEN_RE = re.compile(r"[0-9A-Fa-f]{32}")

HOW_TO_GIVE = (
    "no REDCap API token given: put it in a file only you can read and pass --token-file FILE, "
    f"or set {ENV_VAR}, or run from a terminal to be asked for it"
)


class CredentialError(Exception):
    """The token is missing, badly stored or malformed. The message is for the user and never holds the token."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def check_token(token: str) -> str:
    """Return ``token`` if it looks like a REDCap API token (32 hex digits).

    Catching a pasted wrong value here gives a clear message instead of a
    later "You do not have permissions" from the server.
    """
    if not _TOKEN_RE.fullmatch(token):
        raise CredentialError("the token is not 32 hexadecimal characters")
    return token


def _first_line(text: str) -> str:
    """The token part of a file or pipe: surrounding whitespace stripped, first line only."""
    stripped = text.strip()
    return stripped.splitlines()[0].strip() if stripped else ""


def _open_token_file(path: str) -> int:
    """Open the token file for reading, turning OS errors into user-facing messages."""
    try:
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOCTTY)
    except OSError as exc:
        raise CredentialError(f"cannot read the token file {path}: {exc.strerror}") from None


def _check_token_file(fd: int, path: str) -> None:
    """Refuse a token file others could read or change: the token would no longer be secret."""
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        raise CredentialError(f"the token file {path} is not a regular file")
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o077:
        raise CredentialError(
            f"the token file {path} can be read or written by other users (mode {mode:04o}); "
            f"make it private with: chmod 600 {path}"
        )


def _read_token_file(path: str) -> str:
    """The token stored in ``path``, after checking the file is private."""
    fd = _open_token_file(path)
    try:
        _check_token_file(fd, path)
        data = os.read(fd, MAX_TOKEN_BYTES)
    except OSError as exc:
        raise CredentialError(f"cannot read the token file {path}: {exc.strerror}") from None
    finally:
        os.close(fd)
    token = _first_line(data.decode("utf-8", "replace"))
    if not token:
        raise CredentialError(f"the token file {path} is empty")
    return token


def _is_tty(stdin: TextIO | None) -> bool:
    """Whether a prompt can be shown; a closed or missing stdin cannot prompt."""
    try:
        return stdin is not None and stdin.isatty()
    except (ValueError, OSError):
        return False


def _prompt() -> str:
    """Ask for the token without echoing it."""
    try:
        return getpass.getpass(PROMPT).strip()
    except EOFError:
        raise CredentialError("no REDCap API token was entered") from None


def read_token(
    token_file: str | None,
    *,
    environ: Mapping[str, str] = os.environ,
    stdin: TextIO | None = sys.stdin,
    interactive: bool | None = None,
) -> str:
    """The API token, from the first source that has one (see the module docstring).

    ``interactive`` forces prompting on or off; ``None`` means "if stdin is a tty".
    """
    if token_file:
        token = _read_token_file(token_file)
        log.debug("API token read from a token file")
    elif environ.get(ENV_VAR, "").strip():
        token = environ[ENV_VAR].strip()
        log.debug("API token read from %s", ENV_VAR)
    elif interactive if interactive is not None else _is_tty(stdin):
        token = _prompt()
    else:
        raise CredentialError(HOW_TO_GIVE)
    return check_token(token)


def _read_line(fd: int) -> bytes:
    """Bytes up to the first newline (or EOF), bounded: the pipe's writer may be gone or hostile."""
    buf = bytearray()
    while len(buf) < MAX_TOKEN_BYTES and b"\n" not in buf:
        chunk = os.read(fd, MAX_TOKEN_BYTES - len(buf))
        if not chunk:
            break
        buf += chunk
    return bytes(buf).split(b"\n", 1)[0]


def read_token_from_fd(fd: int) -> str:
    """Read the token the parent process wrote into pipe ``fd``, then close ``fd``.

    Used by the mount's child process: a pipe is visible to nobody else, unlike
    argv or the environment of a long-running daemon.
    """
    try:
        line = _read_line(fd)
    except OSError as exc:
        raise CredentialError(f"cannot read the token from file descriptor {fd}: {exc.strerror}") from None
    finally:
        try:
            os.close(fd)
        except OSError:
            pass
    token = line.decode("ascii", "replace").strip()
    if not token:
        raise CredentialError("no REDCap API token was passed to the mount process")
    return check_token(token)
