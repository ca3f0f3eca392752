"""One error shape for every endpoint, and the single place exceptions become HTTP answers.

Every error the API returns is ``{"error": code, "message": text, "details": [...]}``: ``code``
is a stable machine word (``not_found``, ``invalid_config``, ``csrf_failed``, ...), ``message`` one
sentence for a person, and ``details`` the individual problems where there are several (each
rule-file error with its file, line and field; each invalid request parameter). The exception tree
of :mod:`safewatch.errors` is translated here once: routes raise domain errors and never build
error responses themselves. Anything that is not a :class:`~safewatch.errors.SafewatchError` is a
bug: it is logged with its traceback and answered with a generic 500 that leaks nothing.

Pages (not ``/api``) asked for by a browser get a redirect to the login page instead of a 401.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from pydantic import BaseModel, Field
from sqlalchemy import exc as sa_exc
from starlette.exceptions import HTTPException as StarletteHTTPException

from safewatch.api.auth.principal import Principal
from safewatch.api.auth.store import UserExists
from safewatch.api.jobs import JobFinished
from safewatch.api.rulefiles import GeometryInUse, GeometryTaken
from safewatch.config.validation import ConfigErrors
from safewatch.errors import (
    ConfigError,
    EditConflict,
    NotFound,
    SafewatchError,
    StorageError,
)
from safewatch.incidents.lifecycle import InvalidTransition

__all__ = [
    "ERROR_RESPONSES",
    "ApiError",
    "ErrorBody",
    "ErrorDetail",
    "error_response",
    "install_error_handlers",
]

log = logging.getLogger(__name__)

STORAGE_UNAVAILABLE = "the database is unavailable (error id {id}); the server log has the details"
"""A storage error's message for a client that is not signed in, and for a database error (the
cause is logged under the id)."""

STORAGE_FAILED = (
    "the database refused the operation (error id {id}); the server log has the details"
)
"""A database error that is not about reaching it (a constraint, a bad statement): a bug or a
schema out of step, not an outage."""

_UNREACHABLE = (
    sa_exc.OperationalError,
    sa_exc.InterfaceError,
    sa_exc.DisconnectionError,
    sa_exc.TimeoutError,
)
"""SQLAlchemy errors that mean the database cannot be reached or cannot answer now (down,
refused, dropped connection, locked, pool exhausted): 503, worth a retry."""


def _database_cause(exc: BaseException) -> sa_exc.SQLAlchemyError | None:
    """The SQLAlchemy error ``exc`` was raised from (its cause or context chain), if any."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, sa_exc.SQLAlchemyError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


class ErrorDetail(BaseModel):
    """One problem of several (a rule-file error, an invalid parameter)."""

    message: str
    field: str | None = Field(None, description="Field or parameter, dotted.")
    file: str | None = Field(None, description="Rule file, for rule errors.")
    line: int | None = Field(None, description="Line in the file, for rule errors.")


class ErrorBody(BaseModel):
    """The body of every error response."""

    error: str = Field(description="Stable code: not_found, invalid_request, unauthenticated, ...")
    message: str = Field(description="One sentence for a person.")
    details: list[ErrorDetail] = Field(default_factory=list)


class ApiError(Exception):
    """An HTTP error with the standard body, raised by routes and the auth gate.

    Args:
        status: HTTP status.
        code: Stable error code.
        message: One sentence.
        details: Individual problems.
        headers: Extra response headers (``Retry-After``, ``WWW-Authenticate``).
    """

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        details: Sequence[ErrorDetail] = (),
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = list(details)
        self.headers = headers


_CODES = {
    400: "bad_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
    415: "unsupported_media_type",
    416: "range_not_satisfiable",
    422: "invalid_request",
    429: "rate_limited",
    503: "unavailable",
}

ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": code.replace("_", " ")}
    for status, code in _CODES.items()
    if status in (400, 401, 403, 404, 409, 422, 429)
}
"""``responses=`` for routers, so the OpenAPI document shows the error shape."""


