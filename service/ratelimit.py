"""Per-key rate limits on the expensive routes, with the `limits` library (moving windows,
in memory for one API process or in Redis shared by several: GANAUG_RATE_LIMIT_STORAGE_URL).

A route takes part by its decorator, `@rate_limited("samples")`; the limit is the setting
`rate_limit_samples` (GANAUG_RATE_LIMIT_SAMPLES). Routers made with
`route_class=RateLimitedRoute` count each request once it is routed, before its body is
read, against the caller's key (service.access identified it).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import anyio.to_thread
from fastapi import Request, Response
from fastapi.routing import APIRoute
from limits import RateLimitItem, parse_many
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter

from core.settings import Settings
from service.access import CALLER_SCOPE_KEY, Caller
from service.errors import ApiError

LIMITED_ROUTES = ("datasets", "training", "samples", "archive", "classify", "reports")
_ATTRIBUTE = "ganaug_rate_limit"
RATE_LIMIT_EXTENSION = "x-rate-limit"  # the operation's limit, in the OpenAPI document

Endpoint = TypeVar("Endpoint", bound=Callable)


def rate_limited(name: str) -> Callable[[Endpoint], Endpoint]:
    """Mark a route's endpoint as counted against the rate limit `name` (per API key)."""
    if name not in LIMITED_ROUTES:
        raise ValueError(f"unknown rate limit {name!r}; one of {LIMITED_ROUTES}")

    def mark(endpoint: Endpoint) -> Endpoint:
        setattr(endpoint, _ATTRIBUTE, name)
        return endpoint

    return mark


def limit_of(endpoint: Callable | None) -> str | None:
    """The rate limit an endpoint is counted against, if any."""
    return getattr(endpoint, _ATTRIBUTE, None)


class RateLimitedRoute(APIRoute):
    """A route that counts requests against its endpoint's rate limit before reading them;
    its OpenAPI operation names the limit (`x-rate-limit`, which service.openapi reads)."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        super().__init__(path, endpoint, **kwargs)
        if (name := limit_of(endpoint)) is not None:
            self.openapi_extra = {**(self.openapi_extra or {}), RATE_LIMIT_EXTENSION: name}

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        name = limit_of(self.endpoint)
        if name is None:
            return handler

        async def limited(request: Request) -> Response:
            limits: RateLimits = request.app.state.rate_limits
            caller: Caller = request.scope[CALLER_SCOPE_KEY]
            if limits.in_memory:  # a dict and a lock: no I/O to move off the event loop
                limits.admit(name, caller.rate_identity)
            else:
                await anyio.to_thread.run_sync(limits.admit, name, caller.rate_identity)
            return await handler(request)

        return limited


class RateLimits:
    """The rate limits of `settings`: `admit(name, caller)` counts a request or refuses it."""

    def __init__(self, settings: Settings) -> None:
        storage = storage_from_string(settings.rate_limit_storage_url)
        self.in_memory = settings.rate_limit_storage_url.startswith("memory://")
        self._limiter = MovingWindowRateLimiter(storage)
        self._items: dict[str, list[RateLimitItem]] = {
            name: parse_many(value) if (value := getattr(settings, f"rate_limit_{name}")) else []
            for name in LIMITED_ROUTES
        }

    def admit(self, name: str, caller: str) -> None:
        """Count one `name` request of `caller` (a key id); ApiError 429 when over a limit."""
        items = self._items[name]
        for item in items:  # a request refused here counts against none of its limits
            if not self._limiter.test(item, name, caller):
                raise self._refusal(name, item, caller)
        # `hit` checks and counts in one step (a Lua script in Redis): of concurrent
        # requests that all passed `test`, in this process or another, only as many as
        # the limit allows are admitted.
        for item in items:
            if not self._limiter.hit(item, name, caller):
                raise self._refusal(name, item, caller)

    def _refusal(self, name: str, item: RateLimitItem, caller: str) -> ApiError:
        reset_at = self._limiter.get_window_stats(item, name, caller).reset_time
        retry_after = max(1, math.ceil(reset_at - time.time()))
        window = f"{item.multiples} {item.GRANULARITY.name}" + ("s" if item.multiples > 1 else "")
        return ApiError(
            429,
            "rate_limited",
            f"Rate limit exceeded: at most {item.amount} {name} requests per {window} per API "
            f"key (GANAUG_RATE_LIMIT_{name.upper()}); this key has used all {item.amount}. "
            f"Retry in {retry_after} s.",
            headers={"Retry-After": str(retry_after)},
            details={"limit": item.amount, "window": window, "retry_after_s": retry_after},
        )
