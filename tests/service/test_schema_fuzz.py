"""Property-based fuzzing of the served OpenAPI schema with schemathesis.

A real gateway (uvicorn on a free port on 127.0.0.1, a trusted Host, in this process)
over a private PostgreSQL database gets schema-generated requests, valid and invalid, on
every operation. Each answer must not be a server error, and its status, content type,
headers and body must be what the schema documents. The service requires API keys: most
requests carry the fixture's key (as a bearer token or X-API-Key), the rest the key
headers schemathesis generated (a 401). Rate limits are off and quotas out of reach, so
neither hides what the routes do. Path ids are drawn from the real ones too (a succeeded
model with its report, one without a report, their dataset, the report's pictures), and
uploads are sometimes real images, so the routes are exercised past their 404s.

The fast tier runs a few derandomized examples per operation and mode; `slow` runs many,
randomly. DELETE gets a dataset and a model of its own, so the shared ones stay.
"""

from __future__ import annotations

import json
import re
import tempfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from core.settings import Settings
from models.artifact import REPORT_PICTURES_DIR
from models.images import encode_png
from service.app import create_app
from service.ratelimit import LIMITED_ROUTES
from tests.factories import SHAPES
from tests.servers import LiveServer, fresh_database
from tests.service.served import install_trained_model, shapes_npz
from tests.service.tenancy import bearer, create_keys

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
# Invalid requests must also be refused with a 4xx.
NEGATIVE_CHECKS = [*CHECKS, negative_data_rejection]
FAST_EXAMPLES = 40
SLOW_EXAMPLES = 150
NO_RATE_LIMITS = {f"rate_limit_{name}": "" for name in LIMITED_ROUTES}
NO_QUOTAS = {
    "quota_jobs": 10**6,
    "quota_datasets": 10**6,
    "quota_stored_bytes": 10**12,
    "quota_training_cost": 10**15,
}
KEY_HEADERS = ("authorization", "x-api-key")
# Headers the HTTP client frames the request with: a generated one (content-length: "KT
# M0bh") makes a request uvicorn refuses before the app sees it, with its own text/plain
# 400, so no answer of the service's is tested by sending it.
FRAMING_HEADERS = ("content-length", "transfer-encoding", "host", "connection", "te", "upgrade")
TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # RFC 9110 field names


def _operations() -> list[tuple[str, str]]:
    """(METHOD, path) of every documented operation."""
    with tempfile.TemporaryDirectory() as folder:
        paths = create_app(Settings(data_dir=Path(folder))).openapi()["paths"]
    return [(method.upper(), path) for path, ops in paths.items() for method in ops]


OPERATIONS = _operations()


def trained_model(client: httpx.Client, settings_: Settings, model_dir: Path, npz: bytes):
    """A new dataset with a succeeded model on it (files copied from model_dir), as
    (dataset id, model id)."""
    upload = client.post(
        "/v1/datasets",
        files={"file": ("shapes.npz", npz)},
        data={"train": "true", "config": json.dumps({"steps": 5})},
    )
    assert upload.status_code == 201, upload.text
    dataset_id, model_id = upload.json()["id"], upload.json()["model"]["id"]
    install_trained_model(settings_, model_id, model_dir, report=True)
    return dataset_id, model_id


