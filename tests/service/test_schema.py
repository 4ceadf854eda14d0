"""The OpenAPI schema says what a client needs: the one error shape, each status a route
answers, the binary media types, summaries, descriptions and examples. Plus regressions of
what the schema fuzz test (test_schema_fuzz.py) found, on PostgreSQL where it found them."""

from __future__ import annotations

import ast
import io
import json
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

import service
from core.settings import Settings
from service.app import create_app
from service.errors import INGEST_STATUS
from service.openapi import ErrorResponse
from service.ratelimit import limit_of
from service.routes import datasets, models, reports
from service.schemas import ClassificationsPublic, DatasetPublic, ModelPublic
from tests.factories import SHAPES, shapes_arrays

ERROR_REF = {"$ref": "#/components/schemas/ErrorResponse"}


@pytest.fixture(scope="module")
def schema(tmp_path_factory: pytest.TempPathFactory) -> dict:
    app = create_app(Settings(data_dir=tmp_path_factory.mktemp("schema") / "data"))
    with TestClient(app, base_url="http://localhost") as client:
        served = client.get("/openapi.json")
    assert served.status_code == 200
    return served.json()


def operations(schema: dict) -> Iterator[tuple[str, str, dict]]:
    for path, ops in schema["paths"].items():
        for method, operation in ops.items():
            yield method.upper(), path, operation


def media(schema: dict, path: str, status: str, method: str = "get") -> set[str]:
    return set(schema["paths"][path][method]["responses"][status]["content"])


def test_file_routes_declare_their_binary_media_types(schema):
    models = "/v1/models/{model_id}"
    assert media(schema, f"{models}/archive", "200") == {"application/zip"}
    assert media(schema, f"{models}/samples", "200") == {
        "image/png",
        "application/zip",
        "application/octet-stream",
    }
    assert media(schema, f"{models}/generator.onnx", "200") == {"application/octet-stream"}
    assert media(schema, f"{models}/report/{{name}}.png", "200") == {"image/png"}
    archive = schema["paths"][f"{models}/archive"]["get"]["responses"]["200"]
    assert {"X-Seed", "X-Truncation", "Content-Disposition"} <= set(archive["headers"])


def test_errors_are_documented_with_the_one_error_shape(schema):
    assert "HTTPValidationError" not in json.dumps(schema), "FastAPI's {detail: [...]} 422"
    error = schema["components"]["schemas"]["ErrorResponse"]
    assert error["required"] == ["error"]
    assert set(schema["components"]["schemas"]["ErrorDetail"]["required"]) == {"code", "message"}
    get_model = schema["paths"]["/v1/models/{model_id}"]["get"]["responses"]
    assert get_model["404"]["content"]["application/json"]["schema"] == ERROR_REF
    examples = get_model["404"]["content"]["application/json"]["examples"]
    assert examples["model_not_found"]["value"]["error"]["code"] == "model_not_found"
    for method, path, operation in operations(schema):
        for status, response in operation["responses"].items():
            if int(status) >= 400:
                content = response["content"]["application/json"]
                assert content["schema"] == ERROR_REF, (method, path, status)
                for example in content["examples"].values():
                    ErrorResponse.model_validate(example["value"])


def codes(operation: dict, status: str) -> set[str]:
    return set(operation["responses"][status]["content"]["application/json"]["examples"])


def test_every_api_route_documents_hosts_keys_and_cross_site_refusals(schema):
    schemes = schema["components"]["securitySchemes"]
    assert schemes["bearer"] == {"type": "http", "scheme": "bearer", **schemes["bearer"]}
    assert (schemes["apiKeyHeader"]["in"], schemes["apiKeyHeader"]["name"]) == (
        "header",
        "X-API-Key",
    )
    for method, path, operation in operations(schema):
        if not path.startswith("/v1/"):
            assert "security" not in operation and "401" not in operation["responses"], path
            continue
        # either header, or none: the schema's app runs on 127.0.0.1, anonymous by default
        assert operation["security"] == [{"bearer": []}, {"apiKeyHeader": []}, {}], path
        assert "untrusted_host" in codes(operation, "400"), (method, path)
        assert codes(operation, "401") == {"missing_api_key", "invalid_api_key"}, (method, path)
        assert operation["responses"]["401"]["headers"]["WWW-Authenticate"]["required"]
        assert "cross_site_request" in codes(operation, "403"), (method, path)
        if path.endswith("{model_id}") or path.endswith("{dataset_id}"):
            assert "404" in operation["responses"], (method, path)


