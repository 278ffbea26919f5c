"""The share's status table agrees with the mount's errno table for every redcapfs error."""

from __future__ import annotations

import errno
import inspect

import pytest

from redcapfs import errors as E
from redcapfs.webdav.statuses import status_for

# errno on the mount -> the statuses the share may answer for the same error
SAME_MEANING = {
    errno.ENOENT: {404},
    errno.EEXIST: {409},
    errno.EROFS: {403},
    errno.EPERM: {403},
    errno.EACCES: {403},
    errno.EISDIR: {409},
    errno.ENOTDIR: {409},
    errno.ENOTEMPTY: {409},
    errno.ENAMETOOLONG: {414},
    errno.EINVAL: {400},
    errno.ESTALE: {409},
    errno.EFBIG: {413},
    errno.EIO: {500, 502, 504},
}

CLASSES = [cls for _, cls in inspect.getmembers(E, inspect.isclass)
           if issubclass(cls, E.RedcapfsError) and cls not in (E.RedcapfsError,)]


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_every_error_has_the_mounts_meaning(cls: type) -> None:
    exc = cls("REDCap said no")
    assert status_for(exc) in SAME_MEANING[E.errno_for(exc)]


def test_local_disk_errors() -> None:
    assert status_for(OSError(errno.ENOSPC, "No space left on device")) == 507
    assert status_for(FileNotFoundError(errno.ENOENT, "gone")) == 404
    assert status_for(RuntimeError("unexpected")) == 500, "an unknown error is never success"
    assert status_for(E.RequestTimeout("read timed out")) == 504
