"""The one place that picks the FUSE binding: mfusepy over libfuse3, libfuse2 as the fallback.

mfusepy chooses its C library once, when it is imported, and on its own it
prefers libfuse2. libfuse3 is what we want: it hands rename flags through
(``RENAME_NOREPLACE``), lets ``init`` negotiate 1 MiB requests, and is the
version distributions keep maintaining. So this module finds the library
itself and points mfusepy at it before the import; ``REDCAPFS_FUSE=2`` or
``REDCAPFS_FUSE=3`` forces one (the tests run a smoke subset on libfuse2).

The mount options differ between the two: libfuse3 dropped ``big_writes`` and
``atomic_o_trunc`` (always on, or a capability set in ``init``) and moved
``hard_remove`` into its config struct (mfusepy sets that for us). Everything
version-specific about options and capabilities lives here, so fuse_ops.py
and the mount code never branch on the version.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import threading
from pathlib import Path
from types import ModuleType
from typing import Any

from redcapfs import dirfill, writebuf

ENV = "REDCAPFS_FUSE"
MAX_REQUEST = 1 << 20  # 1 MiB reads and writes where the kernel allows (its max_pages limit)

# Debian's package for each library, named in the message when it is missing.
_LIBRARIES = {3: ("fuse3", "libfuse3-3"), 2: ("fuse", "libfuse2")}

# A capability bit of struct fuse_conn_info (fuse_common.h).
CAP_ATOMIC_O_TRUNC = 1 << 3

_loaded: ModuleType | None = None


class BindingError(Exception):
    """No usable libfuse: the message names the package to install."""


def _order(environ: dict[str, str] | os._Environ[str]) -> list[int]:
    wanted = environ.get(ENV, "").strip()
    if wanted in ("", "auto"):
        return [3, 2]
    if wanted in ("2", "3"):
        return [int(wanted)]
    raise BindingError(f"{ENV}={wanted!r}: use 2, 3 or auto")


def find() -> tuple[int, str]:
    """The libfuse major version to use and the library's path, or :class:`BindingError`."""
    order = _order(os.environ)
    for major in order:
        path = ctypes.util.find_library(_LIBRARIES[major][0])
        if path:
            return major, path
    packages = " or ".join(_LIBRARIES[m][1] for m in order)
    forced = f" ({ENV} asks for libfuse{order[0]})" if len(order) == 1 else ""
    raise BindingError(f"libfuse is missing{forced}: install the Debian package {packages} "
                       f"(apt-get install {_LIBRARIES[order[0]][1]} {'fuse3' if order[0] == 3 else 'fuse'})")


def load() -> ModuleType:
    """mfusepy, bound to the chosen libfuse (imported once per process)."""
    global _loaded
    if _loaded is not None:
        return _loaded
    major, path = find()
    previous = os.environ.get("FUSE_LIBRARY_PATH")
    os.environ["FUSE_LIBRARY_PATH"] = path  # read by mfusepy at import time only
    try:
        import mfusepy
    except (OSError, AttributeError) as exc:
        raise BindingError(f"libfuse{major} at {path} cannot be used: {exc}") from None
    finally:
        if previous is None:
            os.environ.pop("FUSE_LIBRARY_PATH", None)
        else:
            os.environ["FUSE_LIBRARY_PATH"] = previous
    if mfusepy.fuse_version_major != major:
        raise BindingError(f"mfusepy loaded libfuse{mfusepy.fuse_version_major}, not libfuse{major} "
                           "(it was imported before redcapfs chose)")
    _loaded = mfusepy
    return mfusepy


# Worker threads libfuse3 may run at once. A worker stays with a request until it is answered, and a
# read of a file still downloading from a slow server waits for its bytes: with libfuse's default of 10,
# ten such readers left every other request (an `ls` in another terminal, a RELEASE) waiting for one of
# them. libfuse starts a worker only when a request finds none free, and 3.12+ keeps it once started: a
# few tens of KiB each (its Python thread state, the stack it touched), only after such a burst.
MAX_WORKERS = 64


def major() -> int:
    """The libfuse major version in use (loads the binding)."""
    return int(load().fuse_version_major)


