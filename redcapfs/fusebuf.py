"""Answers to libfuse's ``read_buf``: a descriptor and an offset instead of bytes.

A plain ``read`` callback costs, per request, a ``pread`` into a new Python
``bytes``, a ``memmove`` into libfuse's buffer and the Python allocation, all
holding the GIL. With ``read_buf`` we hand libfuse a ``fuse_bufvec`` naming
the cache file's descriptor and offset; libfuse then reads the bytes itself
(``pread`` into its own buffer, without the GIL) and answers the kernel. A
cached file is served with one small struct per request, whatever its size.

libfuse frees what ``read_buf`` returns with ``free()``: the vector (and the
memory of a memory buffer), so both come from libc's ``calloc``. The layout is
fuse_common.h's ``struct fuse_buf`` / ``struct fuse_bufvec`` (libfuse 2.9 and
3.x agree; mfusepy declares ``buf`` as a pointer where the C struct holds an
inline array, so its own declaration is not used here).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from typing import Any

FUSE_BUF_IS_FD = 1 << 1
FUSE_BUF_FD_SEEK = 1 << 2
FUSE_BUF_FD_RETRY = 1 << 3


class Buf(ctypes.Structure):
    """``struct fuse_buf``."""

    _fields_ = [("size", ctypes.c_size_t), ("flags", ctypes.c_int), ("mem", ctypes.c_void_p),
                ("fd", ctypes.c_int), ("pos", ctypes.c_int64)]


class BufVec(ctypes.Structure):
    """``struct fuse_bufvec`` with its one inline buffer."""

    _fields_ = [("count", ctypes.c_size_t), ("idx", ctypes.c_size_t), ("off", ctypes.c_size_t), ("buf", Buf)]


# Room for fields a later libfuse may add after the ones above (it reads them as zero).
_ALLOC = ctypes.sizeof(BufVec) + 64

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_libc.calloc.restype = ctypes.c_void_p
_libc.calloc.argtypes = [ctypes.c_size_t, ctypes.c_size_t]
_libc.malloc.restype = ctypes.c_void_p
_libc.malloc.argtypes = [ctypes.c_size_t]
_libc.free.restype = None
_libc.free.argtypes = [ctypes.c_void_p]


def _vector() -> tuple[int, BufVec]:
    address = _libc.calloc(1, _ALLOC)
    if not address:
        raise MemoryError("calloc failed for a fuse_bufvec")
    vec = BufVec.from_address(address)
    vec.count = 1
    return address, vec


def _store(bufpp: Any, address: int) -> int:
    ctypes.cast(bufpp, ctypes.POINTER(ctypes.c_void_p))[0] = address
    return 0


def reply_fd(bufpp: Any, fd: int, offset: int, size: int) -> int:
    """Point libfuse at ``size`` bytes of ``fd`` from ``offset``, cut at the file's end (libfuse preads them)."""
    size = max(0, min(size, os.fstat(fd).st_size - offset))
    address, vec = _vector()
    vec.buf.size = size
    vec.buf.flags = FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK | FUSE_BUF_FD_RETRY
    vec.buf.fd = fd
    vec.buf.pos = offset
    return _store(bufpp, address)


def reply_bytes(bufpp: Any, data: bytes) -> int:
    """Bytes already in Python (a download still arriving, a writer's copy) in a buffer libfuse frees."""
    address, vec = _vector()
    if data:
        mem = _libc.malloc(len(data))
        if not mem:
            _libc.free(address)
            raise MemoryError("malloc failed for a read buffer")
        ctypes.memmove(mem, data, len(data))
        vec.buf.mem = mem
    vec.buf.size = len(data)
    return _store(bufpp, address)
