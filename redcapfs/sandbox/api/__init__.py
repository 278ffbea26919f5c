"""The REDCap API's behaviour, independent of HTTP: a parsed request in, an answer out.

One module per API area, as PyCap has (``redcap/methods/*.py``):

=========================  ==================================================
``project_info``           ``content=project``, ``content=version``
``metadata``               ``content=metadata``
``arms`` / ``events``      ``content=arm`` / ``content=event``
``instruments``            ``content=instrument``, ``content=formEventMapping``
``repeating``              ``content=repeatingFormsEvents``
``records``                ``content=record``, ``generateNextRecordName``
``files``                  ``content=file`` (export, import, delete)
``log``                    ``content=log``
``design``                 imports and deletes of arms, events, mappings, repeating setup
``users``                  ``content=user``, ``userRole``, ``userRoleMapping``
``dags``                   ``content=dag``, ``userDagMapping``
``repository``             ``content=fileRepository``
``locking``                the Locking API module's calls (the API has no locking)
``rights``                 the caller: token grant plus the user's rights and DAG
=========================  ==================================================

``request`` holds the parsed call, ``context`` the shared guards, ``messages``
REDCap's texts. :class:`Api` authenticates and dispatches; the HTTP server
(``sandbox.server``) and the in-process client (``sandbox.inprocess``) both
call :meth:`Api.handle`, so they cannot disagree.
"""

from __future__ import annotations

import logging

from ..config import SandboxConfig
from ..responses import ApiError, ApiResponse, error_response
from ..store import Store
from . import (
    arms,
    dags,
    design,
    events,
    files,
    instruments,
    locking,
    log,
    metadata,
    project_info,
    records,
    repeating,
    repository,
    users,
)
from . import messages as M
from .common import dispatch
from .context import Context, Handler
from .request import ApiRequest, Upload
from .rights import seed_rights

__all__ = ["Api", "ApiRequest", "Upload"]

logger = logging.getLogger(__name__)

INTERNAL_ERROR = "An internal error occurred in the sandbox"

HANDLERS: dict[str, Handler] = {
    "project": project_info.export_project_info,
    "version": project_info.export_version,
    "metadata": dispatch({"export": metadata.export_metadata, "import": metadata.import_metadata}),
    "exportFieldNames": metadata.export_field_names,
    "arm": dispatch({"export": arms.export_arms, "import": design.import_arms, "delete": design.delete_arms}),
    "event": dispatch({"export": events.export_events, "import": design.import_events,
                       "delete": design.delete_events}),
    "formEventMapping": dispatch({"export": instruments.export_instrument_event_mappings,
                                  "import": design.import_mappings}),
    "repeatingFormsEvents": dispatch({"export": repeating.export_repeating_forms_events,
                                      "import": design.import_repeating}),
    "instrument": instruments.export_instruments,
    "record": records.record,
    "generateNextRecordName": records.generate_next_record_name,
    "file": files.file,
    "log": log.export_logging,
    "user": users.user,
    "userRole": users.user_role,
    "userRoleMapping": users.user_role_mapping,
    "dag": dags.dag,
    "userDagMapping": dags.user_dag_mapping,
    "fileRepository": repository.file_repository,
}


class Api:
    """Dispatches one authenticated call to its area's handler. Thread-safe (the store locks)."""

    def __init__(self, store: Store, config: SandboxConfig) -> None:
        self.store = store
        self.config = config
        self.context = Context(store, config)
        self._seeded: set[str] = set()

    def answer(self, req: ApiRequest) -> ApiResponse:
        """Like :meth:`handle`, but every failure is an answer: REDCap's error in the call's returnFormat.

        A sandbox bug becomes a 500 (and a logged traceback), as a server error
        would, rather than a hang or a dropped connection.
        """
        try:
            return self.handle(req)
        except ApiError as err:
            return error_response(err.status, err.message, req.return_format)
        except Exception:
            logger.exception("internal error in %s/%s", req.get("content"), req.get("action"))
            return error_response(500, INTERNAL_ERROR, req.return_format)

    def handle(self, req: ApiRequest) -> ApiResponse:
        """Authenticate (the token first), then run the content's handler. Raises :class:`ApiError`."""
        grant = self.config.grant_for(req.get("token"))
        if grant is None:
            raise ApiError(403, M.BAD_TOKEN)
        if grant.token not in self._seeded:  # a token's user joins the project unless it knows them
            self.context.team.ensure_user(grant.username, seed_rights(grant), self.context.schema.forms)
            self._seeded.add(grant.token)
        self.context.caller(grant)  # the token's user must still be a project user
        handler = HANDLERS.get(req.get("content") or "")
        if req.get("type") == "module":  # an external module's page (api/locking.py)
            handler = locking.MODULES.get(req.get("prefix") or "")
        if handler is None:
            raise ApiError(400, M.BAD_CONTENT)
        return handler(self.context, req, grant)
