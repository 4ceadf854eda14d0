"""Who may call the API, from where, and how often. Checked before a request body is read:

1. the Host header names this service (DNS rebinding sends the attacker's name): 400
   `untrusted_host`; the probes (/healthz, /readyz) and /metrics answer any Host;
2. under /v1, no browser page of another site: Sec-Fetch-Site `cross-site` is refused on
   every request, and a request that changes state (POST, DELETE, ...) must be same-origin
   (Sec-Fetch-Site, else an Origin matching the Host): 403 `cross_site_request`. Clients
   that are not browsers send neither header and pass;
3. under /v1, the caller: an API key (`Authorization: Bearer <key>` or `X-API-Key: <key>`)
   names its tenant; without one, the anonymous tenant where settings allow it, else 401
   with `WWW-Authenticate: Bearer`;
Handlers get the caller from `service.deps` (TenantDep); service.ratelimit counts it
against the route's rate limit once routed (429 with Retry-After), still before the body.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import anyio.to_thread
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from core.db import tenants
from core.db.session import session_scope
from core.settings import LOOPBACK_NAMES, Settings
from service.errors import DATABASE_DOWN, ApiError, database_unavailable

log = logging.getLogger("ganaug.api")

API_PREFIX = "/v1"
# answered for any Host and without a key: the probes and the Prometheus scrape
PROBES = frozenset({"/healthz", "/readyz", "/metrics"})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CALLER_SCOPE_KEY = "ganaug.caller"  # where the request's Caller is kept in its ASGI scope
_WILDCARD_BINDS = frozenset({"", "0.0.0.0", "::"})


@dataclass(frozen=True)
class Caller:
    tenant: str
    key_id: str | None  # None: anonymous (the settings' default tenant)

    @property
    def rate_identity(self) -> str:
        return self.key_id or "anonymous"


def trusted_hosts(settings: Settings) -> list[str]:
    """Host names the API answers to: localhost, the bind address, GANAUG_TRUSTED_HOSTS
    (`*.example.com` matches subdomains, `*` any host)."""
    hosts = [*LOOPBACK_NAMES, *settings.trusted_hosts]
    if settings.host not in _WILDCARD_BINDS:
        hosts.append(settings.host)
    return sorted({host.lower().strip("[]") for host in hosts})


def startup_refusal(settings: Settings) -> str | None:
    """Why the API must not start as configured (keys required but none exists), else None."""
    if settings.anonymous:
        return None
    with session_scope(settings.sqlalchemy_url) as session:
        if tenants.count_active_keys(session):
            return None
    where = "127.0.0.1" if settings.loopback else f"{settings.host}, not a loopback address"
    return (
        f"Refusing to start: the API is bound to {where} and requires API keys, but no key "
        "exists. Create one with `ganaug keys create --tenant NAME`, or set "
        "GANAUG_ALLOW_ANONYMOUS=true to serve every caller as one tenant without keys."
    )


def auth_summary(settings: Settings) -> dict[str, Any]:
    """How callers are identified, for /readyz and the start-up log."""
    if not settings.anonymous:
        return {"mode": "api_keys"}
    return {
        "mode": "anonymous",
        "tenant": settings.default_tenant,
        "warning": f"requests without an API key are served as tenant "
        f"'{settings.default_tenant}' (bound to {settings.host}); create keys with "
        "`ganaug keys create --tenant NAME` and set GANAUG_ALLOW_ANONYMOUS=false to require them",
    }


def _host_name(value: str) -> str:
    """The host of a Host header or URL netloc, without port or IPv6 brackets, lower case."""
    if value.startswith("["):
        return value[1 : value.find("]")].lower()
    return value.rsplit(":", 1)[0].lower() if value.count(":") == 1 else value.lower()


def _matches(host: str, pattern: str) -> bool:
    if pattern == "*":
        return True
    if pattern.startswith("*."):
        return host.endswith(pattern[1:])
    return host == pattern


def _origin_netloc(origin: str) -> str:
    parts = urlsplit(origin)
    default = {"http": 80, "https": 443}.get(parts.scheme)
    try:
        port = parts.port
    except ValueError:
        return origin
    host = parts.hostname or ""
    host = f"[{host}]" if ":" in host else host
    return host if port in (None, default) else f"{host}:{port}"


def cross_site_refusal(method: str, headers: Headers) -> ApiError | None:
    """403 for a browser request made by another site's page (see the module docstring)."""
    site = headers.get("sec-fetch-site")
    origin = headers.get("origin")
    cross = site == "cross-site"
    if method not in SAFE_METHODS and not cross:
        if site is not None:
            cross = site not in ("same-origin", "none")
        elif origin is not None:
            cross = _origin_netloc(origin) != _origin_netloc(f"//{headers.get('host', '')}")
    if not cross:
        return None
    return ApiError(
        403,
        "cross_site_request",
        f"Refused a {method} sent by a page of another site ({origin or site}): web pages "
        "cannot use this API across sites. Call it from your own code (curl, a script) with "
        "an API key.",
    )


def _credential(headers: Headers) -> str | None:
    authorization = headers.get("authorization")
    if authorization is not None:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise _unauthorized(
                "invalid_api_key", "The Authorization header must be 'Bearer <API key>'."
            )
        return token.strip()
    return headers.get("x-api-key") or None


def _unauthorized(code: str, message: str) -> ApiError:
    challenge = 'Bearer realm="ganaug"'
    if code == "invalid_api_key":
        challenge += ', error="invalid_token"'
    return ApiError(401, code, message, headers={"WWW-Authenticate": challenge})


class AccessMiddleware:
    """Trusted hosts, cross-site refusal and API keys (module docstring)."""

    def __init__(self, app: ASGIApp, *, settings: Settings) -> None:
        self.app = app
        self.settings = settings
        self.hosts = trusted_hosts(settings)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in PROBES:
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        try:
            self._check_host(headers)
            path = scope["path"]
            if path == API_PREFIX or path.startswith(API_PREFIX + "/"):
                if refusal := cross_site_refusal(scope["method"], headers):
                    raise refusal
                # a database lookup: in a thread
                scope[CALLER_SCOPE_KEY] = await anyio.to_thread.run_sync(self._caller, headers)
        except ApiError as refusal:
            await refusal.response()(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _check_host(self, headers: Headers) -> None:
        host = _host_name(headers.get("host", ""))
        if not any(_matches(host, pattern) for pattern in self.hosts):
            raise ApiError(
                400,
                "untrusted_host",
                f"Host '{host}' is not one this service answers to ({', '.join(self.hosts)}); "
                "use one of them, or add the name to GANAUG_TRUSTED_HOSTS.",
            )

    def _caller(self, headers: Headers) -> Caller:
        secret = _credential(headers)
        if secret is None:
            if self.settings.anonymous:
                return Caller(self.settings.default_tenant, None)
            raise _unauthorized(
                "missing_api_key",
                "This API needs an API key: send 'Authorization: Bearer <key>' or "
                "'X-API-Key: <key>'. An operator creates keys with `ganaug keys create "
                "--tenant NAME`.",
            )
        try:
            with session_scope(self.settings.sqlalchemy_url) as session:
                key = tenants.find_active_key(session, secret)
                caller = Caller(key.tenant_id, key.id) if key is not None else None
        except DATABASE_DOWN as exc:
            raise database_unavailable() from exc
        if caller is None:
            raise _unauthorized(
                "invalid_api_key", "The API key is unknown or revoked; ask for a new one."
            )
        return caller