@pytest.fixture(scope="module")
def live(
    tiny_model: SimpleNamespace, postgres_server: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SimpleNamespace]:
    """The served schema, the API key and the real ids: `model` succeeded with its report,
    `bare` succeeded without one, both of `dataset`; `fresh()` makes a dataset and model to
    delete."""
    with fresh_database(postgres_server) as database_url:
        settings_ = Settings(
            data_dir=tmp_path_factory.mktemp("fuzz") / "data",
            database_url=database_url,
            allow_anonymous=False,
            max_samples=12,  # keep generated images few: the caps are what is fuzzed
            max_archive_images=12,
            max_classify_images=8,
            **NO_RATE_LIMITS,
            **NO_QUOTAS,
        )
        key = create_keys(settings_, "fuzz")["fuzz"]
        npz = shapes_npz(tiny_model)
        with LiveServer(create_app(settings_)) as server:
            client = httpx.Client(base_url=server.base_url, headers=bearer(key), timeout=60)
            dataset_id, model_id = trained_model(client, settings_, tiny_model.model_dir, npz)
            queued = client.post("/v1/models", json={"dataset_id": dataset_id, "steps": 5})
            assert queued.status_code == 202, queued.text
            bare_id = queued.json()["id"]
            install_trained_model(settings_, bare_id, tiny_model.model_dir, report=False)
            pictures = sorted(
                p.stem for p in (tiny_model.model_dir / REPORT_PICTURES_DIR).glob("*.png")
            )
            yield SimpleNamespace(
                schema=schemathesis.openapi.from_url(f"{server.base_url}/openapi.json"),
                openapi=client.get("/openapi.json").json(),
                key=key,
                dataset=dataset_id,
                model=model_id,
                bare=bare_id,
                pictures=pictures,
                fresh=lambda: trained_model(client, settings_, tiny_model.model_dir, npz),
                files=[encode_png(tiny_model.x[0][..., None]), npz],
                seen={},
            )
            client.close()


def real_path_parameters(live: SimpleNamespace, method: str, path: str) -> list[dict]:
    """Path parameters naming real resources, for `path`; DELETE gets resources of its own."""
    if method == "DELETE":
        dataset_id, model_id = live.fresh()
        return [{"dataset_id": dataset_id}] if "{dataset_id}" in path else [{"model_id": model_id}]
    models = [live.model, live.bare]
    if path.endswith("/report") and method == "POST":
        models = [live.bare]  # a new report would leave `model` without one for a while
    if "{name}" in path:
        return [{"model_id": live.model, "name": name} for name in live.pictures]
    if "{model_id}" in path:
        return [{"model_id": model} for model in models]
    if "{dataset_id}" in path:
        return [{"dataset_id": live.dataset}]
    return []


def real_queries(live: SimpleNamespace, definition: dict) -> st.SearchStrategy[dict]:
    """Query strings of values the service can act on (not only refuse)."""
    values = {
        "class": ["circle", "1"],
        "n": [1, 3, 8],
        "format": ["grid", "png", "zip", "npz"],
        "seed": [0, 7],
        "truncation": ["auto", "0.7", "2"],
        "truncation_mode": ["clamp", "resample"],
        "filter": ["none", "confident", "manifold"],
        "min_confidence": [0.5, 0.9],
        "per_class": ["0", "3", "proportional"],
        "total": [0, 5],
        "include_real": [True, False],
        "limit": [1, 50],
        "offset": [0, 1],
        "status": ["succeeded", "queued"],
        "dataset_id": [live.dataset],
    }
    names = [p["name"] for p in definition.get("parameters", []) if p["in"] == "query"]
    return st.fixed_dictionaries({n: st.sampled_from(values[n]) for n in names if n in values})


def real_body(live: SimpleNamespace, operation_id: str) -> dict | None:
    """A body the service can act on: train on the real dataset, rename its classes to
    what they are (the shared dataset stays as it was), label a dataset, upload one (the
    check puts a real file in; random form fields alone seldom make a valid upload)."""
    return {
        "upload_dataset": {"file": b"", "name": "fuzzed"},
        "create_model": {"dataset_id": live.dataset},
        "update_dataset": {"classes": {name: name for name in SHAPES}},
        "label_dataset": {"name": "clusters"},
    }.get(operation_id)