def test_a_key_is_required_in_the_schema_where_the_service_requires_one(tmp_path):
    settings = Settings(data_dir=tmp_path / "data", host="10.1.2.3", allow_anonymous=False)
    served = create_app(settings).openapi()
    assert served["paths"]["/v1/datasets"]["get"]["security"] == [
        {"bearer": []},
        {"apiKeyHeader": []},
    ]
    assert "security" not in served["paths"]["/healthz"]["get"]


def test_rate_limits_quotas_and_the_broker_are_documented_where_they_answer(schema):
    routers = (datasets.router, models.router, reports.router)
    limits = {r.name: limit_of(r.endpoint) for router in routers for r in router.routes}
    limited = {name for name, limit in limits.items() if limit}
    assert limited == {
        "upload_dataset",
        "create_model",
        "get_samples",
        "get_archive",
        "classify_images",
        "compute_report",
    }
    queues_a_job = {"upload_dataset", "create_model", "compute_report"}
    over_quota = queues_a_job | {"label_dataset"}
    for method, path, operation in operations(schema):
        name, responses = operation["operationId"], operation["responses"]
        assert ("429" in responses) == (name in limited), (method, path)
        assert operation.get("x-rate-limit") == limits.get(name), (method, path)
        if name in limited:
            assert codes(operation, "429") == {"rate_limited"}
            assert responses["429"]["headers"]["Retry-After"]["required"]
        refusals = codes(operation, "403") if "403" in responses else set()
        assert ("quota_exceeded" in refusals) == (name in over_quota), (method, path)
        if path.startswith("/v1/"):  # every /v1 route reads the database
            outages = {"database_unavailable"} | ({"broker_unavailable"} & codes(operation, "503"))
            assert codes(operation, "503") == outages, (method, path)
            assert ("broker_unavailable" in outages) == (name in queues_a_job), (method, path)
    quota = schema["paths"]["/v1/models"]["post"]["responses"]["403"]["content"]
    example = quota["application/json"]["examples"]["quota_exceeded"]["value"]["error"]
    assert {"quota", "limit", "used", "requested"} <= set(example)
    detail = schema["components"]["schemas"]["ErrorDetail"]["properties"]
    assert {"quota", "limit", "used", "requested", "window", "retry_after_s"} <= set(detail)


def raised_codes() -> set[tuple[int, str]]:
    """(status, code) of every `ApiError(status, "code", ...)` and `error_response(...)` with
    literal arguments, and the 401 codes of service.access, in the service's source."""
    found = set()
    for source in Path(service.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(source.read_text())):
            if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Name):
                continue
            args = [a.value for a in node.args[:2] if isinstance(a, ast.Constant)]
            literal = len(args) == 2 and isinstance(args[1], str)
            if node.func.id in ("ApiError", "error_response") and literal:
                found.add((args[0], args[1]))
            elif node.func.id == "_unauthorized" and args:
                found.add((401, args[0]))
    return found


def test_every_code_the_service_raises_is_documented_under_its_status(schema):
    documented = {
        (int(status), code)
        for _, _, operation in operations(schema)
        for status, response in operation["responses"].items()
        if int(status) >= 400
        for code in response["content"]["application/json"]["examples"]
    }
    raised = raised_codes()
    assert len(raised) > 30 and (403, "quota_exceeded") in raised  # the scan finds them
    assert raised <= documented, sorted(raised - documented)


