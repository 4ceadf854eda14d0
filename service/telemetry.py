"""What operators see of the gateway: a request id on every request, and Prometheus metrics
at /metrics.

Request ids: a client's `X-Request-ID` (up to 64 of `A-Z a-z 0-9 . _ -`) is kept, else one
is made; it comes back in the response's `X-Request-ID`, in every log line written while
the request is served (core.logs.REQUEST_ID) and in error bodies (`error.request_id`).

Metrics (prometheus-client, this process's registry):
- `ganaug_http_requests_total{method, route, status}` and
  `ganaug_http_request_duration_seconds{method, route}`: `route` is the route's template
  (`/v1/models/{model_id}`), never the raw path, so ids do not become label values;
- read from the database at each scrape: `ganaug_models{status}`,
  `ganaug_reports{status}`, `ganaug_queue_depth{kind}` (trainings and reports queued),
  `ganaug_training_steps_per_second` and `ganaug_training_images_per_second` (summed over
  the trainings running now, from their last progress);
- `ganaug_samples_generated_total{route}`: synthetic images served (samples, archive);
- `ganaug_onnxruntime_provider{graph, provider}` = 1: the ONNX Runtime execution provider
  the sessions of each graph (generator, classifier, evaluator, soft_labels) run on, set
  when the gateway opens one (CUDAExecutionProvider or CPUExecutionProvider).

Several API processes (`ganaug serve --workers N`) run in prometheus-client's multi-process
mode (PROMETHEUS_MULTIPROC_DIR, set by ganaug.serving): each process writes its counts to
files there and /metrics, whichever process answers, sums every process's, so the
counters and histograms are the service's totals. The provider gauge is the maximum over
processes, and `ganaug_api_process_requests{pid}` (only in this mode) counts the requests
each process answered, to see how the load spreads.
"""

from __future__ import annotations

import logging
import os
import re
import time
import uuid
from collections.abc import Iterator

from fastapi import APIRouter, Request, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core.db.session import session_scope
from core.db.tables import Model
from core.logs import REQUEST_ID
from core.settings import Settings

log = logging.getLogger("ganaug.api")

REQUEST_ID_HEADER = "X-Request-ID"
_VALID_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
METRICS_PATH = "/metrics"
MULTIPROCESS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"  # prometheus-client's name
MODEL_STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")
REPORT_STATUSES = ("none", "pending", "queued", "running", "succeeded", "failed")


