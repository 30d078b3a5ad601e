"""Errors the API answers with, and the handlers that turn every failure into
``{"detail": ...}``::

    ApiError                    status and a client-safe ``detail``
     ├── BadRequest             400  bad query parameters (pagination, filters)
     ├── NotAuthenticated       401  missing, expired, tampered token; bad credentials
     ├── PermissionDenied       403  the user's role or collection ACL forbids it
     ├── NotFound               404  unknown collection, version, job or run
     ├── Conflict               409  a concurrent change won (try again)
     ├── UnsupportedMediaType   415  a body neither JSON nor a form (token endpoints)
     ├── RateLimited            429  too many failed logins (``Retry-After``)
     └── ServiceUnavailable     503  no Redis to publish to, database unreachable

Storage and driver errors map onto statuses too: ``CollectionNotFoundError`` → 404,
``InvalidJobRecordError`` (a stored job that no longer validates) → 409,
``DocumentTooLarge`` (over MongoDB's 16 MiB) → 413, ``ExecutionTimeout`` (a query past
``maxTimeMS``) → 503, any other ``PyMongoError`` → 503. The limits of ``api.limits``
answer before the routes: 413 (request body too large; ``BodyTooLarge``), 429 and 503
(too many requests in progress). Validation errors are 400, as in Django REST
framework: of query or path parameters a message naming them; of a request body (not
JSON, wrong fields) one entry per field (``loc``, ``msg``, ``type``), never the
submitted value (it may be a password). The OpenAPI schema says so (``install_handlers``
drops FastAPI's generated 422 entries). Anything else is a 500 with a fixed message;
the traceback goes to the log only.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from pymongo.errors import DocumentTooLarge, ExecutionTimeout, PyMongoError
from starlette.exceptions import HTTPException as StarletteHTTPException

from storage.errors import (
    CollectionNotFoundError,
    CommitConflictError,
    InvalidJobRecordError,
    JobNotFoundError,
    VersionNotFoundError,
)

__all__ = [
    "ApiError",
    "BadRequest",
    "Conflict",
    "ErrorOut",
    "FieldError",
    "NotAuthenticated",
    "NotFound",
    "PermissionDenied",
    "RateLimited",
    "ServiceUnavailable",
    "UnsupportedMediaType",
    "error_responses",
    "install_handlers",
]

log = logging.getLogger(__name__)


class ApiError(Exception):
    """An error with an HTTP status and a ``detail`` safe to show to any client."""

    status_code = 500

    def __init__(self, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.headers = headers or {}


class BadRequest(ApiError):
    status_code = 400


class NotAuthenticated(ApiError):
    status_code = 401

    def __init__(self, detail: str = "Authentication credentials were not provided.") -> None:
        super().__init__(detail, {"WWW-Authenticate": "Bearer"})


class PermissionDenied(ApiError):
    status_code = 403

    def __init__(self, detail: str = "You do not have permission to perform this action.") -> None:
        super().__init__(detail)


class NotFound(ApiError):
    status_code = 404


class Conflict(ApiError):
    status_code = 409


class RateLimited(ApiError):
    status_code = 429

    def __init__(self, retry_after_s: float) -> None:
        seconds = max(1, int(retry_after_s + 0.999))
        super().__init__(
            f"Too many failed login attempts; try again in {seconds} s.",
            {"Retry-After": str(seconds)},
        )


class UnsupportedMediaType(ApiError):
    status_code = 415


class ServiceUnavailable(ApiError):
    status_code = 503


class FieldError(BaseModel):
    """One invalid field of a request body."""

    loc: list[str | int]
    msg: str
    type: str


class ErrorOut(BaseModel):
    """Every error answer: a message, or (400) one entry per invalid body field."""

    detail: str | list[FieldError]


_DESCRIPTIONS = {
    400: "Bad query or path parameter, or invalid request body (one entry per field)",
    401: "Missing, invalid or expired token; bad credentials",
    403: "Role or collection ACL forbids it",
    404: "No such collection, version, job or run",
    409: "A concurrent change won, or the stored job no longer validates",
    413: "Request body or stored document too large",
    415: "Request body neither JSON nor application/x-www-form-urlencoded",
    429: "Too many failed logins, or too many requests of this user in progress",
    503: "Queue or database unavailable, query time limit exceeded, or the API is busy",
}


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries for ``codes`` (plus 400 and 413, which any
    endpoint with parameters or a body may answer, and 503)."""
    wanted = sorted({*codes, 400, 413, 503})
    return {code: {"model": ErrorOut, "description": _DESCRIPTIONS[code]} for code in wanted}


