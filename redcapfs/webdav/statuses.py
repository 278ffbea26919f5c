"""The one table that turns redcapfs errors into HTTP statuses, as ``errors.errno_for`` does for errno.

The WebDAV layer never picks a status itself: every exception a ``Tree`` call
raises goes through :func:`dav_error`, so a refusal means the same over the
share as it does on the mount (an occupied slot is the mount's ``EEXIST`` and
the share's 409, a locked record ``EROFS`` and 403, a failed upload ``EIO``
and a 5xx). Upstream failures are gateway errors (502/504): the client did
nothing wrong, REDCap or the network failed. A full local disk is 507, the
status WebDAV defines for "no room to store this".
"""

from __future__ import annotations

import errno

from wsgidav.dav_error import DAVError

from redcapfs import errors as E

# Order matters: the first class an error is an instance of wins, so subclasses stand before their bases.
_STATUS_TABLE: tuple[tuple[type[BaseException], int], ...] = (
    (E.NotFound, 404),
    (E.AlreadyExists, 409),       # a second name in a slot that holds a file (EEXIST)
    (E.ReadOnly, 403),            # ro share (EROFS)
    (E.NotPermitted, 403),        # refused by design: mkdir in a slot, rmdir of a record (EPERM)
    (E.AccessDenied, 403),        # the token lacks import rights (EACCES)
    (E.IsADirectory, 409),
    (E.NotADirectory, 409),
    (E.DirectoryNotEmpty, 409),   # ENOTEMPTY
    (E.NameTooLong, 414),
    (E.InvalidArgument, 400),     # a name REDCap would store differently (EINVAL)
    (E.FileChanged, 409),         # ESTALE: changed on the server while read
    (E.LocalIOError, 500),
    (E.BadToken, 403),
    (E.NoRights, 403),
    (E.NoSuchRecord, 404),
    (E.EmptySlot, 404),
    (E.NotAFileField, 404),
    (E.InvalidEvent, 404),
    (E.Locked, 403),              # locked record or form (EROFS)
    (E.TooLarge, 413),            # over REDCap's upload limit (EFBIG)
    (E.SignatureField, 403),      # EPERM
    (E.InvalidUpload, 502),       # REDCap refused the bytes (EIO)
    (E.BadRequest, 502),
    (E.RequestTimeout, 504),
    (E.TransportError, 502),
    (E.ProtocolError, 502),
    (E.ServerError, 502),
    (E.RedcapError, 502),
    (FileNotFoundError, 404),
    (OSError, 500),
)

# Local-disk errno values with a status of their own (the spool or the cache filled the disk).
_ERRNO_STATUS = {errno.ENOSPC: 507, errno.EDQUOT: 507, errno.EFBIG: 413, errno.EROFS: 403, errno.EACCES: 403}


def status_for(exc: BaseException) -> int:
    """The HTTP status a WebDAV client should see for ``exc``; anything unknown is 500, never success."""
    if isinstance(exc, DAVError):
        return int(exc.value)
    if isinstance(exc, OSError) and not isinstance(exc, E.RedcapfsError) and exc.errno in _ERRNO_STATUS:
        return _ERRNO_STATUS[exc.errno]
    for cls, status in _STATUS_TABLE:
        if isinstance(exc, cls):
            return status
    return 500


def dav_error(exc: BaseException) -> DAVError:
    """``exc`` as the DAVError WsgiDAV sends; the message says what REDCap or the slot rule said."""
    if isinstance(exc, DAVError):
        return exc
    return DAVError(status_for(exc), context_info=str(exc) or type(exc).__name__, src_exception=exc)
