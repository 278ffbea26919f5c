"""The WsgiDAV application and the cheroot server around a ``TreeProvider``.

Configuration choices, each for a client that needs it:

* Digest authentication always, Basic only with TLS: Windows' WebDAV client
  refuses Basic over plain http, and Basic over plain http would show the
  password to anyone on the path.
* WsgiDAV's in-memory lock manager (class 2): Finder mounts a share without
  LOCK read-only, and Office locks what it opens. Locks last as long as the
  server; REDCap has no locks of its own.
* No property manager: REDCap keeps no dead properties (provider.py).
"""

from __future__ import annotations

from typing import Any

from cheroot import wsgi
from wsgidav.wsgidav_app import WsgiDAVApp

from redcapfs.tempnames import TempNames
from redcapfs.tree import Tree
from redcapfs.webdav.provider import TreeProvider

THREADS = 10
BLOCK_SIZE = 1 << 20  # PUT bodies reach the spool and GETs leave the cache in 1 MiB pieces, as on the mount


def make_config(provider: TreeProvider, user: str, password: str, tls: bool) -> dict[str, Any]:
    return {
        "provider_mapping": {"/": provider},
        "http_authenticator": {
            "domain_controller": None,  # SimpleDomainController over simple_dc below
            "accept_basic": tls,
            "accept_digest": True,
            "default_to_digest": True,
            "trusted_auth_header": None,
        },
        "simple_dc": {"user_mapping": {"*": {user: {"password": password}}}},
        "block_size": BLOCK_SIZE,
        "lock_storage": True,
        "property_manager": None,
        "mutable_live_props": ["{DAV:}getlastmodified"],
        "hotfixes": {"emulate_win32_lastmod": True, "re_encode_path_info": True, "unquote_path_info": False},
        "dir_browser": {"enable": True, "icon": False, "response_trailer": "", "davmount": True,
                        "ms_sharepoint_support": False, "libre_office_support": False},
        "suppress_version_info": True,
        "verbose": 1,
        "logging": {"enable": False},
    }


def make_server(tree: Tree, temp_names: TempNames, read_only: bool, host: str, port: int, user: str,
                password: str, tls: tuple[str, str] | None) -> wsgi.Server:
    """A cheroot server (not yet bound) serving the share."""
    provider = TreeProvider(tree, temp_names, read_only=read_only)
    app = WsgiDAVApp(make_config(provider, user, password, tls is not None))
    server = wsgi.Server((host, port), app, numthreads=THREADS, server_name="redcapfs")
    if tls is not None:
        from cheroot.ssl.builtin import BuiltinSSLAdapter

        server.ssl_adapter = BuiltinSSLAdapter(tls[0], tls[1])
    return server