def _json(status: int, detail: Any, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status, headers=headers)


def _field_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    """Validation errors without the submitted input (``input``/``ctx`` are dropped)."""
    return [
        {"loc": list(error.get("loc", ())), "msg": error.get("msg", ""), "type": error["type"]}
        for error in exc.errors()
    ]


async def _api_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return _json(exc.status_code, exc.detail, exc.headers)


async def _not_found(request: Request, exc: Exception) -> JSONResponse:
    return _json(404, str(exc))


async def _job_not_found(request: Request, exc: Exception) -> JSONResponse:
    # The storage message lists every registered job: not for every client's eyes.
    return _json(404, "No such job.")


async def _conflict(request: Request, exc: Exception) -> JSONResponse:
    return _json(409, f"{exc}; try again")


async def _validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = _field_errors(exc)
    if errors and all(e["loc"] and e["loc"][0] in ("query", "path") for e in errors):
        message = "; ".join(f"{'.'.join(str(p) for p in e['loc'][1:])}: {e['msg']}" for e in errors)
        return _json(400, f"invalid parameter: {message}")
    return _json(400, errors)


async def _http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    return _json(exc.status_code, exc.detail, dict(exc.headers or {}))


async def _invalid_job(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, InvalidJobRecordError)
    # The problem may quote a stored value: logged for operators, not sent to clients.
    log.warning("%s %s: %s", request.method, request.url.path, exc)
    return _json(
        409,
        f"the stored job {exc.name!r} no longer validates (written by hand or by another "
        "slurp version); an admin can replace it (PUT) or delete it (DELETE)",
    )


async def _too_large(request: Request, exc: Exception) -> JSONResponse:
    return _json(413, f"too large to store: {exc}")


async def _query_timeout(request: Request, exc: Exception) -> JSONResponse:
    context = getattr(request.app.state, "slurp", None)  # api.context imports this module
    limit = context.config.query_timeout_ms if context is not None else "?"
    log.info("query past its time limit on %s %s: %s", request.method, request.url.path, exc)
    return _json(
        503,
        f"The query took longer than the API's limit of {limit} ms "
        "(SLURP_API_QUERY_TIMEOUT_MS) and was stopped; narrow it with filters or use "
        "$limit/$page.",
    )


async def _database(request: Request, exc: Exception) -> JSONResponse:
    log.warning("database error on %s %s: %s", request.method, request.url.path, exc)
    return _json(503, "The database is unavailable; try again later.")


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return _json(500, "Internal server error.")


def install_handlers(app: FastAPI) -> None:
    """Register every handler on ``app``, and make its OpenAPI schema say 400 (not
    FastAPI's default 422) for invalid requests."""
    _openapi_without_422(app)
    app.add_exception_handler(ApiError, _api_error)
    for lookup in (CollectionNotFoundError, VersionNotFoundError):
        app.add_exception_handler(lookup, _not_found)
    app.add_exception_handler(JobNotFoundError, _job_not_found)
    app.add_exception_handler(CommitConflictError, _conflict)
    app.add_exception_handler(InvalidJobRecordError, _invalid_job)
    app.add_exception_handler(DocumentTooLarge, _too_large)
    app.add_exception_handler(ExecutionTimeout, _query_timeout)
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(StarletteHTTPException, _http)
    app.add_exception_handler(PyMongoError, _database)
    app.add_exception_handler(Exception, _unexpected)


def _openapi_without_422(app: FastAPI) -> None:
    """FastAPI documents a 422 for every operation with parameters or a body; the
    handlers above answer 400 instead (documented by ``error_responses``)."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = generate()
            for path in schema.get("paths", {}).values():
                for operation in path.values():
                    if isinstance(operation, dict):
                        operation.get("responses", {}).pop("422", None)
            components = schema.get("components", {}).get("schemas", {})
            for name in ("HTTPValidationError", "ValidationError"):
                components.pop(name, None)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