def error_response(
    status: int,
    code: str,
    message: str,
    details: Sequence[ErrorDetail] = (),
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """A response with the standard error body."""
    body = ErrorBody(error=code, message=message, details=list(details))
    return JSONResponse(body.model_dump(mode="json"), status_code=status, headers=headers)


def config_details(error: ConfigError) -> list[ErrorDetail]:
    """Each problem of a (multi-)config error as a detail with its file, line and field."""
    errors = error.errors if isinstance(error, ConfigErrors) else (error,)
    return [ErrorDetail(message=e.message, field=e.field, file=e.file, line=e.line) for e in errors]


def _wants_page(request: Request) -> bool:
    path = request.url.path
    return (
        request.method == "GET"
        and not path.startswith("/api/")
        and "text/html" in request.headers.get("accept", "")
    )


def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    if exc.status == 401 and _wants_page(request):
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)
    return error_response(exc.status, exc.code, exc.message, exc.details, exc.headers)


def _http_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    code = _CODES.get(exc.status_code, "error")
    message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
    headers = dict(exc.headers) if exc.headers else None
    return error_response(exc.status_code, code, message, headers=headers)


def _validation_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    details = []
    for error in exc.errors():
        loc = [str(part) for part in error.get("loc", ())]
        if error.get("type") == "json_invalid":
            # Its loc is ("body", <character offset>): the offset read as a field ("1: JSON
            # decode error", field "1"); it is a position in the body, and no field is at fault.
            position = f" at character {loc[1]}" if len(loc) > 1 else ""
            reason = str((error.get("ctx") or {}).get("error") or "").strip()
            message = f"malformed JSON{position}" + (f": {reason}" if reason else "")
            details.append(ErrorDetail(message=message, field=None))
            continue
        where = ".".join(loc[1:] if loc and loc[0] in ("body", "query", "path") else loc)
        details.append(ErrorDetail(message=str(error.get("msg", "invalid")), field=where or None))
    first = details[0] if details else None
    message = (
        f"invalid request: {first.field + ': ' if first and first.field else ''}"
        f"{first.message if first else 'malformed'}"
    )
    return error_response(422, "invalid_request", message, details)


def _safewatch_error(request: Request, exc: Exception) -> Response:
    if isinstance(exc, NotFound):
        return error_response(404, "not_found", str(exc))
    if isinstance(exc, InvalidTransition):
        return error_response(409, "invalid_transition", str(exc))
    if isinstance(exc, UserExists | JobFinished | EditConflict | GeometryTaken | GeometryInUse):
        return error_response(409, "conflict", str(exc))
    if isinstance(exc, ConfigError):
        details = config_details(exc)
        more = f" (and {len(details) - 1} more)" if len(details) > 1 else ""
        return error_response(
            422, "invalid_config", f"{exc.format().splitlines()[0]}{more}", details
        )
    if isinstance(exc, StorageError):
        return _storage_error(request, exc)
    return error_response(400, "bad_request", str(exc))


def _storage_error(request: Request, exc: StorageError) -> Response:
    """A storage error's answer: its own sentence when it is ours, an error id when it is the
    database's.

    One raised from a SQLAlchemy error carries the driver's text (a PostgreSQL host, address and
    user name, the SQL statement and its parameters): that is for the log only, under a random
    id the answer names, whoever asks, signed in or not. Other storage errors are sentences
    written for the user (a rules folder that is read-only, a job still running) and are shown to
    users signed in; a client not signed in (the login endpoints) learns nothing about storage.
    """
    error_id = secrets.token_hex(6)
    where = f"{request.method} {request.url.path}"
    cause = _database_cause(exc)
    if cause is not None:
        log.error("storage error %s on %s: %s", error_id, where, exc, exc_info=exc)
        if isinstance(cause, _UNREACHABLE):
            return error_response(
                503, "storage_unavailable", STORAGE_UNAVAILABLE.format(id=error_id)
            )
        return error_response(500, "storage_error", STORAGE_FAILED.format(id=error_id))
    log.error("storage error %s on %s: %s", error_id, where, exc)
    if not isinstance(getattr(request.state, "principal", None), Principal):
        return error_response(503, "storage_unavailable", STORAGE_UNAVAILABLE.format(id=error_id))
    return error_response(503, "storage_unavailable", str(exc))


def _unexpected(request: Request, exc: Exception) -> Response:
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(500, "internal_error", "internal error; the server log has the details")


def install_error_handlers(app: FastAPI) -> None:
    """Translate every exception into the standard error body."""
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(SafewatchError, _safewatch_error)
    app.add_exception_handler(Exception, _unexpected)
