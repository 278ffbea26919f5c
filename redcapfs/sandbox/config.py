"""Settings of one sandbox run (what the CLI flags set), shared by the API and HTTP layers."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field

RIGHTS = ("full", "export", "none")
TOKEN_RE = re.compile(r"^[0-9A-F]{32}$")
NO_CHUNKED = ("nofile", "empty", "411")  # --no-chunked: what a proxy that drops chunked bodies leaves (handler.py)


@dataclass(frozen=True)
class TokenGrant:
    """What one API token may do. ``rights``: full | export (read only) | none (No Access export)."""

    token: str
    rights: str = "full"
    username: str = "sandbox_api"

    @property
    def can_export_data(self) -> bool:
        return self.rights != "none"

    @property
    def can_import(self) -> bool:
        return self.rights == "full"


def parse_token(spec: str) -> TokenGrant:
    """``T[:rights[:username]]`` → grant. T is 32 upper-case hex characters."""
    parts = spec.split(":")
    token = parts[0].strip().upper()
    if not TOKEN_RE.match(token):
        raise ValueError(f"a token must be 32 hexadecimal characters (got {len(token)} characters)")
    rights = parts[1] if len(parts) > 1 and parts[1] else "full"
    if rights not in RIGHTS:
        raise ValueError(f"token rights must be one of {', '.join(RIGHTS)}, not {rights!r}")
    username = parts[2] if len(parts) > 2 and parts[2] else "sandbox_api"
    return TokenGrant(token, rights, username)


def random_token() -> str:
    return secrets.token_hex(16).upper()


@dataclass
class SandboxConfig:
    """Behaviour switches. Defaults play a current (14.x) REDCap server."""

    tokens: list[TokenGrant] = field(default_factory=list)
    redcap_version: str = "14.5.2"
    legacy_document_values: bool = False  # record export shows "[document]" instead of the name
    legacy_messages: bool = False  # older servers: record 'R' (single quotes) in export errors
    charset_suffix: bool = True  # ';charset=UTF-8' after name="…" on file export
    max_upload_mb: int = 32
    locks: list[str] = field(default_factory=list)
    fileinfo: bool = True
    fileinfo_param: str = "fileinfo"
    analysis_cleanup: bool = False
    latency_ms: float = 0.0
    hang_seconds: float = 120.0
    request_log: str | None = None
    no_chunked: str | None = None  # a proxy that drops chunked request bodies: "nofile", "empty" or "411"

    def grant_for(self, raw_token: str | None) -> TokenGrant | None:
        """The grant for a token as sent; REDCap reads only its first 32 characters."""
        if not raw_token:
            return None
        token = raw_token[:32].upper()
        for grant in self.tokens:
            if secrets.compare_digest(grant.token.encode(), token.encode("utf-8", "replace")):
                return grant
        return None
