"""One error shape for every 4xx/5xx: {"error": {"code": "...", "message": "..."}}."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy import exc as sa_exc
from starlette.exceptions import HTTPException as StarletteHTTPException

from core.logs import REQUEST_ID
from service.ingest import ErrorKind, IngestError

log = logging.getLogger("ganaug.api")

_DEFAULT_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "rate_limited",
    503: "unavailable",
}


# Upload refusals: over a limit is 413, a format we cannot read 415, anything else to fix 422.
INGEST_STATUS: dict[ErrorKind, int] = {
    ErrorKind.INVALID_OPTION: 422,
    ErrorKind.UNSUPPORTED_FORMAT: 415,
    ErrorKind.CORRUPT_ARCHIVE: 422,
    ErrorKind.UNSAFE_PATH: 422,
    ErrorKind.UNSAFE_MEMBER: 422,
    ErrorKind.TOO_MANY_MEMBERS: 413,
    ErrorKind.ARCHIVE_TOO_LARGE: 413,
    ErrorKind.COMPRESSION_RATIO: 413,
    ErrorKind.CORRUPT_IMAGE: 422,
    ErrorKind.IMAGE_TOO_LARGE: 413,
    ErrorKind.EMPTY_DATASET: 422,
    ErrorKind.BAD_LAYOUT: 422,
    ErrorKind.SINGLE_CLASS: 422,
    ErrorKind.NPZ_INVALID: 422,
    ErrorKind.NPZ_PICKLE: 422,
    ErrorKind.NPZ_LENGTH_MISMATCH: 422,
    ErrorKind.TOO_MANY_IMAGES: 413,
}


class ApiError(StarletteHTTPException):
    """An error a user sees. Subclasses HTTPException so it passes FastAPI's body parsing intact.

    `details` are further fields of the error object (a quota's limit and usage, say).
    """

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        headers: dict[str, str] | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(status_code=status, detail=message, headers=headers)
        self.code = code
        self.message = message
        self.details = details or {}

    def response(self) -> JSONResponse:
        return error_response(self.status_code, self.code, self.message, self.headers, self.details)


def error_response(
    status: int,
    code: str,
    message: str,
    headers: dict | None = None,
    details: dict[str, Any] | None = None,
) -> JSONResponse:
    error = {"code": code, "message": message, **(details or {})}
    if (request_id := REQUEST_ID.get()) != "-":  # quote it to support; it is in the logs
        error["request_id"] = request_id
    return JSONResponse({"error": error}, status_code=status, headers=headers)


def upload_refused(exc: IngestError) -> ApiError:
    """The answer to an upload ingestion refused: its kind is the code."""
    return ApiError(INGEST_STATUS[exc.kind], exc.kind.value, exc.message)


# What SQLAlchemy raises when the database cannot be reached or a pooled connection broke.
DATABASE_DOWN = (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.TimeoutError)


def database_unavailable() -> ApiError:
    return ApiError(
        503,
        "database_unavailable",
        "The database is unreachable; nothing was changed. Retry in a minute.",
    )


def not_found(kind: str, ident: str) -> ApiError:
    return ApiError(404, f"{kind}_not_found", f"No {kind} with id '{ident}'.")


def _describe_validation(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path"))
        parts.append(f"{loc}: {err.get('msg')}" if loc else str(err.get("msg")))
    return "Invalid request: " + "; ".join(parts)


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers that turn every error into the one JSON shape."""

    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, exc: ApiError) -> JSONResponse:
        return exc.response()

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _DEFAULT_CODES.get(exc.status_code, "http_error")
        message = str(exc.detail)
        if exc.status_code in (404, 405):  # routing errors: say which request, point at the docs
            message = f"{message}: {request.method} {request.url.path}; the API is listed at /docs."
        elif exc.status_code == 400:  # FastAPI could not parse the body
            message = (
                f"{message.rstrip('.')}: send the body this route documents at /docs "
                "(UTF-8 JSON, or a multipart form)."
            )
        return error_response(exc.status_code, code, message, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(422, "validation_error", _describe_validation(exc))

    async def _database_down(request: Request, exc: Exception) -> JSONResponse:
        log.warning("database unreachable on %s: %s", request.url.path, type(exc).__name__)
        return database_unavailable().response()

    for kind in DATABASE_DOWN:
        app.add_exception_handler(kind, _database_down)

    @app.exception_handler(sa_exc.DataError)
    async def _unstorable(request: Request, exc: sa_exc.DataError) -> JSONResponse:
        # The database refused a value the request carried (PostgreSQL: NUL in text, a
        # number out of a column's range): the request's fault, and nothing was stored.
        reason = str(exc.orig).splitlines()[0] if exc.orig is not None else "invalid value"
        log.info("request value refused by the database on %s: %s", request.url.path, reason)
        return error_response(
            422,
            "validation_error",
            f"A value in the request cannot be stored ({reason}); remove NUL and other "
            "control characters, or send a value in range.",
        )

    @app.exception_handler(Exception)
    async def _internal_error(request: Request, exc: Exception) -> JSONResponse:
        # Starlette answers this outside the app's middleware: the id is still in the context
        # (service.telemetry leaves it set for the request's task), the header is added here
        request_id = REQUEST_ID.get()
        log.exception("unhandled error on %s", request.url.path)
        return error_response(
            500,
            "internal_error",
            f"Internal error; quote request id {request_id} to support.",
            headers={"X-Request-ID": request_id},
        )
