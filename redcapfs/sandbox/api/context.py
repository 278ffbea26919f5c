"""What every API area's handlers share: the store, the run's settings, and the common guards."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..config import SandboxConfig, TokenGrant
from ..repository_store import Repository
from ..responses import ApiError, ApiResponse
from ..schema import Schema
from ..store import Store
from ..team import Team
from . import messages as M
from .request import ApiRequest
from .rights import Caller, resolve


@dataclass
class Context:
    """One sandbox project as the handlers see it. Thread-safe (the store locks)."""

    store: Store
    config: SandboxConfig

    def __post_init__(self) -> None:
        self.team = Team(self.store)
        self.repository = Repository(self.store)

    def caller(self, grant: TokenGrant) -> Caller:
        """The token's user with their current rights; a token whose user left the project is refused."""
        caller = resolve(self.team, grant)
        if caller is None:
            raise ApiError(403, M.BAD_TOKEN)
        return caller

    def log(self, grant: TokenGrant, action: str, details: str, record: str = "", kind: str = "manage") -> None:
        self.store.add_log(grant.username, action, details, record, kind)

    @property
    def schema(self) -> Schema:
        assert self.store.schema is not None, "the store holds no project yet"
        return self.store.schema

    def classic_guard(self, content: str) -> None:
        """Arms, events and form-event mappings do not exist in classic projects: REDCap's 400."""
        if not self.schema.longitudinal:
            raise ApiError(400, M.CLASSIC[content])

    def write_guard(self, grant: TokenGrant, cleanup_message: str) -> None:
        """Import rights first, then the project status (the doc's order)."""
        if not grant.can_import or not self.caller(grant).api_import:
            raise ApiError(403, M.NO_IMPORT)
        if self.config.analysis_cleanup:
            raise ApiError(403, cleanup_message)

    def export_guard(self, grant: TokenGrant) -> None:
        """Record data and files need more than "No Access" export rights."""
        if not grant.can_export_data:
            raise ApiError(403, M.NO_ACCESS)
        if not self.caller(grant).api_export:
            raise ApiError(403, M.NO_EXPORT)

    def right_guard(self, grant: TokenGrant, right: str) -> Caller:
        """A project right (``user_rights``, ``design``, ``file_repository``, ...) the call needs."""
        caller = self.caller(grant)
        if not caller.right(right):
            raise ApiError(403, M.NO_RIGHT.format(right=M.RIGHT_NAMES.get(right, right)))
        return caller

    def record_missing(self, record: str) -> ApiError:
        """Record-not-found on file export and delete (older servers quote it differently)."""
        text = M.RECORD_MISSING_LEGACY if self.config.legacy_messages else M.RECORD_MISSING
        return ApiError(400, text.format(record=record))


Handler = Callable[[Context, ApiRequest, TokenGrant], ApiResponse]


def by_action(actions: dict[str, Handler], default: str | None = None) -> Handler:
    """A handler that picks one of ``actions`` by the ``action`` param (400 for any other)."""

    def handle(ctx: Context, req: ApiRequest, grant: TokenGrant) -> ApiResponse:
        action = req.get("action") or default or ""
        handler = actions.get(action)
        if handler is None:
            raise ApiError(400, M.BAD_ACTION)
        return handler(ctx, req, grant)

    return handle
