"""The client's pooled connections, which let a streamed upload's body put its own chunks on the socket.

urllib3 sends each chunk of a chunked body as ``b"%x\\r\\n%b\\r\\n" % (len, chunk)``:
a copy of every byte, with the GIL held, on top of the read from the spool and
the socket's own copy. For a 256 MiB ``cp`` into the mount that copy cost the
daemon about a tenth of its CPU, which the writes and REDCap's side share on a
small machine. So while one of these connections sends a
:class:`~redcapfs.client.chunkedform.ChunkedFileForm`, it hands the form
itself (``form.connection``); the form then writes each piece's framing and
the piece straight to the socket and gives urllib3 an empty chunk, which
urllib3 skips (an empty chunk would end the body). Everything else about the
request (headers, the final zero-length chunk, the answer, timeouts, errors)
stays urllib3's. The connection is set only for the length of ``request``,
and only by a connection of this module: through a proxy (urllib3's own pool
classes) the form yields its pieces for urllib3 to frame, as before.
"""

from __future__ import annotations

from typing import Any

from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.poolmanager import PoolManager


class _LendsItself:
    """``request`` tells a body that can send itself which connection it is on, for as long as it is sent."""

    def request(self, method: str, url: str, body: Any = None, headers: Any = None, **kw: Any) -> None:
        # Only with chunked framing: sent raw (a Content-Length body), the form's framing would be file bytes.
        lend = getattr(body, "sends_itself", False) and kw.get("chunked", False)
        if lend:
            body.connection = self
        try:
            super().request(method, url, body=body, headers=headers, **kw)  # type: ignore[misc]
        finally:
            if lend:
                body.connection = None


class _HTTP(_LendsItself, HTTPConnection):
    pass


class _HTTPS(_LendsItself, HTTPSConnection):
    pass


class _HTTPPool(HTTPConnectionPool):
    ConnectionCls = _HTTP


class _HTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _HTTPS


def install(manager: PoolManager) -> None:
    """Make ``manager`` (an adapter's pool manager, not a proxy's) build this module's connections."""
    manager.pool_classes_by_scheme = {"http": _HTTPPool, "https": _HTTPSPool}
