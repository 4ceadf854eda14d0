"""The OpenAPI document: the one error shape, every status each route answers, the binary
media types, summaries and examples.

Routes declare their parameters, bodies and (in docstrings) descriptions; FastAPI sees
nothing else. What it cannot see is documented here, in one table: the errors raised below
a handler (catalog, draws, ingest), the answers of middleware (413 body limit, and 401/429
for keys and rate limits), and the non-JSON bodies of file responses. `install_openapi`
applies the table to `app.openapi()`. tests/service/test_schema_fuzz.py fuzzes the app
against the result, so the table cannot drift from what the routes do.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field

from service.errors import INGEST_STATUS
from service.ingest import ErrorKind

BINARY = {"type": "string", "format": "binary"}
PNG, ZIP, OCTETS = "image/png", "application/zip", "application/octet-stream"


class ErrorDetail(BaseModel):
    model_config = ConfigDict(extra="allow")  # an error may add facts, e.g. a quota's limit

    code: str = Field(description="stable, machine-readable: branch on this, not the message")
    message: str = Field(description="for people: what went wrong and what to do about it")


class ErrorResponse(BaseModel):
    """Every 4xx and 5xx answer of the API."""

    error: ErrorDetail


# What each status means, whichever route answers it.
STATUS_MEANING = {
    400: "The request body could not be parsed (not UTF-8 JSON, or a broken multipart form).",
    401: "No valid API key: send `Authorization: Bearer <key>` or `X-API-Key: <key>`.",
    404: "No such resource (for the caller's tenant).",
    409: "The resource is not in a state that allows this yet; the message says what to wait "
    "for or do.",
    413: "Over a size limit; the message names the limit.",
    415: "A file format the service cannot read.",
    422: "An invalid parameter, body or file; the message names the field and what to fix.",
    429: "Too many requests, or over a quota: wait `Retry-After` seconds, or free the quota.",
    500: "An internal error; quote the request id of the message to support.",
    503: "A service the API needs (database or job queue) is unreachable: retry later.",
}

# An example message for each code, shown in the schema's examples.
MESSAGES = {
    "unauthorized": "Missing or unknown API key; send it as Authorization: Bearer <key>.",
    "rate_limited": "Too many requests on this route; retry in 12 s.",
    "internal_error": "Internal error; quote request id 5f0c2e9a to support.",
    "unavailable": "The job queue is unreachable; retry later.",
    "broker_unavailable": "The job queue is unreachable; retry later.",
    "not_ready": "Not ready: database unreachable: OperationalError",
    "bad_request": "There was an error parsing the body: send the body this route documents "
    "at /docs (UTF-8 JSON, or a multipart form).",
    "validation_error": "Invalid request: n: Input should be greater than or equal to 1",
    "dataset_not_found": "No dataset with id '0a1b2c3d'.",
    "model_not_found": "No model with id '0a1b2c3d'.",
    "picture_not_found": "The report has no picture 'grids'.",
    "dataset_in_use": "A model of this dataset is queued or training; cancel it first.",
    "model_active": "The model is queued or training; cancel it first.",
    "model_finished": "The model already ended (succeeded).",
    "model_not_ready": "The model is running; samples exist only once it has succeeded.",
    "report_not_ready": "No report yet: the report is queued.",
    "report_in_progress": "A report is already queued or running.",
    "report_outdated": "filter=manifold needs the real class manifold; rebuild the report "
    "with POST /v1/models/{id}/report.",
    "no_recipe": "The model was trained without a held-out set (holdout_fraction 0), so no "
    "recipe was measured; pass per_class, truncation and filter yourself.",
    "no_classifier": "head=critic: this model has no critic classifier; use head=evaluator.",
    "invalid_config": "Invalid training options: steps: Input should be greater than 0",
    "invalid_name": "name holds control characters (such as NUL or a newline): 'a\\x00b'; use "
    "printable text.",
    "invalid_format": "format=png returns one image: pass class and n=1.",
    "invalid_truncation": "truncation must be a number in (0, 10.0] or 'auto'; got 'x'.",
    "out_of_range": "n must be at most 1024; got 5000.",
    "unknown_class": "Unknown class 'cat'; use a name or index of: circle, square.",
    "filter_exhausted": "class circle: 3 of 16 samples passed filter=confident after 2560 "
    "draws; lower min_confidence.",
    "recipe_conflict": "recipe=recommended sets per_class, truncation and filter; drop those "
    "parameters.",
    "upload_too_large": "The upload exceeds the limit of 536870912 bytes; send a smaller "
    "dataset or raise GANAUG_MAX_UPLOAD_BYTES.",
    ErrorKind.INVALID_OPTION: "image_size 200 is out of range; choose 8 to 128 or leave it unset",
    ErrorKind.UNSUPPORTED_FORMAT: "'data.rar' is not a zip, tar, tar.gz or .npz file; upload a "
    "zip or tar(.gz) of class folders, or an .npz with arrays x and y",
    ErrorKind.CORRUPT_ARCHIVE: "'data.zip' is damaged or truncated (Bad CRC-32); create it again",
    ErrorKind.UNSAFE_PATH: "member '../etc/passwd' has an absolute path, a drive letter or '..'",
    ErrorKind.UNSAFE_MEMBER: "member 'cats/link' is a symbolic link; upload regular files only",
    ErrorKind.TOO_MANY_MEMBERS: "the archive has more than 50000 entries; upload fewer files",
    ErrorKind.ARCHIVE_TOO_LARGE: "the archive expands to more than 2147483648 bytes; upload "
    "fewer or smaller images",
    ErrorKind.COMPRESSION_RATIO: "member 'a/x.png' expands more than 200 times, which looks "
    "like a zip bomb",
    ErrorKind.CORRUPT_IMAGE: "'cats/1.png' could not be decoded as an image; replace it",
    ErrorKind.IMAGE_TOO_LARGE: "'cats/1.png' is too large (20000x20000 pixels); downscale it "
    "before uploading",
    ErrorKind.EMPTY_DATASET: "'data.zip' holds no images",
    ErrorKind.BAD_LAYOUT: "'cat.png' is not inside a class folder",
    ErrorKind.SINGLE_CLASS: "found only class 'cats'; conditional training needs two or more "
    "classes, each with its own folder or label",
    ErrorKind.NPZ_INVALID: "x must be uint8 images of shape (N, H, W) or (N, H, W, C)",
    ErrorKind.NPZ_PICKLE: "array 'y' needs pickle to load, which is refused; save it as numbers",
    ErrorKind.NPZ_LENGTH_MISMATCH: "x has 10 images but y has 9 labels",
    ErrorKind.TOO_MANY_IMAGES: "more than 1024 images in one request; send them in several "
    "requests",
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


CLASSES = [{"index": 0, "name": "circle", "count": 30}, {"index": 1, "name": "square", "count": 30}]
IMAGE = {"height": 16, "width": 16, "channels": 1}
MODEL_EXAMPLE = {
    "id": "7c9e6679742540de944be07fc1f90ae7",
    "dataset_id": "0f8fad5bd9cb469fa16570867728950e",
    "method": "cgan",
    "status": "running",
    "progress": {
        "step": 600,
        "total_steps": 2000,
        "fraction": 0.3,
        "eta_seconds": 140.0,
        "elapsed_seconds": 61.2,
        "losses": {"d": 1.21, "g": 0.93},
    },
    "error": None,
    "classes": CLASSES,
    "image": IMAGE,
    "config": {"method": "cgan", "steps": 2000, "batch_size": 64, "seed": 1},
    "report": {"status": "pending", "stage": None, "fraction": 0.0, "error": None},
    "created_at": "2025-01-01T12:00:00Z",
    "started_at": "2025-01-01T12:00:01Z",
    "finished_at": None,
}
DATASET_EXAMPLE = {
    "id": MODEL_EXAMPLE["dataset_id"],
    "name": "shapes",
    "num_images": 60,
    "classes": CLASSES,
    "image": IMAGE,
    "created_at": "2025-01-01T12:00:00Z",
}
PAGE = {"count": 1, "limit": 50, "offset": 0}
DRAW_HEADERS = {
    "X-Seed": "the seed used (random when none was given): pass it again for the same images",
    "X-Truncation": "the truncation used (`none`, or t; `auto` resolves to the model's t*)",
}
MODEL = ("model_not_found",)
NOT_READY = ("model_not_ready",)

OPERATIONS: dict[str, Doc] = {
    "healthz": Doc("Liveness: the process answers", example={"status": "ok"}),
    "readyz": Doc(
        "Readiness: database and job queue reachable",
        errors={503: ("not_ready",)},
        example={"status": "ready", "checks": {"database": "ok", "broker": "ok"}},
    ),
    "upload_dataset": Doc(
        "Upload a dataset (and optionally start training)",
        errors={422: ("invalid_config", "invalid_name"), 503: ("broker_unavailable",)},
        upload=True,
        example=DATASET_EXAMPLE | {"model": MODEL_EXAMPLE | {"status": "queued"}},
    ),
    "list_datasets": Doc("List datasets", example={"data": [DATASET_EXAMPLE], **PAGE}),
    "get_dataset": Doc(
        "Get a dataset", errors={404: ("dataset_not_found",)}, example=DATASET_EXAMPLE
    ),
    "delete_dataset": Doc(
        "Delete a dataset and its models",
        errors={404: ("dataset_not_found",), 409: ("dataset_in_use",)},
    ),
    "create_model": Doc(
        "Train a model on a dataset",
        errors={
            404: ("dataset_not_found",),
            422: ("invalid_config",),
            503: ("broker_unavailable",),
        },
        headers={"Location": "the new model's URL"},
        example=MODEL_EXAMPLE | {"status": "queued"},
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
                "out_of_range",
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
            422: ("out_of_range", "recipe_conflict", "invalid_truncation"),
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
            404: MODEL,
            409: ("model_not_ready", "report_in_progress"),
            503: ("broker_unavailable",),
        },
        example=MODEL_EXAMPLE | {"status": "succeeded", "report": {"status": "queued"}},
    ),
}

TAGS = [
    {"name": "datasets", "description": "Upload labelled images; a dataset is what models learn."},
    {"name": "models", "description": "Train GANs, follow them, draw samples and archives."},
    {"name": "reports", "description": "The quality report of a trained model."},
    {"name": "health", "description": "Liveness and readiness, open without a key."},
]

# Answered on every /v1 route, whatever the handler: by the key check, the rate limiter, an
# unreachable database or queue, and the internal-error handler.
GUARDED: dict[int, tuple[str, ...]] = {
    401: ("unauthorized",),
    429: ("rate_limited",),
    500: ("internal_error",),
    503: ("unavailable",),
}


def error_codes(path: str, operation: dict, doc: Doc) -> dict[int, tuple[str, ...]]:
    """Every status the operation answers with an error, and its codes."""
    codes: dict[int, tuple[str, ...]] = {500: ("internal_error",)}
    if path.startswith("/v1/"):
        codes |= GUARDED
    if operation.get("parameters") or operation.get("requestBody"):
        codes[422] = ("validation_error",)
    if operation.get("requestBody"):
        codes[400] = ("bad_request",)
    if doc.upload:
        for status, kinds in _ingest_codes().items():
            codes[status] = (*codes.get(status, ()), *kinds)
        codes[413] = ("upload_too_large", *codes[413])
    for status, extra in doc.errors.items():
        known = codes.get(status, ())
        codes[status] = (*known, *(code for code in extra if code not in known))
    return dict(sorted(codes.items()))


def _error_response(status: int, codes: tuple[str, ...]) -> dict:
    listed = ", ".join(f"`{code}`" for code in codes)
    response: dict[str, Any] = {
        "description": f"{STATUS_MEANING[status]} Codes: {listed}.",
        "content": {
            "application/json": {
                "schema": {"$ref": "#/components/schemas/ErrorResponse"},
                "examples": {
                    code: {"value": {"error": {"code": code, "message": MESSAGES[code]}}}
                    for code in codes
                },
            }
        },
    }
    if status in (429, 503):
        response["headers"] = {
            "Retry-After": {
                "description": "seconds to wait before retrying (when the service knows)",
                "schema": {"type": "integer"},
            }
        }
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


def document(schema: dict) -> dict:
    """Apply the table to a FastAPI OpenAPI dict in place (its operation ids are the route
    names): error responses, media types, summaries and examples; returns it."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    error_schema = ErrorResponse.model_json_schema(ref_template="#/components/schemas/{model}")
    components.update(error_schema.pop("$defs"))
    components["ErrorResponse"] = error_schema
    for name in ("HTTPValidationError", "ValidationError"):
        components.pop(name, None)
    for path, operations in schema["paths"].items():
        for operation in operations.values():
            doc = OPERATIONS.get(operation["operationId"]) or Doc(operation["summary"])
            operation["summary"] = doc.summary
            responses = operation["responses"]
            responses.pop("422", None)  # FastAPI's {"detail": [...]}: never sent
            _success(operation, doc)
            for status, codes in error_codes(path, operation, doc).items():
                responses[str(status)] = _error_response(status, codes)
            if doc.request_example is not None:
                content = operation["requestBody"]["content"]["application/json"]
                content["example"] = doc.request_example
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
            document(schema)
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
