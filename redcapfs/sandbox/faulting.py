"""What an injected ``--fault`` does to one call, decided apart from the sockets.

``faults`` parses the specs and picks the fault for a call; this module says
what that fault means for the call (fail early, cut the answer, drop the
upload midway, end the connection) so the HTTP handler only carries it out.
The rules are the ones docs/sandbox.md lists under "Fault SPEC grammar".
"""

from __future__ import annotations

from .api import ApiRequest
from .config import SandboxConfig
from .faults import Fault
from .responses import TEXT_TYPE, ApiResponse, error_response

EARLY = ("500", "503", "hang", "ban")  # the call is not executed at all
CUTTING = ("drop", "truncate")  # the answer (or upload) is cut short
FAULT_TEXTS = {500: "Internal server error", 503: "Service temporarily unavailable"}
# What REDCap's checkBannedIp() sends once an IP is banned (PHP's exit(): plain text, the default content type).
BAN_TEXT = "Your IP address ({ip}) has been banned due to suspected abuse."


def is_write(req: ApiRequest) -> bool:
    """Calls that change state: a faulted one must leave the state as it was."""
    content, action = req.get("content"), req.get("action")
    if content == "file":
        return action in ("import", "delete")
    if content == "record":
        return action in ("import", "delete") or (action is None and req.has("data"))
    return False


def call_selectors(params: dict[str, list[str]]) -> dict[str, str | None]:
    """The request fields a ``--fault`` spec can select on."""
    out: dict[str, str | None] = {}
    for key in ("content", "action", "field", "record", "event"):
        values = params.get(key)
        out[key] = values[0] if values else None
    return out


def fails_early(fault: Fault | None) -> bool:
    """500, 503, hang and ban answer (or not) without running the call."""
    return fault is not None and fault.do in EARLY


def hang_seconds(fault: Fault, config: SandboxConfig) -> float:
    return fault.seconds if fault.seconds is not None else config.hang_seconds


def early_answer(fault: Fault, req: ApiRequest, client_ip: str = "127.0.0.1") -> ApiResponse:
    """The error body of a 500/503 fault, in the call's returnFormat; a ban's 429 text whatever the format."""
    if fault.do == "ban":
        return ApiResponse(429, TEXT_TYPE, BAN_TEXT.format(ip=client_ip).encode())
    status = int(fault.do)
    return error_response(status, FAULT_TEXTS[status], req.return_format)


def breaks_write(fault: Fault | None, req: ApiRequest) -> bool:
    """drop/truncate on a write: no answer and no state change (the write never runs)."""
    return fault is not None and is_write(req)


def cut_at(fault: Fault | None, total: int) -> int | None:
    """How many body bytes a drop/truncate lets through (default half); ``None`` = the whole body."""
    if fault is None or fault.do not in CUTTING:
        return None
    return min(total, fault.after if fault.after is not None else total // 2)


def resets(fault: Fault | None) -> bool:
    """``drop`` ends with a TCP reset; ``truncate`` (and a faulted write other than drop) with a FIN."""
    return fault is not None and fault.do == "drop"


def upload_drop_at(fault: Fault, content_length: int | None, chunk: int) -> int:
    """Request-body bytes read before a dropped upload is cut (default half its Content-Length)."""
    total = content_length if content_length is not None else 2 * chunk
    return fault.after if fault.after is not None else total // 2
