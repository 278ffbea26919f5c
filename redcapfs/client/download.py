"""File downloads (Export File, the File Repository's export): one streamed body into ``out``, retried whole.

``HttpClient.export_file`` and ``repo_export`` are thin entry points over these functions; what they share
is how a body travels:

* The answer is vetted before its first byte reaches ``out``: a reader-facing output (the content cache's,
  ``begin_body``) checks each attempt's name and length, and a nameless html/json/xml answer is peeked at,
  since it may be an error or a login page rather than a file.
* A body that ends short of its ``Content-Length``, or breaks, is a ``TransportError``, never a silently
  truncated file. A broken download is retried from scratch only when ``out`` can be rewound (seek +
  truncate); otherwise the caller must discard ``out``.
* Bytes arrive in 1 MiB blocks (``CHUNK``): the cache tells its readers once per block, not per packet.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import closing
from typing import Any, BinaryIO

import requests

from redcapfs import errors as E

from .base import FileInfo
from .contenttype import parse_content_type
from .responses import PEEK_MIMES, CallContext, download_head_check
from .transport import CHUNK, Progress, Transport, content_length, rewind_point

log = logging.getLogger("redcapfs.client.http")


def export_file(client: Transport, ctx: CallContext, params: dict[str, Any], out: BinaryIO,
                progress: Progress) -> FileInfo:
    """Export File into ``out``: retried from scratch while nothing was written or ``out`` can be rewound."""
    start = rewind_point(out)

    def attempt() -> FileInfo:
        progress.transfer.begin_attempt()
        progress.set(0)
        return download(client, ctx, params, out, progress)

    def may_retry(exc: E.RedcapError) -> bool:
        if progress.written == 0:
            return True
        if start is None:
            log.warning("%s: not retrying, %d bytes already written to an output that cannot be rewound",
                        ctx.label(), progress.written)
            return False
        out.seek(start)
        out.truncate()
        return True

    # a transfer is bounded by progress (the read timeout between bytes), not in total
    return _counted(client, progress, lambda: client._retrying(ctx, attempt, idempotent=True,
                                                              may_retry=may_retry, bounded=False))


def repo_export(client: Transport, ctx: CallContext, params: dict[str, Any], out: BinaryIO,
                progress: Progress) -> FileInfo:
    """A File Repository export: retried (from scratch) only when ``out`` can be rewound."""
    start = rewind_point(out)

    def attempt() -> FileInfo:
        if start is not None:
            out.seek(start)
            out.truncate()
        return download(client, ctx, params, out, progress)

    return _counted(client, progress, lambda: client._retrying(ctx, attempt, idempotent=start is not None))


def _counted(client: Transport, progress: Progress, run: Callable[[], FileInfo]) -> FileInfo:
    """Run the transfer and close its entry in the client's stats (``redcapfs status``), failed or not."""
    ok = False
    try:
        info = run()
        ok = True
        return info
    finally:
        client.stats.end_transfer(progress.transfer, ok)


def download(client: Transport, ctx: CallContext, params: dict[str, Any], out: BinaryIO,
             progress: Progress) -> FileInfo:
    """One attempt: the answer vetted, then its body into ``out``; a short or broken body raises."""
    resp = client._post(ctx, params, stream=True, headers={"Accept-Encoding": "identity"})
    with closing(resp):
        ctype = parse_content_type(resp.headers.get("Content-Type"))
        written = 0
        begin = getattr(out, "begin_body", None)  # a reader-facing output checks each attempt's answer
        if begin is not None:
            begin(ctype.name, content_length(resp))
        if ctype.name is None and ctype.mime in PEEK_MIMES:
            written = _write_peeked(client, ctx, resp, out)
            progress.set(written)
        expected = content_length(resp)
        progress.transfer.total = expected
        try:
            for chunk in resp.iter_content(CHUNK):
                out.write(chunk)
                written += len(chunk)
                progress.set(written)
        except requests.RequestException as exc:
            raise client._transport_error(exc, ctx, f"download broke after {written} bytes") from None
    if expected is not None and written < expected:
        raise E.TransportError(f"download ended after {written} of {expected} bytes", **ctx.kwargs(200))
    return FileInfo(ctype.name, written, ctype.mime or None)


def _write_peeked(client: Transport, ctx: CallContext, resp: requests.Response, out: BinaryIO) -> int:
    """A nameless html/json/xml answer may be an error or a login page rather than a file: look first."""
    head = client._read_some(ctx, resp)
    download_head_check(ctx, head, resp.headers.get("Content-Type"))
    out.write(head)
    return len(head)