class RequestIdMiddleware:
    """Gives each HTTP request an id (the client's, when valid) for logs, errors and the
    response header. Added last, so it is outermost: every answer carries it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = Headers(scope=scope).get(REQUEST_ID_HEADER, "")
        request_id = given if _VALID_REQUEST_ID.fullmatch(given) else uuid.uuid4().hex
        # Not reset afterwards: each request runs in its own task (a copy of the context),
        # and Starlette's 500 handler, outside this middleware, still logs with the id.
        REQUEST_ID.set(request_id)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message)[REQUEST_ID_HEADER] = request_id
            await send(message)

        await self.app(scope, receive, send_with_id)


# Counted by the routes that serve them; one counter for the process, in every app's registry.
SAMPLES_SERVED = Counter(
    "ganaug_samples_generated", "Synthetic images served, by route", ["route"], registry=None
)


# Set where sessions open (service.generation); process-wide like SAMPLES_SERVED.
ORT_PROVIDER = Gauge(
    "ganaug_onnxruntime_provider",
    "1 for the ONNX Runtime execution provider each graph's sessions run on",
    ["graph", "provider"],
    registry=None,
    multiprocess_mode="max",  # 1 if any API process opened such a session
)


def record_provider(graph: str, providers: list[str]) -> None:
    """Note the provider a new session of `graph` runs on: the first of its providers
    (ORT lists CPUExecutionProvider after CUDA as the fallback for unsupported nodes)."""
    if providers:
        ORT_PROVIDER.labels(graph, providers[0]).set(1)


class Metrics:
    """The gateway's Prometheus registry: request counters and the database's job gauges;
    in multi-process mode (MULTIPROCESS_DIR_ENV set) the counts of every API process."""

    def __init__(self, settings: Settings) -> None:
        folder = os.environ.get(MULTIPROCESS_DIR_ENV)
        self.registry = CollectorRegistry()  # what /metrics renders
        # In multi-process mode counts go to this process's files, rendered from there.
        counted = None if folder else self.registry
        self.requests = Counter(
            "ganaug_http_requests",
            "HTTP requests answered, by method, route template and status",
            ["method", "route", "status"],
            registry=counted,
        )
        self.latency = Histogram(
            "ganaug_http_request_duration_seconds",
            "Time to answer (until the response starts), by method and route template",
            ["method", "route"],
            registry=counted,
        )
        self.by_process: Gauge | None = None
        if folder:
            self.by_process = Gauge(
                "ganaug_api_process_requests",
                "HTTP requests answered by each API process (ganaug serve --workers N)",
                registry=None,
                multiprocess_mode="all",  # one sample per process, labelled with its pid
            )
            MultiProcessCollector(self.registry, folder)  # every process's files, summed
        else:
            self.registry.register(SAMPLES_SERVED)
            self.registry.register(ORT_PROVIDER)
        self.registry.register(JobsCollector(settings))

    def count(self, method: str, route: str, status: int) -> None:
        """Count one answered request."""
        self.requests.labels(method, route, str(status)).inc()
        if self.by_process is not None:
            self.by_process.inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)


class JobsCollector(Collector):
    """Jobs by state, queue depth and training throughput, read from the database at each
    scrape (every tenant's; counts only, no ids)."""

    def __init__(self, settings: Settings) -> None:
        self.url = settings.sqlalchemy_url

    def collect(self) -> Iterator[GaugeMetricFamily]:
        models = GaugeMetricFamily("ganaug_models", "Models by training status", labels=["status"])
        reports = GaugeMetricFamily(
            "ganaug_reports", "Models by quality-report status", labels=["status"]
        )
        queue = GaugeMetricFamily(
            "ganaug_queue_depth", "Jobs queued and not yet running", labels=["kind"]
        )
        steps = GaugeMetricFamily(
            "ganaug_training_steps_per_second", "Steps per second, all running trainings"
        )
        images = GaugeMetricFamily(
            "ganaug_training_images_per_second", "Images per second, all running trainings"
        )
        try:
            with session_scope(self.url) as session:
                by_status = dict(
                    session.execute(select(Model.status, func.count()).group_by(Model.status)).all()
                )
                by_report = dict(
                    session.execute(
                        select(Model.report_status, func.count()).group_by(Model.report_status)
                    ).all()
                )
                running = session.execute(
                    select(Model.progress, Model.config).where(Model.status == "running")
                ).all()
        except Exception as exc:  # a scrape must answer; the gauges are then left out
            log.warning("metrics: the database did not answer: %s", exc)
            return
        for status in MODEL_STATUSES:
            models.add_metric([status], by_status.get(status, 0))
        for status in REPORT_STATUSES:
            reports.add_metric([status], by_report.get(status, 0))
        queue.add_metric(["training"], by_status.get("queued", 0))
        queue.add_metric(["report"], by_report.get("queued", 0))
        steps_per_s = images_per_s = 0.0
        for progress, config in running:
            step, elapsed = (progress or {}).get("step") or 0, (progress or {}).get("elapsed_s")
            if step and elapsed:
                steps_per_s += step / elapsed
                images_per_s += step / elapsed * (config or {}).get("batch_size", 0)
        steps.add_metric([], steps_per_s)
        images.add_metric([], images_per_s)
        yield from (models, reports, queue, steps, images)


class MetricsMiddleware:
    """Counts and times every HTTP answer by route template (unrouted paths: `unmatched`)."""

    def __init__(self, app: ASGIApp, *, metrics: Metrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] == METRICS_PATH:
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500  # what the server answers if the app raises before responding

        async def send_and_time(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                self.metrics.latency.labels(scope["method"], _route(scope)).observe(
                    time.perf_counter() - start
                )
            await send(message)

        try:
            await self.app(scope, receive, send_and_time)
        finally:
            self.metrics.count(scope["method"], _route(scope), status)


def _route(scope: Scope) -> str:
    """The matched route's template; mounts (the docs' assets) by their prefix."""
    route = scope.get("route")
    if route is not None and hasattr(route, "path"):
        return route.path
    if scope["path"].startswith("/docs/assets/"):
        return "/docs/assets"
    return "unmatched"


router = APIRouter(tags=["health"])


@router.get(METRICS_PATH, include_in_schema=False)
def metrics(request: Request) -> Response:
    """Prometheus metrics (text exposition format); no API key needed, any Host."""
    body = request.app.state.metrics.render()
    return Response(body, media_type=CONTENT_TYPE_LATEST)
