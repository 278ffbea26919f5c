"""How a listing reaches libfuse3: readdir with attributes for READDIRPLUS, at as little Python cost as can be.

mfusepy 3.1 passes only d_type, so the kernel LOOKUPs every entry it then
enters (``find`` enters every directory): one more round trip and one
``getattr`` in Python per directory. With the attributes (``readdir_plus`` of
the operations: a stat dict for directories, a bare mode for files, whose size
may not be known yet) the kernel keeps the entries for the entry timeout, as a
LOOKUP would have.

Entries carry offsets (their index + 1): libfuse 3.14's buffered mode (every
offset 0) answers READDIRPLUS with node id 0, which tells the kernel nothing,
so the kernel would LOOKUP every directory again. The kernel then asks once more
from the last offset, until an answer is empty; the listing made for the first
request answers those without asking the operations again (``_listings``).

``find`` over 110,000 directories makes 220,000 of these callbacks, so what a
callback does is kept to what the kernel needs: the terminating request is
recognised from the raw path before anything is decoded, and the ``struct
stat`` of a directory entry is built once per distinct stat dict (the
operations hand out one dict for all the field folders of a record), not per entry.

Listings made ahead: with a record's (or an event's) listing the operations
make those of its slot folders too, from memory (``readdir_plus_below``;
fs/listings.py), and the first request for each of those folders within
``AHEAD_FOR`` seconds is answered with it, without calling the operations:
``find`` enters every folder it lists, at once. Each is used once; it is made
only while no change to what listings show is running, and used only while the
generation of those changes is the one read before the parent's listing began
(``listing_state``; fs/changes.py: every FUSE operation but the looks counts, as
does the timer that ends an empty truncation's grace). A change learnt from
REDCap meanwhile (a poll of the log, a records refresh, a design reload) shows
from the next listing, at most ``AHEAD_FOR`` later, as a kernel's entry cached
for the entry timeout would.
"""

from __future__ import annotations

import threading
import time
from typing import Any

FUSE_READDIR_PLUS = 1  # libfuse3's readdir flag: the kernel asked for READDIRPLUS
FUSE_FILL_DIR_PLUS = 2  # the filler flag: this entry carries its attributes

_LISTINGS_KEPT = 64
_listings: dict[bytes | None, list[Any]] = {}  # by raw path: the last listings made at offset 0
_listings_lock = threading.Lock()

AHEAD_FOR = 1.0  # seconds a listing made ahead may answer its folder's first request (the entry timeout's default)
_AHEAD_KEPT = 1024
_ahead: dict[bytes, tuple[float, int, list[Any]]] = {}  # raw path -> (until, generation, listing), used once
_SHOWS_NOTHING = 2  # a listing made ahead of this length holds only "." and ".."
_counts = {"made": 0, "used": 0}  # listings made ahead, and those that answered a request (for the log)

_STATS_KEPT = 256
_stats: dict[int, tuple[Any, Any]] = {}  # id(stat dict or mode) -> (that object, kept alive; its c_stat)


def readdir(mfusepy: Any, fuse: Any, path: bytes | None, buf: Any, filler: Any, offset: int, fip: Any,
            flags: int) -> int:
    """libfuse3's readdir callback (``Fuse.readdir_fuse_3``): fill from ``offset`` until the buffer is full."""
    if offset > 0:
        kept = _listings.get(path)  # one dict look-up, no lock: a dict's get is atomic
        if kept is not None and offset == len(kept):
            return 0  # the request that ends every listing: nothing after the last entry
    plus = bool(flags & FUSE_READDIR_PLUS)
    items = _listing(fuse, path, fip.contents.fh, plus, offset)
    fill_plus = FUSE_FILL_DIR_PLUS if plus else 0
    encoding, errors = fuse.encoding, fuse.errors
    for index in range(offset, len(items)):
        entry, attrs, _ = items[index]
        st = _c_stat(mfusepy, attrs, fuse.use_ns)
        fill = fill_plus if isinstance(attrs, dict) else 0
        if filler(buf, entry.encode(encoding, errors), st, index + 1, fill) != 0:
            break
    return 0


