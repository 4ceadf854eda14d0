"""What operators get: request ids on every answer, in error bodies and in log lines; JSON
logs; and /metrics, scraped like Prometheus does."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from types import SimpleNamespace

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from core.logs import configure_logging
from core.settings import Settings
from service.app import create_app
from service.generation import load_sampler
from tests.service.served import install_trained_model, shapes_npz


@pytest.fixture(scope="module")
def served(tiny_model: SimpleNamespace, tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    settings = Settings(data_dir=tmp_path_factory.mktemp("telemetry") / "data")
    with TestClient(create_app(settings), base_url="http://localhost") as client:
        npz = shapes_npz(tiny_model)

        def upload() -> str:
            answer = client.post(
                "/v1/datasets",
                files={"file": ("shapes.npz", npz)},
                data={"train": "true", "config": json.dumps({"steps": 5})},
            )
            assert answer.status_code == 201, answer.text
            return answer.json()["model"]["id"]

        trained = upload()
        install_trained_model(settings, trained, tiny_model.model_dir, report=False)
        yield SimpleNamespace(client=client, trained=trained, queued=upload(), settings=settings)


def scrape(client: TestClient, host: str = "localhost") -> dict[tuple[str, tuple], float]:
    """/metrics parsed as Prometheus parses it: {(sample name, sorted labels): value}."""
    answer = client.get("/metrics", headers={"host": host})
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(answer.text)
        for sample in family.samples
    }


def test_request_ids_are_echoed_or_made_and_quoted_in_errors(served):
    given = served.client.get("/v1/models/nope", headers={"X-Request-ID": "req-42.a_b"})
    assert given.headers["x-request-id"] == "req-42.a_b"
    assert given.json()["error"]["request_id"] == "req-42.a_b"
    made = served.client.get("/v1/models/nope")
    assert re.fullmatch(r"[0-9a-f]{32}", made.headers["x-request-id"])
    assert made.json()["error"]["request_id"] == made.headers["x-request-id"]
    unsafe = served.client.get("/v1/models/nope", headers={"X-Request-ID": "a\tb" + "x" * 80})
    assert re.fullmatch(r"[0-9a-f]{32}", unsafe.headers["x-request-id"])  # not echoed
    ok = served.client.get("/healthz")
    assert ok.status_code == 200 and re.fullmatch(r"[0-9a-f]{32}", ok.headers["x-request-id"])
    refused = served.client.get("/v1/datasets", headers={"host": "evil.example"})
    assert refused.status_code == 400 and refused.headers["x-request-id"]


def test_json_logs_carry_the_request_id_in_every_line_of_its_request(tmp_path, capsys):
    app = create_app(Settings(data_dir=tmp_path / "data"))

    def fails() -> None:  # a handler that logs, then breaks
        logging.getLogger("ganaug.api").info("working on it")
        raise RuntimeError("broken on purpose")

    app.add_api_route("/v1/fails", fails)
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        configure_logging(Settings(log_format="json"))
        with TestClient(app, base_url="http://localhost", raise_server_exceptions=False) as c:
            failed = c.get("/v1/fails", headers={"X-Request-ID": "trace-7"})
        logging.getLogger("ganaug.api").info("outside a request")
        logging.getLogger("kombu.connection").warning("No hostname was supplied. Reverting")
    finally:
        root.handlers, root.level = saved
    assert failed.status_code == 500 and failed.headers["x-request-id"] == "trace-7"
    assert failed.json()["error"]["request_id"] == "trace-7"
    assert "broken on purpose" not in failed.text  # logged, never leaked
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line]
    assert all({"time", "level", "logger", "process", "request_id", "message"} <= set(line)
               for line in lines)  # fmt: skip
    of_request = [line for line in lines if line["request_id"] == "trace-7"]
    assert [line["message"] for line in of_request] == [
        "working on it",
        "unhandled error on /v1/fails",
    ]
    assert "broken on purpose" in of_request[1]["exception"]
    outside = [line for line in lines if line["message"] == "outside a request"]
    assert outside[0]["request_id"] == "-" and outside[0]["level"] == "INFO"
    assert not [line for line in lines if "No hostname" in line["message"]]


def test_metrics_count_requests_by_route_template_and_jobs_by_state(served):
    client, trained = served.client, served.trained
    before = scrape(client)
    key = ("method", "GET"), ("route", "/v1/models/{model_id}")
    assert client.get(f"/v1/models/{trained}").status_code == 200
    assert client.get("/v1/models/nope").status_code == 404
    assert client.get("/v1/models/nope-either").status_code == 404
    drawn = client.get(f"/v1/models/{trained}/samples", params={"class": "square", "n": 5})
    assert drawn.status_code == 200
    after = scrape(client, host="10.1.2.3")  # a scraper may use any Host name
    requests = "ganaug_http_requests_total"
    for status, more in (("200", 1), ("404", 2)):
        label = tuple(sorted((*key, ("status", status))))
        assert after[(requests, label)] - before.get((requests, label), 0) == more
    assert not [k for k in after if k[0] == requests and "nope" in str(k[1])]  # no raw paths
    latency = ("ganaug_http_request_duration_seconds_count", tuple(sorted(key)))
    assert after[latency] - before.get(latency, 0) == 3
    samples = ("ganaug_samples_generated_total", (("route", "samples"),))
    assert after[samples] - before.get(samples, 0) == 5
    assert after[("ganaug_models", (("status", "succeeded"),))] == 1
    assert after[("ganaug_models", (("status", "queued"),))] == 1
    assert after[("ganaug_queue_depth", (("kind", "training"),))] == 1
    assert after[("ganaug_reports", (("status", "none"),))] == 1  # the trained one: no report
    assert after[("ganaug_training_steps_per_second", ())] == 0  # nothing runs
    # the samples ran on a generator session: the metric names its provider, and only it
    in_use = load_sampler(served.settings.models_dir / trained).providers[0]
    assert in_use in ("CPUExecutionProvider", "CUDAExecutionProvider")
    generator = {  # other graphs may have opened sessions earlier in this process
        dict(k[1])["provider"]: v
        for k, v in after.items()
        if k[0] == "ganaug_onnxruntime_provider" and ("graph", "generator") in k[1]
    }
    assert generator == {in_use: 1}


def test_metrics_need_no_key_where_keys_are_required(tmp_path):
    settings = Settings(data_dir=tmp_path / "data", allow_anonymous=False)
    # no lifespan (it refuses to start without a key): the database is made here
    from core.startup import prepare

    prepare(settings)
    keyless = TestClient(create_app(settings), base_url="http://localhost")
    assert keyless.get("/v1/models").status_code == 401
    assert ("ganaug_models", (("status", "queued"),)) in scrape(keyless)
