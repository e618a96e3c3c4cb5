"""Errors as JSON: every 422 in the shape of a validation error, and no HTML or bare 500s.

A 422's ``detail`` is always a list of ``{"loc": [...], "msg": "...", "type": "..."}``, so a
client reads a refused field the same way whether pydantic, the core or a limit refused it.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from fastapi import FastAPI, HTTPException, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError, DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from api.admission import OVERLOAD_RETRY_AFTER_S, Overloaded
from api.services.errors import (
    Conflict,
    InvalidInput,
    NotFound,
    QueueFull,
    ServiceError,
    TooLarge,
    Unavailable,
)
from core.data import InvalidDataError
from core.spec import SpecError
from db.models import JobStateError
from db.queries.pagination import InvalidCursor

log = logging.getLogger(__name__)

_STATUS: dict[type[ServiceError], int] = {
    NotFound: status.HTTP_404_NOT_FOUND,
    Conflict: status.HTTP_409_CONFLICT,
    QueueFull: status.HTTP_429_TOO_MANY_REQUESTS,
    TooLarge: status.HTTP_413_CONTENT_TOO_LARGE,
}


# What a client waits before retrying a request that met a dependency down: the time a
# restarted broker or database typically takes to come back.
RETRY_AFTER_S = 5


def unavailable(detail: str) -> HTTPException:
    """A 503 that tells the client when to retry."""
    return HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail=detail,
                         headers={"Retry-After": str(RETRY_AFTER_S)})


def error_item(loc: tuple[str | int, ...], message: str, kind: str) -> dict[str, Any]:
    return {"loc": list(loc), "msg": message, "type": kind}


def http_error(error: ServiceError) -> HTTPException:
    """The HTTP answer to a refusal of the service layer."""
    if isinstance(error, InvalidInput):
        return HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT,
                             detail=[error_item(error.loc, str(error), error.kind)])
    if isinstance(error, Unavailable):
        return unavailable(str(error))
    code = next(code for kind, code in _STATUS.items() if isinstance(error, kind))
    return HTTPException(code, detail=str(error))


def spec_loc(field: str) -> tuple[str | int, ...]:
    """``"model.hidden[0]"`` (how SpecError names a field) as ``("model", "hidden", 0)``."""
    return tuple(int(part) if part.isdigit() else part
                 for part in re.split(r"[.\[\]]+", field) if part)


def _describe(error: Any) -> dict[str, Any]:
    loc: tuple[str | int, ...] = tuple(error["loc"])
    message, cause = error["msg"], error.get("ctx", {}).get("error")
    if isinstance(cause, SpecError):
        # The core's __post_init__ raised it, so pydantic places it at the enclosing object;
        # the field it names is the better location.
        loc, message = (*loc[:1], *spec_loc(cause.field)), str(cause)
    elif error["type"] in ("unexpected_keyword_argument", "extra_forbidden"):
        message = f"unknown field {loc[-1]!r}: not part of this request"
    # No "input": it may be a whole upload, or a NaN that JSON cannot even encode.
    return error_item(loc, message, error["type"])


async def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return JSONResponse({"detail": [_describe(e) for e in exc.errors()]},
                        status_code=status.HTTP_422_UNPROCESSABLE_CONTENT)


async def _invalid_data(_request: Request, exc: Exception) -> JSONResponse:
    # Routes map the core's errors where they know the location; this is the safety net that
    # keeps bad input from ever becoming a 500.
    loc = ("body", *spec_loc(exc.field)) if isinstance(exc, SpecError) else ("body",)
    return JSONResponse({"detail": [error_item(loc, str(exc), "invalid_data")]},
                        status_code=status.HTTP_422_UNPROCESSABLE_CONTENT)


async def _invalid_cursor(_request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse({"detail": [error_item(("query", "cursor"), str(exc), "invalid_cursor")]},
                        status_code=status.HTTP_422_UNPROCESSABLE_CONTENT)


async def _state_conflict(_request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse({"detail": str(exc)}, status_code=status.HTTP_409_CONFLICT)


async def _database_unavailable(request: Request, exc: Exception) -> JSONResponse:
    # The database is down or unreachable (a connection refused or cut): the request may
    # succeed later, so it is a 503, not a 500. Other database errors stay bugs (500).
    log.warning("database unavailable in %s %s: %s", request.method, request.url.path,
                str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
    error = unavailable("the database is unreachable; retry later")
    return JSONResponse({"detail": error.detail}, status_code=error.status_code,
                        headers=error.headers)


async def _overloaded(request: Request, exc: Exception) -> JSONResponse:
    # More requests than database connections for longer than db_queue_s (api.admission), or,
    # rarer, a pool checkout that timed out: the service is busy, not broken.
    log.warning("overloaded: %s %s answered 503: %s", request.method, request.url.path, exc)
    return JSONResponse({"detail": str(exc) if isinstance(exc, Overloaded) else
                         "the service is at capacity; retry shortly"},
                        status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
                        headers={"Retry-After": str(OVERLOAD_RETRY_AFTER_S)})


async def _unstorable_value(request: Request, exc: Exception) -> JSONResponse:
    # The database refused a value the request carried (a NUL character in a JSON string):
    # bad input, not a server fault. Only the driver's first line: never the statement.
    assert isinstance(exc, DataError)
    reason = str(exc.orig).splitlines()[0] if exc.orig is not None else "invalid value"
    log.warning("unstorable value in %s %s: %s", request.method, request.url.path, reason)
    return JSONResponse(
        {"detail": [error_item(("body",), f"a value cannot be stored: {reason}",
                               "unstorable_value")]},
        status_code=status.HTTP_422_UNPROCESSABLE_CONTENT)


async def _database_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DBAPIError)
    if exc.connection_invalidated:
        return await _database_unavailable(request, exc)
    return await _internal_error(request, exc)


async def _method_not_allowed(request: Request, exc: Exception) -> JSONResponse:
    # Starlette's 405 names the methods of the first route on the path only; a client asking
    # what it may do (Allow) should learn every method the path has.
    allowed = [method for method in ("GET", "POST", "PUT", "PATCH", "DELETE")
               if any(route.matches({**request.scope, "method": method})[0] == Match.FULL
                      for route in request.app.router.routes)]
    detail = exc.detail if isinstance(exc, StarletteHTTPException) else "Method Not Allowed"
    return JSONResponse({"detail": detail}, status_code=status.HTTP_405_METHOD_NOT_ALLOWED,
                        headers={"Allow": ", ".join(allowed)})


async def _internal_error(request: Request, exc: Exception) -> JSONResponse:
    log.error("unhandled error in %s %s", request.method, request.url.path, exc_info=exc)
    return JSONResponse({"detail": "internal server error"},
                        status_code=status.HTTP_500_INTERNAL_SERVER_ERROR)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(InvalidDataError, _invalid_data)
    app.add_exception_handler(SpecError, _invalid_data)
    app.add_exception_handler(InvalidCursor, _invalid_cursor)
    app.add_exception_handler(JobStateError, _state_conflict)
    app.add_exception_handler(OperationalError, _database_unavailable)
    app.add_exception_handler(Overloaded, _overloaded)
    app.add_exception_handler(PoolTimeout, _overloaded)
    app.add_exception_handler(status.HTTP_405_METHOD_NOT_ALLOWED, _method_not_allowed)
    app.add_exception_handler(DataError, _unstorable_value)
    app.add_exception_handler(DBAPIError, _database_error)
    app.add_exception_handler(Exception, _internal_error)