def with_key(headers: dict | None, key: str, how: str) -> dict:
    """The case's headers with the API key sent `how` (bearer, x-api-key), or as generated;
    without generated headers that no HTTP server parses (framing ones, malformed names):
    uvicorn refuses those requests itself."""
    headers = {
        name: value
        for name, value in (headers or {}).items()
        if TOKEN.fullmatch(name) and name.lower() not in FRAMING_HEADERS
    }
    if how == "generated":
        return headers
    headers = {k: v for k, v in headers.items() if k.lower() not in KEY_HEADERS}
    return headers | (bearer(key) if how == "bearer" else {"X-API-Key": key})


def strategies(live: SimpleNamespace, operation, method: str, path: str, mode: GenerationMode):
    """Cases with generated values, with real ids, and (valid requests) with real ids and
    query values the service can act on."""
    definition = live.openapi["paths"][path][method.lower()]
    real = real_path_parameters(live, method, path) or [{}]
    found = [operation.as_strategy(mode)]
    found += [operation.as_strategy(mode, path_parameters=ids) for ids in real if ids]
    if mode == GenerationMode.POSITIVE:
        body = real_body(live, definition["operationId"])
        if body is not None:  # on the real ids too (PATCH a dataset, label with a model)
            found += [
                operation.as_strategy(mode, path_parameters=ids or None, body=body) for ids in real
            ]
        queries = real_queries(live, definition)
        found += [
            queries.flatmap(
                lambda query, ids=ids: operation.as_strategy(
                    mode, path_parameters=ids or None, query=query
                )
            )
            for ids in real
        ]
    return st.one_of(found)


def fuzz(live: SimpleNamespace, method: str, path: str, examples: int, derandomize: bool):
    """Send `examples` valid and (where something can be invalid) invalid requests."""
    definition = live.openapi["paths"][path][method.lower()]
    modes = [(GenerationMode.POSITIVE, CHECKS)]
    queries = [p for p in definition.get("parameters", []) if p["in"] == "query"]
    if queries or "requestBody" in definition:  # any path string is valid: nothing to break
        modes.append((GenerationMode.NEGATIVE, NEGATIVE_CHECKS))
    for mode, checks in modes:
        fuzz_mode(live, method, path, mode, checks, examples, derandomize)


def fuzz_mode(live, method, path, mode, checks, examples: int, derandomize: bool) -> None:
    operation = live.schema[path][method]
    seen = live.seen.setdefault((method, path), Counter())

    files = live.files if mode == GenerationMode.POSITIVE else []  # keep invalid ones invalid

    @given(
        case=strategies(live, operation, method, path, mode),
        file=st.sampled_from([None, *files]),
        key=st.sampled_from(["bearer", "bearer", "x-api-key", "generated"]),
    )
    @settings(
        max_examples=examples,
        deadline=None,
        derandomize=derandomize,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def check(case, file, key) -> None:
        if file is not None and isinstance(case.body, dict) and "file" in case.body:
            case.body["file"] = file  # a real image or dataset, not random bytes
        if path.startswith("/v1/"):
            case.headers = with_key(case.headers, live.key, key)
        response = case.call(timeout=60)
        case.validate_response(response, checks=checks)
        seen[response.status_code] += 1

    check()


def assert_reached_the_resources(live: SimpleNamespace, method: str, path: str) -> None:
    statuses = live.seen[(method, path)]
    refusals = {400, 401, 404, 413, 415, 422}  # no key, no such id, bad input
    assert set(statuses) - refusals, f"only refusals, never a real resource: {statuses}"


@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[" ".join(o) for o in OPERATIONS])
def test_fuzzed_requests_get_documented_answers(live, method, path):
    fuzz(live, method, path, FAST_EXAMPLES, derandomize=True)
    assert_reached_the_resources(live, method, path)


@pytest.mark.slow
@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[" ".join(o) for o in OPERATIONS])
def test_fuzzed_requests_get_documented_answers_at_length(live, method, path):
    fuzz(live, method, path, SLOW_EXAMPLES, derandomize=False)
    assert_reached_the_resources(live, method, path)
