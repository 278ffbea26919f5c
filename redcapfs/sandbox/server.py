"""The sandbox as a running server: one store, one API, a listening socket and its lifecycle.

The HTTP side lives in ``handler`` (connections), ``bodies`` (request bodies),
``faulting`` (what a ``--fault`` does) and ``requestlog``; the REDCap
behaviour in the ``api`` package, which ``inprocess`` also calls without HTTP.

In-process use (tests, tools)::

    server = SandboxServer.from_project(project_def, data_dir=None, config=SandboxConfig())
    with server:                      # starts a background thread
        print(server.url, server.tokens)
"""

from __future__ import annotations

import shutil
import ssl
import tempfile
import threading
from pathlib import Path

from .api import Api
from .config import SandboxConfig, TokenGrant
from .faults import FaultSet
from .handler import SandboxHTTPServer
from .project import ProjectDef
from .requestlog import RequestLog
from .store import Store


def open_project_store(project: ProjectDef, data_dir: str | Path | None) -> tuple[Store, Path | None]:
    """The store in ``data_dir`` (filled from ``project`` if fresh), or in a new private temp dir.

    Returns the store and the directory the caller owns and must remove (``None``
    when the caller gave ``data_dir``).
    """
    owned = None
    if data_dir is None:
        owned = Path(tempfile.mkdtemp(prefix="redcapfs-sandbox-"))  # mode 0700
        data_dir = owned
    store = Store.open(data_dir)
    if not store.initialised:
        store.initialise(project)
    return store, owned


def prepare(store: Store, config: SandboxConfig) -> None:
    """Settings that act on the store: a default token when none was given, ``--lock`` records."""
    if not config.tokens:
        config.tokens = [TokenGrant(store.default_token())]
    for record in config.locks:
        store.set_locked(record)


class SandboxServer:
    """A running (or ready to run) REDCap-compatible API server over one :class:`Store`."""

    def __init__(
        self,
        store: Store,
        config: SandboxConfig,
        faults: FaultSet | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.store = store
        self.config = config
        prepare(store, config)
        self.api = Api(store, config)
        self.faults = faults or FaultSet([])
        self.request_log = RequestLog(config.request_log)
        self.stopping = threading.Event()
        self.httpd = SandboxHTTPServer((host, port), self, ssl_context)
        self._thread: threading.Thread | None = None
        self._owned_dir: Path | None = None

    @classmethod
    def from_project(
        cls,
        project: ProjectDef,
        data_dir: str | Path | None = None,
        config: SandboxConfig | None = None,
        faults: FaultSet | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> SandboxServer:
        """A server for ``project``; without ``data_dir`` a private temporary one, removed by :meth:`stop`."""
        store, owned = open_project_store(project, data_dir)
        server = cls(store, config or SandboxConfig(), faults, host, port, ssl_context)
        server._owned_dir = owned
        return server

    @property
    def port(self) -> int:
        return int(self.httpd.server_address[1])

    @property
    def url(self) -> str:
        host = str(self.httpd.server_address[0])
        host = f"[{host}]" if ":" in host else host
        scheme = "https" if self.httpd.ssl_context is not None else "http"
        return f"{scheme}://{host}:{self.port}/api/"

    @property
    def tokens(self) -> list[str]:
        return [g.token for g in self.config.tokens]

    def serve_forever(self) -> None:
        """Serve until :meth:`shutdown` (from another thread or a signal handler's thread)."""
        self.httpd.serve_forever(poll_interval=0.2)

    def start(self) -> SandboxServer:
        self._thread = threading.Thread(target=self.serve_forever, name="sandbox-http", daemon=True)
        self._thread.start()
        return self

    def shutdown(self) -> None:
        """Stop accepting; wakes hanging faults so they end promptly."""
        self.stopping.set()
        self.httpd.shutdown()

    def stop(self) -> None:
        """Shut down (if running), close everything, remove a private data directory."""
        self.stopping.set()
        if self._thread is not None:
            self.httpd.shutdown()
            self._thread.join(10)
        self.httpd.server_close()
        self.request_log.close()
        self.store.close()
        if self._owned_dir is not None:
            shutil.rmtree(self._owned_dir, ignore_errors=True)

    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
