"""Every error redcapfs raises, and the one table that turns them into errno values.

Two families live here:

* ``RedcapError`` and its subclasses: what the REDCap client raises. Each keeps
  REDCap's own message and says which record/field/event/instance the call was
  about, because that is what a study coordinator needs to act on the error.
* ``FsError`` subclasses: what the filesystem model raises for purely local
  reasons (no such path, name taken, refused operation).

The FUSE layer never picks an errno itself; it calls :func:`errno_for`. Keeping
the table in one place is what keeps the mapping consistent (rclone's three
copies of its translation table are the counter-example).
"""

from __future__ import annotations

import errno


class RedcapfsError(Exception):
    """Base of every error redcapfs raises on purpose."""


# --------------------------------------------------------------------------- API


class RedcapError(RedcapfsError):
    """An error answer from REDCap, or a failure to get any answer.

    ``message`` is REDCap's text (or ours for transport failures); the context
    fields say what the call was about. The API token is never part of it.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        content: str | None = None,
        action: str | None = None,
        record: str | None = None,
        field: str | None = None,
        event: str | None = None,
        instance: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.content = content
        self.action = action
        self.record = record
        self.field = field
        self.event = event
        self.instance = instance

    def context(self) -> str:
        """Say in words which call and which slot this error is about."""
        parts = []
        if self.content:
            parts.append(f"{self.content}{'/' + self.action if self.action else ''}")
        if self.record is not None:
            parts.append(f"record {self.record!r}")
        if self.event:
            parts.append(f"event {self.event!r}")
        if self.field:
            parts.append(f"field {self.field!r}")
        if self.instance is not None:
            parts.append(f"instance {self.instance}")
        if self.status is not None:
            parts.append(f"HTTP {self.status}")
        return ", ".join(parts)

    def __str__(self) -> str:
        ctx = self.context()
        return f"{self.message} ({ctx})" if ctx else self.message


class TransportError(RedcapError):
    """No usable answer: connection refused or reset, DNS failure, dropped body."""


class RequestTimeout(TransportError):
    """The server did not answer within the client's connect or read timeout."""


class TLSError(TransportError):
    """The TLS handshake or certificate verification failed."""


class ProtocolError(RedcapError):
    """The answer does not look like REDCap's API (wrong URL, HTML page, truncated body)."""


class ServerError(RedcapError):
    """REDCap answered 5xx."""


class IpBanned(RedcapError):
    """REDCap's page-hit limiter banned this machine's IP address (HTTP 429 and its ban text).

    A ban lasts until a REDCap administrator lifts it, for every client behind
    the address: no retry or back-off can help, and more calls only add hits,
    so the client makes no further call once it has seen one.
    """

    def __str__(self) -> str:
        return (f"REDCap has banned this machine's IP address (more than its page-hit limit of calls in one "
                f"minute, from this mount or anything else at the same address); it said: {self.message!r}. "
                "A ban lasts until a REDCap administrator lifts it: ask them to. This mount makes no more "
                "calls; unmount and mount again once the ban is lifted")


class StillBanned(IpBanned):
    """A call not made because REDCap banned this IP earlier (the first :class:`IpBanned` said why)."""

    def __str__(self) -> str:
        ctx = self.context()
        return ("no call made: REDCap has banned this machine's IP address (see the first error in the log, "
                "or `redcapfs status`)" + (f" ({ctx})" if ctx else ""))


class BadToken(RedcapError):
    """403 "You do not have permissions to use the API": wrong, missing or revoked token."""


class NoRights(RedcapError):
    """403 for a token that is valid but lacks the right for this call (export, import, status)."""


class BadRequest(RedcapError):
    """Any other 400 answer; REDCap's message says what was wrong."""


class NoSuchRecord(BadRequest):
    """The record does not exist (or has no data in that event)."""


class EmptySlot(BadRequest):
    """The slot holds no file ("There is no file to download/delete for this record")."""