def mount_options(*, read_only: bool, allow_other: bool, attr_timeout: float,
                  entry_timeout: float, fsname: str = "redcapfs", flags: tuple[str, ...] = ()) -> dict[str, Any]:
    """The keyword options for ``mfusepy.FUSE`` on this libfuse.

    hard_remove: libfuse would otherwise rename a file unlinked while open to
    .fuse_hiddenNNN, which in a one-file slot is a second, refused name (vim
    deletes its open swap file). atomic_o_trunc: O_TRUNC arrives with the open
    instead of a separate truncate that would upload an empty file; libfuse3
    has it as a capability (see :func:`negotiate`), not an option.
    """
    opts: dict[str, Any] = dict(foreground=True, nothreads=False, ro=read_only, allow_other=allow_other,
                                default_permissions=True, hard_remove=True, attr_timeout=attr_timeout,
                                entry_timeout=entry_timeout, fsname=fsname, subtype="redcapfs")
    opts.update(dict.fromkeys(flags, True))  # nosuid, noexec, ... from -o (redcapfs/mount8.py)
    if major() == 2:
        opts.update(atomic_o_trunc=True, big_writes=True, max_write=MAX_REQUEST)
    elif version() >= 312:  # libfuse 3.12 took the option, and made 10 the default
        # max_idle_threads as high: no started worker ever ends (see keep_thread_state), and libfuse 3.14
        # no longer logs "Ignoring invalid max threads value 4294967295" for its own unset default.
        opts.update(max_threads=MAX_WORKERS, max_idle_threads=MAX_WORKERS)
    return opts


def version() -> int:
    """libfuse's own ``fuse_version()``: 29 for 2.9, 314 for 3.14; 0 if it will not say."""
    try:
        return int(load()._libfuse.fuse_version())
    except (AttributeError, OSError, ValueError):
        return 0


def negotiate(conn: Any) -> dict[str, int]:
    """Ask for what the mount needs in ``init``; return what was agreed, for the log.

    libfuse3 derives the kernel's ``max_pages`` from ``max_write`` and caps it
    at its own buffer (1 MiB); reads are then limited by ``max_pages`` and the
    kernel's readahead. libfuse2 caps both at 128 KiB whatever is asked.
    """
    if conn is None:
        return {}
    if major() == 3:  # libfuse2 takes all of this from its options (mount_options)
        if conn.capable & CAP_ATOMIC_O_TRUNC:
            conn.want |= CAP_ATOMIC_O_TRUNC
        conn.max_write = MAX_REQUEST
        conn.max_readahead = MAX_REQUEST  # the kernel keeps the lower of this and its own (128 KiB)
        conn.max_read = 0  # no limit of our own: the kernel's max_pages decides
    return {"max_write": int(conn.max_write), "max_readahead": int(conn.max_readahead),
            "want": int(conn.want), "capable": int(conn.capable)}


def raise_readahead(device: str) -> str:
    """Let reads reach us as 1 MiB requests: raise the mount's readahead (libfuse3 only).

    The kernel caps readahead at 128 KiB for a FUSE mount (what ``init`` can ask
    for is only ever lowered), so a cold ``cp`` out arrives in 128-256 KiB reads
    whatever max_pages allows. Its bdi's ``read_ahead_kb`` can be raised by root
    only; for anyone else this says so and changes nothing.
    """
    if major() != 3:
        return "readahead left at the kernel's default (libfuse2 splits reads at 128 KiB)"
    path = f"/sys/class/bdi/{device}/read_ahead_kb"
    try:
        with open(path, "w") as out:
            out.write(str(MAX_REQUEST >> 10))
    except OSError as exc:
        return f"readahead left at the kernel's default ({path}: {exc.strerror})"
    return f"readahead {MAX_REQUEST >> 10} KiB"


def after_init(mountpoint: str) -> str:
    """What must wait until the kernel has taken init's answer; call from a thread started in init.

    A statfs is queued by the kernel until init is answered, and is served by
    another worker thread of the same daemon (redcapfs and the bench's
    passthrough answer it locally). The readahead can only be raised after
    that, since the kernel sets it from init's answer, only ever lowering it.
    """
    from redcapfs.mountpoint import mount_entry

    os.statvfs(mountpoint)
    entry = mount_entry(Path(mountpoint))
    return raise_readahead(entry[0]) if entry is not None else "readahead left alone (mount not found)"


def block_size() -> int:
    """The ``st_blksize`` to report: cp, rsync and most tools size their buffers by it.

    With libfuse3 a whole 1 MiB write then reaches us in one request (cp's
    default 128 KiB would split it into eight); libfuse2 splits at 128 KiB anyway.
    """
    return MAX_REQUEST if major() == 3 else 128 << 10


_kept = threading.local()  # lives in the thread state: set once that state is kept


def keep_thread_state() -> None:
    """Keep this libfuse worker thread's Python thread state from one callback to the next.

    ctypes enters a callback on a thread Python did not start with
    ``PyGILState_Ensure`` and leaves it with ``PyGILState_Release``, which
    creates a whole thread state and destroys it again around every request:
    its frame stack is mapped and unmapped each time (an mmap, a munmap and a
    gettid per request, and a munmap in a threaded process is a TLB shootdown
    on every core). One more ``Ensure``, never released, keeps the state for
    the thread's life: in a ``find`` of 110,000 directories the daemon's CPU
    fell by a quarter, its system time by 40 %. libfuse3 keeps its workers
    (at most ``max_threads``; none was seen to end under load), so what stays
    is one small state per worker; a worker that did end would leave its state
    (some 20 KiB) behind until exit. libfuse2 ends idle workers beyond ten and
    starts new ones under the next burst, so it is left as it was. The main
    thread's state is Python's own already.
    """
    if threading.current_thread() is not threading.main_thread():
        ctypes.pythonapi.PyGILState_Ensure()
    _kept.state = True


