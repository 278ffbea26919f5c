"""Certificates for the sandbox's https mode: a throwaway CA and a server certificate for this machine.

Real REDCap servers are reached over https, often through an institution's
private CA, so the mount's TLS path is tested against a real TLS server with a
CA of its own. trustme makes the keys and certificates (no hand-rolled X.509).
The variants reproduce what users meet: an unknown CA (the client is not given
``ca``), a certificate for another host name, an expired certificate.
"""

from __future__ import annotations

import datetime as dt
import ssl
from dataclasses import dataclass
from pathlib import Path

LOCAL_NAMES = ("127.0.0.1", "localhost", "::1")


@dataclass(frozen=True)
class TlsFiles:
    """PEM files: the CA that clients trust, and the server's certificate chain and key."""

    ca: Path
    cert: Path
    key: Path


def make_certificates(folder: Path, names: tuple[str, ...] = LOCAL_NAMES, expired: bool = False) -> TlsFiles:
    """A new CA and a server certificate for ``names`` (valid now, or expired a day ago), written to ``folder``."""
    import trustme  # only the https sandbox needs it

    folder.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA(organization_name="redcapfs sandbox CA")
    now = dt.datetime.now(dt.UTC)
    if expired:
        server = ca.issue_cert(*names, not_before=now - dt.timedelta(days=30), not_after=now - dt.timedelta(days=1))
    else:
        server = ca.issue_cert(*names)
    files = TlsFiles(folder / "ca.pem", folder / "server.pem", folder / "server.key")
    ca.cert_pem.write_to_path(str(files.ca))
    server.private_key_pem.write_to_path(str(files.key))
    with open(files.cert, "wb") as out:
        for blob in server.cert_chain_pems:
            out.write(blob.bytes())
    files.key.chmod(0o600)
    return files


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    """A server-side context for the given chain and key (TLS 1.2 or newer)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(str(cert), str(key))
    return ctx