def test_uploads_document_every_refusal_of_ingestion(schema):
    for path in ("/v1/datasets", "/v1/models/{model_id}/classify"):
        responses = schema["paths"][path]["post"]["responses"]
        for kind, status in INGEST_STATUS.items():
            examples = responses[str(status)]["content"]["application/json"]["examples"]
            assert kind.value in examples, (path, kind)
        assert "upload_too_large" in responses["413"]["content"]["application/json"]["examples"]
        assert "400" in responses, "a broken multipart body is a 400"


def test_every_operation_has_a_summary_a_description_and_its_name(schema):
    ids = []
    for method, path, operation in operations(schema):
        assert operation.get("summary") and len(operation["summary"]) > 8, (method, path)
        assert operation.get("description") and len(operation["description"]) > 30, (method, path)
        ids.append(operation["operationId"])
    assert len(ids) == len(set(ids)) and "get_samples" in ids


def test_every_answer_documents_its_request_id_and_every_request_may_send_one(schema, tmp_path):
    header = schema["components"]["headers"]["X-Request-ID"]
    assert header["required"] is True
    ref = {"$ref": "#/components/headers/X-Request-ID"}
    for method, path, operation in operations(schema):
        sent = [
            p for p in operation["parameters"] if (p["in"], p["name"]) == ("header", "X-Request-ID")
        ]
        assert len(sent) == 1 and sent[0]["required"] is False, (method, path)
        for status, response in operation["responses"].items():
            assert response["headers"]["X-Request-ID"] == ref, (method, path, status)
    # what the service sends is what the schema says: made when absent, else the caller's
    pattern = re.compile(header["schema"]["pattern"])
    with TestClient(
        create_app(Settings(data_dir=tmp_path / "d")), base_url="http://localhost"
    ) as c:
        for answer in (c.get("/healthz"), c.get("/v1/models/nope"), c.get("/v1/datasets")):
            assert pattern.fullmatch(answer.headers["X-Request-ID"]), answer.request.url
        echoed = c.get("/v1/models/nope", headers={"X-Request-ID": "mine-1"})
        assert echoed.headers["X-Request-ID"] == "mine-1"


def test_examples_are_valid_bodies(schema):
    def example(path: str, status: str, method: str = "get"):
        responses = schema["paths"][path][method]["responses"]
        return responses[status]["content"]["application/json"]["example"]

    DatasetPublic.model_validate(example("/v1/datasets/{dataset_id}", "200"))
    DatasetPublic.model_validate(example("/v1/datasets", "201", "post"))
    DatasetPublic.model_validate(example("/v1/datasets/{dataset_id}", "200", "patch"))
    DatasetPublic.model_validate(example("/v1/models/{model_id}/label-dataset", "201", "post"))
    ModelPublic.model_validate(example("/v1/models/{model_id}", "200"))
    ClassificationsPublic.model_validate(example("/v1/models/{model_id}/classify", "200", "post"))
    body = schema["paths"]["/v1/models"]["post"]["requestBody"]["content"]["application/json"]
    assert "dataset_id" in body["example"]


@pytest.fixture
def pg_client(tmp_path: Path, postgres_url: str) -> Iterator[TestClient]:
    settings = Settings(data_dir=tmp_path / "data", database_url=postgres_url)
    with TestClient(create_app(settings), base_url="http://localhost") as client:
        yield client


def assert_error(response, status: int, code: str, *words: str) -> str:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code, error
    assert all(word in error["message"] for word in words), error["message"]
    return error["message"]


def shapes_npz() -> bytes:
    x, y = shapes_arrays(per_class=4, size=8)
    buffer = io.BytesIO()
    np.savez(buffer, x=x, y=y, classes=np.asarray(SHAPES))
    return buffer.getvalue()


def test_nul_in_an_id_or_filter_is_a_422_not_a_500(pg_client):
    """Found by the fuzzer: PostgreSQL refuses text with NUL, which was a 500."""
    listing = pg_client.get("/v1/models", params={"dataset_id": "a\x00b"})
    assert_error(listing, 422, "validation_error", "NUL", "query")
    model = pg_client.get("/v1/models/a%00b")
    assert_error(model, 422, "validation_error", "NUL", "path")
    assert pg_client.get("/v1/models", params={"dataset_id": "ab"}).json()["count"] == 0
    # found by the slow fuzz run: a NUL inside a JSON body's id reached the database
    created = pg_client.post("/v1/models", json={"dataset_id": "R#\x00C+"})
    assert_error(created, 422, "validation_error", "NUL", "cannot be stored")
    assert pg_client.get("/v1/models").json()["count"] == 0


