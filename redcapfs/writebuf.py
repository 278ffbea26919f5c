"""A FUSE write's bytes from libfuse's buffer straight into the spool file, never through a Python object.

Without ``write_buf``, mfusepy copies each WRITE request's bytes out of
libfuse's buffer into a new ``bytes`` (1 MiB per request), which ``os.pwrite``
then copies into the page cache. With ``write_buf`` the operations get a
:class:`WriteSource` and hand it the spool file's descriptor, and
``fuse_buf_copy`` writes libfuse's buffer with one ``pwrite``: one copy and one
1 MiB allocation less per request, and the GIL is let go for the copy.

libfuse would splice requests through a pipe instead (one copy fewer again),
but only where it may size the pipe above ``/proc/sys/fs/pipe-max-size``
(1 MiB by default; a 1 MiB write needs 1 MiB and a header): that takes
CAP_SYS_RESOURCE, so for an ordinary user it reads into memory, and
``fuse_buf_copy`` handles either. Lowering ``max_write`` to fit the pipe was
measured and is slower: every 1 MiB ``write`` of ``cp`` then costs two requests.

The layout of ``struct fuse_buf``/``fuse_bufvec`` is fuse_common.h's (identical in
libfuse 2.9 and 3): a vector holds its first buffer inline, which mfusepy 3.1
declares as a pointer; only this module's declaration is ever used to build one.
"""

from __future__ import annotations

import ctypes
import os
from typing import Any

# enum fuse_buf_flags (fuse_common.h)
FUSE_BUF_IS_FD = 1 << 1
FUSE_BUF_FD_SEEK = 1 << 2


class _Buf(ctypes.Structure):
    _fields_ = [("size", ctypes.c_size_t), ("flags", ctypes.c_int), ("mem", ctypes.c_void_p),
                ("fd", ctypes.c_int), ("pos", ctypes.c_int64)]


class _BufVec(ctypes.Structure):
    _fields_ = [("count", ctypes.c_size_t), ("idx", ctypes.c_size_t), ("off", ctypes.c_size_t),
                ("buf", _Buf * 1)]


class Copier:
    """libfuse's ``fuse_buf_size`` and ``fuse_buf_copy``, bound once per process."""

    def __init__(self, lib: Any) -> None:
        self.size_of = lib.fuse_buf_size
        self.size_of.restype = ctypes.c_size_t
        self.size_of.argtypes = [ctypes.c_void_p]
        self.copy = lib.fuse_buf_copy  # ctypes lets go of the GIL for the copy itself
        self.copy.restype = ctypes.c_ssize_t
        self.copy.argtypes = [ctypes.POINTER(_BufVec), ctypes.c_void_p, ctypes.c_int]


class WriteSource:
    """One WRITE request's bytes, still in libfuse's hands: copied into a file, or taken as bytes.

    The semantics see only this: ``size``, :meth:`into_fd` for a spool file and
    :meth:`take` where the bytes are needed in memory (the File Repository's writes).
    Valid only during the ``write_buf`` callback that made it.
    """

    def __init__(self, copier: Copier, src: int) -> None:
        self._copier = copier
        self._src = src  # address of libfuse's struct fuse_bufvec
        self.size = int(copier.size_of(src))

    def into_fd(self, fd: int, offset: int) -> int:
        """Write the bytes at ``offset`` of ``fd``; returns how many were written (OSError on failure)."""
        dst = _BufVec(count=1, idx=0, off=0)
        dst.buf[0] = _Buf(size=self.size, flags=FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK, mem=None, fd=fd, pos=offset)
        done = int(self._copier.copy(ctypes.byref(dst), self._src, 0))
        if done < 0:
            raise OSError(-done, os.strerror(-done))
        return done

    def take(self) -> bytes:
        """The bytes themselves, in one new object."""
        out = ctypes.create_string_buffer(self.size)
        dst = _BufVec(count=1, idx=0, off=0)
        dst.buf[0] = _Buf(size=self.size, flags=0, mem=ctypes.addressof(out), fd=-1, pos=0)
        done = int(self._copier.copy(ctypes.byref(dst), self._src, 0))
        if done < 0:
            raise OSError(-done, os.strerror(-done))
        return out.raw[:done]