def copies_buffers() -> bool:
    """Whether this libfuse has ``fuse_buf_copy`` (2.9 and later), which ``write_buf`` needs (writebuf.py)."""
    return hasattr(load()._libfuse, "fuse_buf_copy")


def _direct(operations: Any, fi: Any) -> None:
    """FOPEN_DIRECT_IO for a handle the operations say bypasses the page cache (fs/kernelpages.py)."""
    direct = getattr(operations, "direct_io", None)
    if direct is not None and direct(fi.fh):
        fi.direct_io = 1


def fuse_class() -> Any:
    """``mfusepy.FUSE`` handing rename flags and ftruncate's handle to the operations (mfusepy 3.1 drops both)."""
    mfusepy = load()

    wrapper = mfusepy.FUSE._wrapper
    copier = writebuf.Copier(mfusepy._libfuse) if copies_buffers() else None

    class Fuse(mfusepy.FUSE):  # type: ignore[name-defined]
        def open(self, path: bytes, fip: Any) -> int:
            # FOPEN_KEEP_CACHE when the operations say the kernel's pages are of the version this open
            # reads (fs/kernelpages.py); otherwise the kernel drops them, as it always did.
            fi = fip.contents
            fi.fh = self.operations.open(path.decode(self.encoding, self.errors), fi.flags)
            keeps = getattr(self.operations, "keeps_pages", None)
            if keeps is not None and keeps(fi.fh):
                fi.keep_cache = 1
            _direct(self.operations, fi)
            return 0

        def create(self, path: bytes, mode: int, fip: Any) -> int:
            fi = fip.contents
            fi.fh = self.operations.create(path.decode(self.encoding, self.errors), mode, fi.flags)
            _direct(self.operations, fi)
            return 0

        def read(self, path: bytes | None, buf: Any, size: int, offset: int, fip: Any) -> int:
            # mfusepy's read takes a bytes object from the operations and copies it into libfuse's
            # buffer; operations with ``read_into`` fill that buffer themselves (one copy fewer, and
            # no 1 MiB object per request). The bench's passthrough has none: it keeps mfusepy's way.
            into = getattr(self.operations, "read_into", None)
            if into is None:
                return int(super().read(path, buf, size, offset, fip))
            view = memoryview((ctypes.c_char * size).from_address(ctypes.addressof(buf.contents))).cast("B")
            name = None if path is None else path.decode(self.encoding, self.errors)
            return int(into(name, view, offset, fip.contents.fh))

        def write_buf(self, path: bytes | None, bufv: Any, offset: int, fip: Any) -> int:
            # Registered only for operations with ``write_buf`` (the bench's passthrough has none and
            # keeps mfusepy's ``write``): they get the request's bytes as a writebuf.WriteSource.
            assert copier is not None  # registered only where libfuse has fuse_buf_copy (RedcapOperations)
            source = writebuf.WriteSource(copier, ctypes.cast(bufv, ctypes.c_void_p).value or 0)
            name = None if path is None else path.decode(self.encoding, self.errors)
            return int(self.operations.write_buf(name, source, offset, fip.contents.fh))

        if mfusepy.fuse_version_major == 3:
            def _wrapper(self, func: Any, *args: Any, **kwargs: Any) -> Any:
                """Every callback: keep the worker's Python thread state (libfuse3 only), then mfusepy's wrapper."""
                if not getattr(_kept, "state", False):
                    keep_thread_state()
                return wrapper(self, func, *args, **kwargs)

            def rename_fuse_3(self, old: bytes, new: bytes, flags: int) -> int:
                ops = self.operations
                return int(ops.rename(old.decode(self.encoding, self.errors),
                                      new.decode(self.encoding, self.errors), flags) or 0)

            def truncate_fuse_3(self, path: bytes | None, length: int, fip: Any) -> int:
                # libfuse3 has no ftruncate: an ftruncate arrives here with the handle,
                # which mfusepy 3.1 drops; the tree must apply it to that open file.
                fh = fip.contents.fh if fip else None
                name = None if path is None else path.decode(self.encoding, self.errors)
                return int(self.operations.truncate(name, length, fh) or 0)

            def readdir_fuse_3(self, path: bytes | None, buf: Any, filler: Any, offset: int, fip: Any,
                               flags: int) -> int:
                return dirfill.readdir(mfusepy, self, path, buf, filler, offset, fip, flags)  # READDIRPLUS

    return Fuse
