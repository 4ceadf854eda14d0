"""The OpenAPI document: the one error shape, every status each route answers, the binary
media types, summaries and examples.

Routes declare their parameters, bodies and (in docstrings) descriptions; FastAPI sees
nothing else. What it cannot see is documented here, in one table: the errors raised below
a handler (catalog, quotas, draws, ingest), the answers of middleware (service.access: 400
untrusted Host, 401 API keys, 403 cross-site; service.limits: 413 body limit, 422 NUL;
service.ratelimit: 429 on the routes it counts), the API key security schemes, and the
non-JSON bodies of file responses, and the X-Request-ID header of every request and
answer (service.telemetry); the examples' values live in service.openapi_examples.
`install_openapi` applies the table to `app.openapi()`. tests/service/test_schema_fuzz.py
fuzzes the app against the result, so the table cannot drift from what the routes do.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field

from service.errors import INGEST_STATUS
from service.openapi_examples import (
    CLUSTERS,
    DATASET_EXAMPLE,
    DETAILS,
    EXAMPLE_REQUEST_ID,
    IMAGE,
    LABELLED_EXAMPLE,
    MESSAGES,
    MODEL_EXAMPLE,
    PAGE,
)
from service.ratelimit import RATE_LIMIT_EXTENSION

BINARY = {"type": "string", "format": "binary"}
PNG, ZIP, OCTETS = "image/png", "application/zip", "application/octet-stream"


class ErrorDetail(BaseModel):
    """`code` and `message` always; some codes add facts (`quota_exceeded`: quota, limit,
    used, requested; `rate_limited`: limit, window, retry_after_s;
    `too_many_images_requested`: limit, requested)."""

    model_config = ConfigDict(extra="allow")

    code: str = Field(description="stable, machine-readable: branch on this, not the message")
    message: str = Field(description="for people: what went wrong and what to do about it")
    quota: str | None = Field(
        None, description="quota_exceeded: the quota (jobs, datasets, stored_bytes, training_cost)"
    )
    limit: int | None = Field(
        None, description="the quota, the rate limit's requests per window, or the image cap"
    )
    used: int | None = Field(None, description="quota_exceeded: what the tenant uses now")
    requested: int | None = Field(
        None, description="quota_exceeded, too_many_images_requested: what this request needs"
    )
    window: str | None = Field(None, description="rate_limited: the window, e.g. `1 minute`")
    retry_after_s: int | None = Field(
        None, description="rate_limited: seconds until a request is admitted (Retry-After)"
    )
    request_id: str | None = Field(
        None,
        description="the request's X-Request-ID (the caller's or a generated one): quote it to "
        "support, it tags the request's log lines",
    )


class ErrorResponse(BaseModel):
    """Every 4xx and 5xx answer of the API."""

    error: ErrorDetail


# What each status means, whichever route answers it.
STATUS_MEANING = {
    400: "The request could not be read: a Host header this service does not answer to, or "
    "a body that cannot be parsed (not UTF-8 JSON, or a broken multipart form).",
    401: "No valid API key: send `Authorization: Bearer <key>` or `X-API-Key: <key>` (a key "
    "is needed unless the service runs in anonymous mode).",
    403: "Refused: a web page of another site sent the request, or it would take the "
    "tenant over a quota (the error adds `quota`, `limit`, `used` and `requested`).",
    404: "No such resource (for the caller's tenant).",
    409: "The resource is not in a state that allows this yet; the message says what to wait "
    "for or do.",
    413: "Over a size limit; the message names the limit.",
    415: "A file format the service cannot read.",
    422: "An invalid parameter, body or file; the message names the field and what to fix.",
    429: "Over the route's rate limit for this API key (`x-rate-limit` names it: the setting "
    "GANAUG_RATE_LIMIT_<NAME>): wait `Retry-After` seconds.",
    500: "An internal error (also while the database is unreachable); quote the request id "
    "of the message to support.",
    503: "A service the API needs is unreachable (the job queue; for /readyz also the "
    "database or the worker): nothing was queued, retry later.",
}


def _ingest_codes() -> dict[int, tuple[str, ...]]:
    """The refusals of an uploaded file, by status (service.errors.INGEST_STATUS)."""
    by_status: dict[int, tuple[str, ...]] = {}
    for kind, status in INGEST_STATUS.items():
        by_status[status] = (*by_status.get(status, ()), kind.value)
    return by_status


@dataclass(frozen=True)
class Doc:
    """What the schema says about one operation, beyond what FastAPI derives."""

    summary: str
    errors: Mapping[int, tuple[str, ...]] = field(default_factory=dict)  # status -> codes
    media: tuple[str, ...] = ()  # binary media types of the success body (JSON when empty)
    headers: Mapping[str, str] = field(default_factory=dict)  # success headers, all sent
    upload: bool = False  # a multipart file: the ingest refusals and the body limit apply
    example: Any = None  # a success body
    request_example: Any = None  # a JSON request body


DRAW_HEADERS = {
    "X-Seed": "the seed used (random when none was given): pass it again for the same images",
    "X-Truncation": "the truncation used (`none`, or t; `auto` resolves to the model's t*)",
}
MODEL = ("model_not_found",)
NOT_READY = ("model_not_ready",)
DATASET = ("dataset_not_found",)
QUOTA = ("quota_exceeded",)
BROKER = ("broker_unavailable",)
OPERATIONS: dict[str, Doc] = {
    "healthz": Doc("Liveness: the process answers", example={"status": "ok"}),
    "readyz": Doc(
        "Readiness: database and job queue reachable",
        errors={503: ("not_ready",)},
        example={
            "status": "ready",
            "checks": {"database": "ok", "broker": "ok"},
            "auth": {"mode": "api_keys"},
        },
    ),
    "upload_dataset": Doc(
        "Upload a dataset (and optionally start training)",
        errors={
            403: QUOTA,
            422: ("invalid_config", "invalid_name", "unlabelled_dataset"),
            503: BROKER,
        },
        upload=True,
        example=DATASET_EXAMPLE | {"model": MODEL_EXAMPLE | {"status": "queued", "device": None}},
    ),
    "list_datasets": Doc("List datasets", example={"data": [DATASET_EXAMPLE], **PAGE}),
    "get_dataset": Doc("Get a dataset", errors={404: DATASET}, example=DATASET_EXAMPLE),
    "get_dataset_examples": Doc(
        "Get example images of a dataset", errors={404: DATASET}, media=(PNG,)
    ),
    "get_training_stats": Doc(
        "Get a model's training losses over time",
        errors={404: MODEL},
        example={
            "model_id": "7c9e6679742540de944be07fc1f90ae7",
            "data": [
                {"step": 10, "elapsed_seconds": 1.9, "losses": {"d_loss": 1.38, "g_loss": 0.71}},
                {"step": 20, "elapsed_seconds": 3.6, "losses": {"d_loss": 1.21, "g_loss": 0.93}},
            ],
            "count": 2,
        },
    ),
    "update_dataset": Doc(
        "Rename a dataset's classes",
        errors={
            404: DATASET,
            409: ("dataset_in_use",),
            422: ("unlabelled_dataset", "unknown_class", "invalid_class_names"),
        },
        example=LABELLED_EXAMPLE | {"classes": [CLUSTERS[0] | {"name": "zero"}, CLUSTERS[1]]},
        request_example={"classes": {"cluster_0": "zero"}},
    ),
    "delete_dataset": Doc(
        "Delete a dataset and its models",
        errors={404: DATASET, 409: ("dataset_in_use",)},
    ),
    "create_model": Doc(
        "Train a model on a dataset",
        errors={
            403: QUOTA,
            404: DATASET,
            422: ("invalid_config", "unlabelled_dataset"),
            503: BROKER,
        },
        headers={"Location": "the new model's URL"},
        example=MODEL_EXAMPLE | {"status": "queued", "device": None},
        request_example={"dataset_id": MODEL_EXAMPLE["dataset_id"], "steps": 2000},
    ),
    "list_models": Doc("List models", example={"data": [MODEL_EXAMPLE], **PAGE}),
    "get_model": Doc(
        "Get a model: status, progress, ETA, report status",
        errors={404: MODEL},
        example=MODEL_EXAMPLE,
    ),
    "cancel_model": Doc(
        "Cancel a queued or running model",
        errors={404: MODEL, 409: ("model_finished",)},
        example=MODEL_EXAMPLE,
    ),
    "delete_model": Doc(
        "Delete a finished model and its files",
        errors={404: MODEL, 409: ("model_active",)},
    ),
    "get_samples": Doc(
        "Generate synthetic images",
        errors={
            404: MODEL,
            409: ("model_not_ready", "report_not_ready", "report_outdated"),
            422: (
                "too_many_images_requested",
                "invalid_format",
                "unknown_class",
                "invalid_truncation",
                "filter_exhausted",
            ),
        },
        media=(PNG, ZIP, OCTETS),
        headers=DRAW_HEADERS,
    ),
    "get_archive": Doc(
        "Download an augmented dataset (real + synthetic images) as a zip",
        errors={
            404: MODEL,
            409: ("model_not_ready", "report_not_ready", "report_outdated", "no_recipe"),
            422: (
                "too_many_images_requested",
                "invalid_per_class",
                "recipe_conflict",
                "invalid_truncation",
            ),
        },
        media=(ZIP,),
        headers=DRAW_HEADERS | {"Content-Disposition": "attachment; the archive's file name"},
    ),
    "get_generator": Doc(
        "Download the generator as ONNX",
        errors={404: MODEL, 409: NOT_READY},
        media=(OCTETS,),
        headers={"Content-Disposition": "attachment; the ONNX file's name"},
    ),
    "label_dataset": Doc(
        "Label the model's dataset with the classes a vcagan model discovered",
        errors={403: QUOTA, 404: MODEL, 409: ("model_not_ready", "no_clusters")},
        headers={"Location": "the new dataset's URL"},
        example=LABELLED_EXAMPLE,
        request_example={"name": "digits-clusters"},
    ),
    "classify_images": Doc(
        "Classify uploaded images with the model's classifier",
        errors={404: MODEL, 409: ("model_not_ready", "no_classifier")},
        upload=True,
        example={
            "model_id": MODEL_EXAMPLE["id"],
            "head": "critic",
            "image": IMAGE,
            "data": [
                {
                    "name": "a.png",
                    "probs": {"circle": 0.97, "square": 0.03},
                    "top": "circle",
                    "confidence": 0.97,
                }
            ],
            "count": 1,
        },
    ),
    "get_report": Doc(
        "Get the quality report",
        errors={404: MODEL, 409: ("report_not_ready",)},
    ),
    "get_report_picture": Doc(
        "Get a picture of the quality report",
        errors={404: ("model_not_found", "picture_not_found"), 409: ("report_not_ready",)},
        media=(PNG,),
    ),
    "compute_report": Doc(
        "(Re)compute the quality report",
        errors={
            403: QUOTA,
            404: MODEL,
            409: ("model_not_ready", "report_in_progress"),
            503: BROKER,
        },
        example=MODEL_EXAMPLE | {"status": "succeeded", "report": {"status": "queued"}},
    ),
}

TAGS = [
    {
        "name": "datasets",
        "description": "Upload images (in class folders, or unlabelled for "
        "vcagan); a dataset is what models learn.",
    },
    {"name": "models", "description": "Train GANs, follow them, draw samples and archives."},
    {"name": "reports", "description": "The quality report of a trained model."},
    {"name": "health", "description": "Liveness and readiness, open without a key."},
]

# The API key, either way service.access reads it; /healthz and /readyz need none.
SECURITY_SCHEMES = {
    "bearer": {
        "type": "http",
        "scheme": "bearer",
        "description": "`Authorization: Bearer <API key>` (keys: `ganaug keys create`)",
    },
    "apiKeyHeader": {
        "type": "apiKey",
        "in": "header",
        "name": "X-API-Key",
        "description": "`X-API-Key: <API key>`, the same key as the bearer token",
    },
}

# Answered on every /v1 route, whatever the handler: by service.access before routing
# (Host, cross-site, key), by the database-outage handler and by the internal-error handler.
GUARDED: dict[int, tuple[str, ...]] = {
    400: ("untrusted_host",),
    401: ("missing_api_key", "invalid_api_key"),
    403: ("cross_site_request",),
    500: ("internal_error",),
    503: ("database_unavailable",),
}

# Headers sent with every error of a status.
ERROR_HEADERS: dict[int, dict[str, Any]] = {
    401: {
        "WWW-Authenticate": {
            "description": 'the scheme to use: `Bearer realm="ganaug"`',
            "required": True,
            "schema": {"type": "string"},
        }
    },
    429: {
        "Retry-After": {
            "description": "seconds to wait before the route admits a request of this key",
            "required": True,
            "schema": {"type": "integer", "minimum": 1},
        }
    },
}


# service.telemetry.RequestIdMiddleware answers every request, documented or not, with one.
REQUEST_ID_HEADER = {
    "description": "the request's id: the caller's X-Request-ID when valid, else a generated "
    "one; it tags the request's log lines (quote it to support)",
    "required": True,
    "schema": {"type": "string", "pattern": "^[A-Za-z0-9._-]{1,64}$"},
}
REQUEST_ID_PARAMETER = {
    "name": "X-Request-ID",
    "in": "header",
    "required": False,
    "description": "an id of your own for this request (up to 64 of A-Z a-z 0-9 . _ -), "
    "echoed in the response and logged; any other value is replaced by a generated id",
    "schema": {"type": "string"},
}
REQUEST_ID_REF = {"$ref": "#/components/headers/X-Request-ID"}  # one per response


def error_codes(
    path: str, operation: dict, doc: Doc, rate_limited: bool = False
) -> dict[int, tuple[str, ...]]:
    """Every status the operation answers with an error, and its codes."""
    codes: dict[int, tuple[str, ...]] = {500: ("internal_error",)}
    if path.startswith("/v1/"):
        codes |= GUARDED
    if rate_limited:
        codes[429] = ("rate_limited",)
    if operation.get("parameters") or operation.get("requestBody"):
        codes[422] = ("validation_error",)
    if operation.get("requestBody"):
        codes[400] = (*codes.get(400, ()), "bad_request")
        codes[413] = ("upload_too_large",)  # any body: service.limits counts it as it streams
    if doc.upload:
        for status, kinds in _ingest_codes().items():
            codes[status] = (*codes.get(status, ()), *kinds)
    for status, extra in doc.errors.items():
        known = codes.get(status, ())
        codes[status] = (*known, *(code for code in extra if code not in known))
    return dict(sorted(codes.items()))


def _error_response(status: int, codes: tuple[str, ...]) -> dict:
    listed = ", ".join(f"`{code}`" for code in codes)
    examples = {
        code: {
            "value": {
                "error": {
                    "code": code,
                    "message": MESSAGES[code],
                    **DETAILS.get(code, {}),
                    "request_id": EXAMPLE_REQUEST_ID,
                }
            }
        }
        for code in codes
    }
    response: dict[str, Any] = {
        "description": f"{STATUS_MEANING[status]} Codes: {listed}.",
        "content": {
            "application/json": {
                "schema": {"$ref": "#/components/schemas/ErrorResponse"},
                "examples": examples,
            }
        },
    }
    if status in ERROR_HEADERS:
        response["headers"] = dict(ERROR_HEADERS[status])  # a copy: X-Request-ID joins it
    return response


def _success(operation: dict, doc: Doc) -> None:
    status, response = next((s, r) for s, r in operation["responses"].items() if s < "300")
    if doc.media:
        response["content"] = {media: {"schema": BINARY} for media in doc.media}
    elif doc.example is not None and "content" in response:
        response["content"]["application/json"]["example"] = doc.example
    if doc.headers:
        response["headers"] = {
            name: {"description": text, "required": True, "schema": {"type": "string"}}
            for name, text in doc.headers.items()
        }
    if status == "204":
        response.pop("content", None)


def document(schema: dict, *, anonymous: bool = False) -> dict:
    """Apply the table to a FastAPI OpenAPI dict in place (its operation ids are the route
    names): error responses, media types, summaries, examples and the API key schemes
    (`anonymous`: a key may be left out). Returns the schema."""
    components = schema.setdefault("components", {})
    models = components.setdefault("schemas", {})
    error_schema = ErrorResponse.model_json_schema(ref_template="#/components/schemas/{model}")
    models.update(error_schema.pop("$defs"))
    models["ErrorResponse"] = error_schema
    for name in ("HTTPValidationError", "ValidationError"):
        models.pop(name, None)
    components["securitySchemes"] = SECURITY_SCHEMES
    components["headers"] = {"X-Request-ID": REQUEST_ID_HEADER}
    # alternatives: either header; in anonymous mode none ({}) as well
    security = [{name: []} for name in SECURITY_SCHEMES] + ([{}] if anonymous else [])
    for path, operations in schema["paths"].items():
        for operation in operations.values():
            doc = OPERATIONS.get(operation["operationId"]) or Doc(operation["summary"])
            operation["summary"] = doc.summary
            if path.startswith("/v1/"):
                operation["security"] = security
            responses = operation["responses"]
            responses.pop("422", None)  # FastAPI's {"detail": [...]}: never sent
            _success(operation, doc)
            limited = RATE_LIMIT_EXTENSION in operation  # set by service.ratelimit
            for status, codes in error_codes(path, operation, doc, limited).items():
                responses[str(status)] = _error_response(status, codes)
            if doc.request_example is not None:
                content = operation["requestBody"]["content"]["application/json"]
                content["example"] = doc.request_example
            # after error_codes, which reads the route's own parameters; inline, since
            # clients (and tests/service/test_schema_fuzz.py) read parameters' names
            operation.setdefault("parameters", []).append(dict(REQUEST_ID_PARAMETER))
            for response in responses.values():
                response.setdefault("headers", {})["X-Request-ID"] = REQUEST_ID_REF
    schema["tags"] = TAGS
    return schema


def operation_id(route: APIRoute) -> str:
    """The route's function name (`get_samples`), for the app's generate_unique_id_function."""
    return route.name


def install_openapi(app: FastAPI) -> None:
    """Make `app.openapi()` (and /openapi.json, /docs) serve the documented schema; the app
    must be made with `generate_unique_id_function=operation_id`."""
    base = app.openapi

    def openapi() -> dict:
        schema = base()  # FastAPI's, cached until routes change
        if "ErrorResponse" not in schema.get("components", {}).get("schemas", {}):
            document(schema, anonymous=app.state.settings.anonymous)
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
