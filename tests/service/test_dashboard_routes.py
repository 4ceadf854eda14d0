"""What the dashboard reads besides the other routes (a dataset's example images, a model's
loss history), and how its pages are served: same origin only, nothing from elsewhere."""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from fastapi.testclient import TestClient

from core.settings import Settings
from service.app import create_app
from service.routes.dashboard import WEB_DIR
from tests.api_flows import decode_png
from tests.factories import SHAPES, shapes_arrays
from tests.service.served import install_trained_model

TILE = 16 + 2  # a 16 px image and its 2 px of padding


def npz_bytes(x: np.ndarray, y: np.ndarray | None) -> bytes:
    buffer = io.BytesIO()
    arrays = {"x": x} if y is None else {"x": x, "y": y, "classes": np.asarray(SHAPES)}
    np.savez(buffer, **arrays)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def served(tiny_model: SimpleNamespace, tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    settings = Settings(data_dir=tmp_path_factory.mktemp("dashboard-routes") / "data")
    with TestClient(create_app(settings), base_url="http://localhost") as client:
        upload = client.post(
            "/v1/datasets",
            files={"file": ("shapes.npz", npz_bytes(tiny_model.x, tiny_model.y))},
            data={"train": "true", "config": json.dumps({"steps": 5})},
        )
        assert upload.status_code == 201, upload.text
        body = upload.json()
        install_trained_model(settings, body["model"]["id"], tiny_model.model_dir)
        yield SimpleNamespace(client=client, dataset_id=body["id"], model_id=body["model"]["id"])


def tile(grid: np.ndarray, row: int, col: int) -> np.ndarray:
    top, left = 2 + row * TILE, 2 + col * TILE
    return grid[top : top + 16, left : left + 16]


def test_examples_are_the_first_real_images_of_each_class_a_row_each(served, tiny_model):
    response = served.client.get(f"/v1/datasets/{served.dataset_id}/examples.png?per_class=5")
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    grid = decode_png(response.content)
    assert grid.shape == (len(SHAPES) * TILE + 2, 5 * TILE + 2)
    for c in range(len(SHAPES)):
        first = np.flatnonzero(tiny_model.y == c)[:5]
        for col, index in enumerate(first):
            assert np.array_equal(tile(grid, c, col), tiny_model.x[index].reshape(16, 16)), (c, col)


def test_examples_of_a_small_class_are_padded_and_an_unlabelled_dataset_is_one_row(served):
    x, y = shapes_arrays(per_class=3, size=16)
    keep = np.flatnonzero((y != 2) | (np.arange(len(y)) % 3 == 0))  # one triangle is left
    small = served.client.post(
        "/v1/datasets", files={"file": ("s.npz", npz_bytes(x[keep], y[keep]))}
    )
    assert small.status_code == 201, small.text
    grid = decode_png(
        served.client.get(f"/v1/datasets/{small.json()['id']}/examples.png?per_class=3").content
    )
    assert grid.shape == (3 * TILE + 2, 3 * TILE + 2)
    assert tile(grid, 2, 0).any() and not tile(grid, 2, 1).any() and not tile(grid, 2, 2).any()

    unlabelled = served.client.post("/v1/datasets", files={"file": ("u.npz", npz_bytes(x, None))})
    assert unlabelled.status_code == 201 and unlabelled.json()["labelled"] is False
    grid = decode_png(
        served.client.get(f"/v1/datasets/{unlabelled.json()['id']}/examples.png").content
    )
    assert grid.shape == (TILE + 2, 8 * TILE + 2)
    assert np.array_equal(tile(grid, 0, 7), x[7].reshape(16, 16))


def test_examples_refuse_unknown_datasets_and_bad_counts(served):
    missing = served.client.get("/v1/datasets/nope/examples.png")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "dataset_not_found"
    too_many = served.client.get(f"/v1/datasets/{served.dataset_id}/examples.png?per_class=33")
    assert too_many.status_code == 422
    assert too_many.json()["error"]["code"] == "validation_error"
    assert "per_class" in too_many.json()["error"]["message"]


def test_stats_are_the_runs_losses_in_step_order_and_can_be_thinned(served, tiny_model):
    lines = [json.loads(line) for line in (tiny_model.model_dir / "stats.jsonl").open()]
    url = f"/v1/models/{served.model_id}/stats"
    full = served.client.get(url).json()
    assert full["model_id"] == served.model_id and full["count"] == len(lines) >= 10
    assert [p["step"] for p in full["data"]] == [line["step"] for line in lines]
    assert full["data"][-1]["losses"] == pytest.approx(lines[-1]["losses"])
    assert full["data"][-1]["elapsed_seconds"] == lines[-1]["elapsed_s"]

    thin = served.client.get(url, params={"max_points": 4}).json()
    assert thin["count"] == len(lines) and len(thin["data"]) == 4
    assert thin["data"][0]["step"] == lines[0]["step"]
    assert thin["data"][-1]["step"] == lines[-1]["step"] == tiny_model.result.steps_completed
    missing = served.client.get("/v1/models/nope/stats")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "model_not_found"


def test_stats_of_a_queued_model_are_empty_and_non_finite_losses_are_null(served, tiny_model):
    queued = served.client.post("/v1/models", json={"dataset_id": served.dataset_id, "steps": 5})
    assert queued.status_code == 202, queued.text
    model_id = queued.json()["id"]
    empty = served.client.get(f"/v1/models/{model_id}/stats").json()
    assert empty == {"model_id": model_id, "data": [], "count": 0}

    stats = served.client.app.state.settings.models_dir / model_id / "stats.jsonl"
    stats.parent.mkdir(parents=True)
    stats.write_text('{"step": 10, "elapsed_s": 1.5, "losses": {"d": NaN, "g": 0.5}}\n{"step": 2')
    body = served.client.get(f"/v1/models/{model_id}/stats").json()
    assert body["data"] == [{"step": 10, "elapsed_seconds": 1.5, "losses": {"d": None, "g": 0.5}}]


def test_the_dashboard_is_served_at_the_root_from_this_origin_only(served):
    root = served.client.get("/", follow_redirects=False)
    assert root.status_code == 307 and root.headers["location"] == "/ui/"
    for path in ("/ui/", f"/ui/models/{served.model_id}", f"/ui/datasets/{served.dataset_id}"):
        page = served.client.get(path)
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        policy = page.headers["content-security-policy"]
        assert "default-src 'self'" in policy and "frame-ancestors 'none'" in policy
        assert page.headers["x-frame-options"] == "DENY"
        assert "/ui/static/dashboard.js" in page.text
    script = served.client.get("/ui/static/common.js")
    assert script.status_code == 200 and "X-API-Key" in script.text
    escaped = served.client.get("/ui/models/%22%3E%3Cscript%3Ex")
    assert "<script>x" not in escaped.text and "&#34;&gt;&lt;script&gt;x" in escaped.text
    rebound = served.client.get("/ui/", headers={"Host": "rebind.example"})
    assert rebound.status_code == 400 and rebound.json()["error"]["code"] == "untrusted_host"
    paths = {p for p in served.client.get("/openapi.json").json()["paths"]}
    assert not any(p == "/" or p.startswith("/ui") for p in paths), (
        "pages stay out of the API schema"
    )


def test_the_dashboard_files_load_nothing_from_other_sites():
    files = [
        *Path(WEB_DIR).rglob("*.html"),
        *Path(WEB_DIR).rglob("*.js"),
        *Path(WEB_DIR).rglob("*.css"),
    ]
    assert len(files) >= 6
    for path in files:
        text = path.read_text()
        assert not re.search(r"(src|href)=[\"']?(https?:)?//", text), path
        assert not re.search(r"@import|url\(\s*[\"']?(https?:)?//", text), path
        assert not re.search(r"fetch\(\s*[\"'`]https?:", text), path
