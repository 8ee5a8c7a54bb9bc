"""The history API. Every route needs the caller's key (when keys are
configured) and sees only its tenant's sessions; another's are 404.

    GET    /v1/history/sessions?limit=&offset=       newest first
    GET    /v1/history/search?q=&limit=&offset=      utterances containing q
    GET    /v1/history/sessions/ID                   one session with its utterances
    GET    /v1/history/sessions/ID/export?format=F   json, txt, srt, vtt
    PATCH  /v1/history/sessions/ID                   {"speaker_names": {"S1": "Dr. Chen"}}
    DELETE /v1/history/sessions/ID"""

from __future__ import annotations

import logging

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..services.access import AccessDenied
from ..wire.errors import ErrorCode, ProtocolError
from ..text.export import FORMATS, one_line, render
from .bodies import read_json
from .responses import JSON, denied, error, status_for

log = logging.getLogger("lingting.history")
PREFIX = "/v1/history"


def _int(request: Request, name: str, default: int, high: int) -> int:
    raw = request.query_params.get(name, str(default))
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name} must be an integer") from None
    if not 0 <= value <= high:
        raise ValueError(f"{name} must be between 0 and {high}")
    return value


def endpoint(handler):
    """Admission (origin, key -> tenant), paging parameters and errors, around a handler."""
    async def run(request: Request) -> Response:
        lingting = request.app.state.lingting
        if lingting.history is None:
            return error(404, ErrorCode.HISTORY_DISABLED, "this server keeps no history (started with "
                         "--history-db off)")
        try:
            tenant = lingting.access.tenant(lingting.access.authenticate(str(request.url), request.headers))
        except AccessDenied as exc:
            lingting.metrics.connections.labels(exc.code).inc()
            return denied(exc)
        try:
            page = (_int(request, "limit", 50, 1000), _int(request, "offset", 0, 1 << 40))
        except ValueError as exc:
            return error(400, ErrorCode.INVALID_FIELD, str(exc))
        try:
            return await handler(request, lingting.history, tenant, *page)
        except Exception:
            log.exception("history request %s %s failed", request.method, request.url.path)   # not the query: it may hold a key
            return error(500, ErrorCode.INTERNAL, "history request failed")
    return run


@endpoint
async def list_sessions(request, history, tenant, limit, offset) -> Response:
    sessions, total = await history.list_sessions(limit, offset, tenant)
    return JSON({"sessions": sessions, "total": total})


@endpoint
async def search(request, history, tenant, limit, offset) -> Response:
    text = request.query_params.get("q", "")
    if "\0" in text:
        return error(400, ErrorCode.INVALID_FIELD, "q must not contain NUL characters")
    return JSON({"query": text, "results": await history.search(text, limit, offset, tenant)})


MAX_NAMES, MAX_LABEL, MAX_NAME = 100, 40, 80
_SHAPE = ('the body must be {"speaker_names": {"S1": "a name", ...}} (up to 100 labels of up to 40 characters, '
          "names up to 80, no control characters; an empty name removes one)")


def _speakers(session: dict) -> set[str]:
    """The labels a session's speakers have: those heard, and those already named."""
    heard = {part.get("speaker") for u in session["utterances"] for part in (u.get("turns") or [u])}
    return (heard | set(session.get("speaker_names") or {})) - {None}


def _printable(text: str, high: int) -> bool:
    return len(text) <= high and one_line(text) == text


def _speaker_names(body, session: dict) -> dict[str, str]:
    """The names a PATCH gives, checked: one line each, and only for this session's speakers
    (so the names a session keeps stay as few as its speakers)."""
    names = body.get("speaker_names") if isinstance(body, dict) else None
    if not (isinstance(names, dict) and set(body) == {"speaker_names"} and len(names) <= MAX_NAMES and all(
            isinstance(k, str) and 0 < len(k) and _printable(k, MAX_LABEL) and isinstance(v, str)
            and _printable(v, MAX_NAME) for k, v in names.items())):
        raise ProtocolError(ErrorCode.INVALID_FIELD, _SHAPE)
    if unknown := set(names) - _speakers(session):
        raise ProtocolError(ErrorCode.INVALID_FIELD, f"no speaker {sorted(unknown)[0]!r} in this session (its "
                            f"speakers: {', '.join(sorted(_speakers(session))) or 'none'})")
    return names


def _not_found(session_id: str) -> Response:
    return error(404, ErrorCode.NOT_FOUND, f"no session {session_id!r}")


@endpoint
async def session(request, history, tenant, limit, offset) -> Response:
    session_id = request.path_params["id"]
    if request.method == "DELETE":
        if await history.delete_session(session_id, tenant):
            return Response(status_code=204)
        return _not_found(session_id)
    if request.method == "PATCH":
        try:
            body = await read_json(request, request.app.state.lingting.settings.limits)
            found = await history.get_session(session_id, tenant)
            if found is None:
                return _not_found(session_id)
            names = _speaker_names(body, found)
        except ProtocolError as exc:
            return error(status_for(exc.code), exc.code, exc.message)
        if not await history.rename_speakers(session_id, names, tenant):
            return _not_found(session_id)
    found = await history.get_session(session_id, tenant)
    return JSON(found) if found is not None else _not_found(session_id)


@endpoint
async def export(request, history, tenant, limit, offset) -> Response:
    session_id = request.path_params["id"]
    fmt = request.query_params.get("format", "json")
    if fmt not in FORMATS:
        return error(400, ErrorCode.INVALID_FIELD, f"format must be one of {', '.join(FORMATS)}")
    found = await history.get_session(session_id, tenant)
    if found is None:
        return _not_found(session_id)
    name = f"lingting-{session_id}.{fmt}"
    return Response(render(found, fmt).encode(), media_type=FORMATS[fmt],
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})


routes = [
    Route(PREFIX + "/sessions", list_sessions),
    Route(PREFIX + "/search", search),
    Route(PREFIX + "/sessions/{id:str}", session, methods=["GET", "PATCH", "DELETE"]),
    Route(PREFIX + "/sessions/{id:str}/export", export),
]