class NotAFileField(BadRequest):
    """The field does not exist or is not a file upload field."""


class InvalidEvent(BadRequest):
    """The event is not one of the project's unique event names."""


class Locked(BadRequest):
    """The record or the field's instrument is locked: writes are refused."""


class TooLarge(BadRequest):
    """The upload is over the server's maximum file size."""


class SignatureField(BadRequest):
    """Signature fields can be downloaded and deleted through the API, not imported."""


class InvalidUpload(BadRequest):
    """ "No valid file was uploaded" / "There was a problem with the uploaded file"."""


# ------------------------------------------------------------------- filesystem


class FsError(RedcapfsError):
    """A refusal decided locally by the filesystem model."""

    def __init__(self, message: str, path: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.path = path

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class NotFound(FsError):
    """No such file or directory in the tree."""


class AlreadyExists(FsError):
    """The name is taken, e.g. a second real file in a slot that already holds one."""


class ReadOnly(FsError):
    """The mount or this part of the tree does not accept writes."""


class NotPermitted(FsError):
    """An operation this filesystem refuses by design (renaming a directory, mkdir in a slot)."""


class AccessDenied(FsError):
    """The token lacks the rights this operation needs."""


class IsADirectory(FsError):
    """A file operation on a directory."""


class NotADirectory(FsError):
    """A directory operation on a file."""


class DirectoryNotEmpty(FsError):
    """rmdir of a directory that still holds something."""


class NameTooLong(FsError):
    """A name over 255 bytes."""


class InvalidArgument(FsError):
    """An argument the operation cannot take."""


class LocalIOError(FsError):
    """The local cache or spool failed (disk full, permissions)."""


class FileChanged(FsError):
    """The file changed on the server while it was being read."""


# The one errno table. Order matters: the first class an error is an instance of
# wins, so subclasses stand before their bases.
_ERRNO_TABLE: tuple[tuple[type[BaseException], int], ...] = (
    (NotFound, errno.ENOENT),
    (AlreadyExists, errno.EEXIST),
    (ReadOnly, errno.EROFS),
    (NotPermitted, errno.EPERM),
    (AccessDenied, errno.EACCES),
    (IsADirectory, errno.EISDIR),
    (NotADirectory, errno.ENOTDIR),
    (DirectoryNotEmpty, errno.ENOTEMPTY),
    (NameTooLong, errno.ENAMETOOLONG),
    (InvalidArgument, errno.EINVAL),
    (FileChanged, errno.ESTALE),
    (LocalIOError, errno.EIO),
    (IpBanned, errno.EIO),  # the server refuses every call: not a permission of this file
    (BadToken, errno.EACCES),
    (NoRights, errno.EACCES),
    (NoSuchRecord, errno.ENOENT),
    (EmptySlot, errno.ENOENT),
    (NotAFileField, errno.ENOENT),
    (InvalidEvent, errno.ENOENT),
    (Locked, errno.EROFS),
    (TooLarge, errno.EFBIG),
    (SignatureField, errno.EPERM),
    (InvalidUpload, errno.EIO),
    (BadRequest, errno.EIO),
    (RequestTimeout, errno.EIO),
    (TransportError, errno.EIO),
    (ProtocolError, errno.EIO),
    (ServerError, errno.EIO),
    (RedcapError, errno.EIO),
    (FileNotFoundError, errno.ENOENT),
    (OSError, errno.EIO),
)


def errno_for(exc: BaseException) -> int:
    """Return the errno the kernel should see for ``exc``.

    An ``OSError`` that already carries an errno (from the local disk) keeps it;
    anything unknown is ``EIO``: an error must never turn into success.
    """
    if isinstance(exc, OSError) and not isinstance(exc, RedcapfsError) and exc.errno:
        return exc.errno
    for cls, code in _ERRNO_TABLE:
        if isinstance(exc, cls):
            return code
    return errno.EIO
