"""Limits on requests, enforced before routing: the body size (while the body streams in, not
only by Content-Length) and no NUL characters in the path or query."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.errors import ApiError, error_response


def _too_large(limit: int) -> ApiError:
    return ApiError(
        413,
        "upload_too_large",
        f"The upload exceeds the limit of {limit} bytes; send a smaller dataset "
        "or raise GANAUG_MAX_UPLOAD_BYTES.",
    )


class BodySizeLimitMiddleware:
    """Reject request bodies larger than `max_bytes` with 413 for POSTs under `path_prefix`."""

    def __init__(self, app: ASGIApp, *, max_bytes: int, path_prefix: str) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.path_prefix = path_prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(self.path_prefix):
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await _too_large(self.max_bytes).response()(scope, receive, send)
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _too_large(self.max_bytes)
            return message

        await self.app(scope, limited_receive, send)


class RefuseNulMiddleware:
    """Refuse a path or query string holding a NUL character (%00) with 422: no id, name or
    option has one, and PostgreSQL cannot compare text with one (it would be a 500)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and (
            "\x00" in scope["path"] or b"%00" in scope.get("query_string", b"")
        ):
            where = "path" if "\x00" in scope["path"] else "query string"
            response = error_response(
                422,
                "validation_error",
                f"Invalid request: the {where} holds a NUL character (%00); remove it.",
            )
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)