def _listing(fuse: Any, path: bytes | None, fh: int, plus: bool, offset: int) -> list[Any]:
    """The directory's entries: made afresh at offset 0, else the one made for the same listing's start.

    The kernel's first request of a listing is a READDIRPLUS and the rest plain
    READDIRs (``readdirplus=auto``): both are served from the first one's entries.
    """
    if offset > 0:
        kept = _listings.get(path)
        if kept is not None and offset <= len(kept):
            return kept
    ops = fuse.operations
    state = getattr(ops, "listing_state", None)
    generation, busy = state() if state is not None else (None, 1)  # read before anything is listed
    items = _made_ahead(path, generation, busy)
    if items is not None and path is not None and len(items) > _SHOWS_NOTHING:
        ops.listing_used(path.decode(fuse.encoding, fuse.errors))
    if items is None:
        name = None if path is None else path.decode(fuse.encoding, fuse.errors)
        with_attrs = getattr(ops, "readdir_plus", None) if plus else None  # the bench's passthrough has none
        made = with_attrs(name, fh) if with_attrs is not None else ops.readdir(name, fh)
        items = [(item, 0, 0) if isinstance(item, str) else item for item in made]
        if plus and generation is not None and not busy and path is not None:
            _make_ahead(fuse, path, name, generation)
    with _listings_lock:
        _listings[path] = items
        while len(_listings) > _LISTINGS_KEPT:
            del _listings[next(iter(_listings))]
    return items


def _made_ahead(path: bytes | None, generation: int | None, busy: int) -> list[Any] | None:
    """The listing made ahead for ``path``, if it is still good (see the module docstring); used once."""
    if path is None or generation is None or not _ahead:
        return None
    with _listings_lock:
        got = _ahead.pop(path, None)
        if got is None or busy or got[1] != generation or got[0] < time.monotonic():
            return None
        _counts["used"] += 1
    return got[2]


def _make_ahead(fuse: Any, path: bytes, name: str | None, generation: int) -> None:
    """Keep the listings of the slot folders in ``path`` that the operations can make from memory."""
    below = getattr(fuse.operations, "readdir_plus_below", None)
    children = below(name) if below is not None else None
    if not children:
        return
    until = time.monotonic() + AHEAD_FOR
    prefix = path.rstrip(b"/") + b"/"
    encoding, errors = fuse.encoding, fuse.errors
    with _listings_lock:
        _counts["made"] += len(children)
        for component, listing in children.items():
            key = prefix + component.encode(encoding, errors)
            _ahead.pop(key, None)  # a new one goes to the end: the oldest are dropped first
            _ahead[key] = (until, generation, listing)
        if len(_ahead) > _AHEAD_KEPT:  # folders listed and never entered (ls of many records)
            now = time.monotonic()
            for key in [k for k, v in _ahead.items() if v[0] < now]:
                del _ahead[key]
            while len(_ahead) > _AHEAD_KEPT:
                del _ahead[next(iter(_ahead))]


def _c_stat(mfusepy: Any, attrs: dict[str, Any] | int, use_ns: bool) -> Any:
    """The ``struct stat`` for one entry: a stat dict's attributes, or a bare mode (d_type only).

    Kept per object: the operations hand out the same dict for equal attributes,
    and libfuse copies the struct, so one struct serves every entry that shares them.
    """
    key = id(attrs)
    got = _stats.get(key)
    if got is not None and got[0] is attrs:
        return got[1]
    st = mfusepy.c_stat()
    if isinstance(attrs, dict):
        mfusepy.set_st_attrs(st, attrs, use_ns=use_ns)
    else:
        st.st_mode = attrs
    if len(_stats) >= _STATS_KEPT:
        _stats.clear()
    _stats[key] = (attrs, st)
    return st


def summary() -> str:
    """For the log at unmount: how many listings were made ahead and how many of them answered the kernel."""
    with _listings_lock:
        return f"{_counts['used']} of {_counts['made']} listings made ahead answered a request"