def test_a_dataset_name_with_control_characters_is_refused_and_nothing_kept(pg_client):
    """Found by the fuzzer: a NUL in the form's name was a 500 after the whole ingestion."""
    refused = pg_client.post(
        "/v1/datasets", files={"file": ("shapes.npz", shapes_npz())}, data={"name": "a\x00b"}
    )
    assert_error(refused, 422, "invalid_name", "control characters", "printable")
    assert pg_client.get("/v1/datasets").json()["count"] == 0
    kept = pg_client.post("/v1/datasets", files={"file": ("my shapes.npz", shapes_npz())})
    assert kept.status_code == 201, kept.text
    assert kept.json()["name"] == "my shapes"


def test_a_body_that_cannot_be_parsed_is_a_documented_400(pg_client):
    """Found by the fuzzer: an undocumented 400 whose message did not say what to send."""
    not_utf8 = pg_client.post(
        "/v1/models", content=b"\xff\xfe{", headers={"content-type": "application/json"}
    )
    assert_error(not_utf8, 400, "bad_request", "UTF-8 JSON", "/docs")
    broken_form = pg_client.post(
        "/v1/datasets",
        content=b"--b\r\n-1--b--\r\n",
        headers={"content-type": "multipart/form-data; boundary=b"},
    )
    assert_error(broken_form, 400, "bad_request", "multipart form")


def test_the_model_queued_by_an_upload_is_shown_whole(pg_client):
    """Found by the fuzzer: the dataset routes leave out None fields, which dropped the
    queued model's required `error`, `started_at` and `finished_at` (schema violation)."""
    upload = pg_client.post(
        "/v1/datasets",
        files={"file": ("shapes.npz", shapes_npz())},
        data={"train": "true", "config": json.dumps({"steps": 5})},
    )
    assert upload.status_code == 201, upload.text
    model = upload.json()["model"]
    assert (model["status"], model["error"], model["finished_at"]) == ("queued", None, None)
    assert model == pg_client.get(f"/v1/models/{model['id']}").json()
    assert "model" not in pg_client.get(f"/v1/datasets/{upload.json()['id']}").json()


def documented_example(schema: dict, path: str, method: str, status: int, code: str) -> dict:
    content = schema["paths"][path][method]["responses"][str(status)]["content"]
    return content["application/json"]["examples"][code]["value"]["error"]


def test_rate_limit_and_quota_refusals_carry_the_documented_fields(schema, tmp_path):
    settings = Settings(data_dir=tmp_path / "data", rate_limit_archive="1/minute", quota_datasets=1)
    with TestClient(create_app(settings), base_url="http://localhost") as client:
        archive = "/v1/models/0a1b2c3d/archive"
        assert client.get(archive).status_code == 404  # counted before the handler looks
        limited = client.get(archive)
        assert limited.status_code == 429, limited.text
        assert int(limited.headers["Retry-After"]) >= 1
        uploads = [client.post("/v1/datasets", files={"file": ("s.npz", shapes_npz())})]
        uploads.append(client.post("/v1/datasets", files={"file": ("s.npz", shapes_npz())}))
    assert uploads[0].status_code == 201, uploads[0].text
    assert uploads[1].status_code == 403, uploads[1].text
    answers = [
        (limited, "/v1/models/{model_id}/archive", "get", 429, "rate_limited"),
        (uploads[1], "/v1/datasets", "post", 403, "quota_exceeded"),
    ]
    fields = set(schema["components"]["schemas"]["ErrorDetail"]["properties"])
    for response, path, method, status, code in answers:
        error = response.json()["error"]
        example = documented_example(schema, path, method, status, code)
        assert error["code"] == code and set(error) == set(example) <= fields, error
