"""Sampling from a trained model in-process: the headers that say how images were drawn,
the evaluator loaded only for filters, and one seeding rule across samples and archive.

The model is the session's tiny trained model (tests/tiny_model.py), put in place as the
worker would leave it: its files under models/<id>, its rows succeeded with a report.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from core.settings import Settings
from models.artifact import ARCHIVE_LABELS_FILE, SOFT_LABELS_FILE
from models.evaluator import EVALUATOR_FILE
from models.image_classifier import ImageClassifier
from models.manifold import ClassManifold
from service.app import create_app
from tests.api_flows import check_one_seeding_rule, decode_png
from tests.factories import SHAPES
from tests.service.served import upload_trained_model
from training.classifier import SmallCNN, export_evaluator_onnx


@pytest.fixture(scope="module")
def served(tiny_model: SimpleNamespace, tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    settings = Settings(data_dir=tmp_path_factory.mktemp("sampling") / "data")
    with TestClient(create_app(settings), base_url="http://localhost") as client:
        config = {"steps": 5, "report": "fast"}
        model_id = upload_trained_model(client, settings, tiny_model, config, report=True)
        yield SimpleNamespace(
            client=client,
            settings=settings,
            model_id=model_id,
            t_star=tiny_model.report["t_star"],
        )


def samples(served: SimpleNamespace, **params):
    response = served.client.get(f"/v1/models/{served.model_id}/samples", params=params)
    assert response.status_code == 200, response.text
    return response


def npz(response) -> np.ndarray:
    return np.load(io.BytesIO(response.content))["x"]


@contextmanager
def replaced(path: Path, content: bytes) -> Iterator[None]:
    """The file holds `content` for the block, then its own bytes again."""
    original = path.read_bytes()
    path.write_bytes(content)
    try:
        yield
    finally:
        path.write_bytes(original)


def test_truncation_header_says_what_was_used(served):
    auto = samples(served, truncation="auto", seed=1, format="npz")
    assert served.t_star is not None, "the tiny model's report picks a truncation"
    assert float(auto.headers["x-truncation"]) == served.t_star
    assert auto.headers["x-seed"] == "1"
    explicit = samples(served, truncation=str(served.t_star), seed=1, format="npz")
    np.testing.assert_array_equal(npz(auto), npz(explicit))
    assert samples(served, seed=1).headers["x-truncation"] == "none"
    assert samples(served, truncation=0.5, seed=1).headers["x-truncation"] == "0.5"
    archive = served.client.get(
        f"/v1/models/{served.model_id}/archive",
        params={"per_class": 1, "truncation": "auto", "seed": 1},
    )
    assert archive.status_code == 200 and float(archive.headers["x-truncation"]) == served.t_star


def test_unfiltered_requests_never_load_the_evaluator(served):
    """A broken evaluator file breaks only the requests that filter."""
    path = served.settings.models_dir / served.model_id / EVALUATOR_FILE
    before = npz(samples(served, seed=4, format="npz", n=2))
    with replaced(path, b"not an onnx model"):
        np.testing.assert_array_equal(npz(samples(served, seed=4, format="npz", n=2)), before)
        archive = served.client.get(
            f"/v1/models/{served.model_id}/archive", params={"per_class": 2, "seed": 4}
        )
        assert archive.status_code == 200
        quiet = TestClient(
            served.client.app, base_url="http://localhost", raise_server_exceptions=False
        )
        filtered = quiet.get(
            f"/v1/models/{served.model_id}/samples",
            params={"seed": 4, "filter": "confident", "min_confidence": 0.5},
        )
        assert filtered.status_code == 500, "the broken file is really read by a filter"
        assert filtered.json()["error"]["code"] == "internal_error"


def test_one_seeding_rule_and_longer_draws_extend_shorter_ones(served):
    check_one_seeding_rule(served.client, served.model_id)
    for shape in SHAPES:
        three = npz(samples(served, **{"class": shape, "n": 3, "seed": 7, "format": "npz"}))
        ten = npz(samples(served, **{"class": shape, "n": 10, "seed": 7, "format": "npz"}))
        np.testing.assert_array_equal(ten[:3], three)


def exhausted(served, **params) -> dict:
    response = served.client.get(
        f"/v1/models/{served.model_id}/samples", params={"seed": 3, "n": 2, **params}
    )
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "filter_exhausted", error
    return error


def test_a_filter_nothing_can_pass_is_exhausted(served, tmp_path):
    """Built so by construction, not by how training went: an empty class manifold (every
    radius negative) and an untrained evaluator (confidence near 1/3 for every class)."""
    model_dir = served.settings.models_dir / served.model_id
    manifold = ClassManifold.load(model_dir)
    empty = ClassManifold(
        manifold.features, manifold.labels, np.full_like(manifold.radii, -1.0), manifold.k
    )
    empty.save(tmp_path)
    with replaced(ClassManifold.path(model_dir), ClassManifold.path(tmp_path).read_bytes()):
        error = exhausted(served, filter="manifold")
        assert "only 0 of 40" in error["message"] and "manifold" in error["message"]
    with torch.random.fork_rng():
        torch.manual_seed(0)
        export_evaluator_onnx(SmallCNN(3, 1, 16), tmp_path / EVALUATOR_FILE)
    with replaced(model_dir / EVALUATOR_FILE, (tmp_path / EVALUATOR_FILE).read_bytes()):
        error = exhausted(served, filter="confident", min_confidence=0.9)
        assert "lower min_confidence" in error["message"]


def test_resample_below_the_minimum_is_refused_at_once(served):
    response = served.client.get(
        f"/v1/models/{served.model_id}/samples",
        params={"truncation": 1e-9, "truncation_mode": "resample", "seed": 1},
    )
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "invalid_truncation" and "clamp" in error["message"]


def archive_labels(served, **params) -> tuple[dict, list[dict], dict[str, np.ndarray]]:
    """The archive's manifest, its labels.csv rows and its images by file name."""
    response = served.client.get(f"/v1/models/{served.model_id}/archive", params=params)
    assert response.status_code == 200, response.text
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        manifest = json.loads(archive.read("manifest.json"))
        rows = list(csv.DictReader(io.StringIO(archive.read(ARCHIVE_LABELS_FILE).decode())))
        images = {
            name: decode_png(archive.read(name))
            for name in archive.namelist()
            if name.endswith(".png")
        }
    return manifest, rows, images


def probabilities(rows: list[dict]) -> np.ndarray:
    return np.array([[float(row[f"p_{shape}"]) for shape in SHAPES] for row in rows])


def test_archive_labels_csv_has_a_row_per_image_soft_for_synthetic_ones(served):
    manifest, rows, images = archive_labels(served, per_class=5, seed=2)
    assert [row["file"] for row in rows] == list(images), "one row per image, in zip order"
    assert list(rows[0]) == ["file", "class", "kind", *(f"p_{shape}" for shape in SHAPES)]
    assert manifest["soft_labels"] is True and manifest["labels_file"] == ARCHIVE_LABELS_FILE
    p = probabilities(rows)
    assert ((p >= 0) & (p <= 1)).all()
    np.testing.assert_allclose(p.sum(axis=1), 1, atol=1e-5)
    for row in rows:
        assert row["file"].startswith(f"{row['class']}/{row['kind']}_")
    real = [i for i, row in enumerate(rows) if row["kind"] == "real"]
    classes = [SHAPES.index(rows[i]["class"]) for i in real]
    np.testing.assert_array_equal(p[real], np.eye(len(SHAPES))[classes])
    synthetic = [i for i, row in enumerate(rows) if row["kind"] == "synthetic"]
    assert len(synthetic) == 5 * len(SHAPES)
    labeller = ImageClassifier(served.settings.models_dir / served.model_id / SOFT_LABELS_FILE)
    drawn = np.stack([images[rows[i]["file"]] for i in synthetic])[..., None]
    np.testing.assert_allclose(p[synthetic], labeller.probs(drawn), atol=1e-6)
    npz_p = np.load(io.BytesIO(samples(served, n=5, seed=2, format="npz").content))["p"]
    np.testing.assert_allclose(p[synthetic], npz_p, atol=1e-6)  # same images, same p


def test_samples_npz_carries_the_soft_labels_of_its_images(served):
    arrays = np.load(io.BytesIO(samples(served, n=4, seed=6, format="npz").content))
    labeller = ImageClassifier(served.settings.models_dir / served.model_id / SOFT_LABELS_FILE)
    assert arrays["p"].shape == (4 * len(SHAPES), len(SHAPES)) and arrays["p"].dtype == np.float32
    np.testing.assert_allclose(arrays["p"], labeller.probs(arrays["x"]), atol=1e-6)
    assert np.mean(arrays["p"].argmax(axis=1) == arrays["y"]) >= 0.5


def test_models_without_soft_labels_give_one_hot_rows(served, tmp_path):
    """A report made before soft_labels.onnx existed: hard labels, and the manifest says so."""
    path = served.settings.models_dir / served.model_id / SOFT_LABELS_FILE
    shutil.move(path, tmp_path / SOFT_LABELS_FILE)
    try:
        manifest, rows, _ = archive_labels(served, per_class=3, seed=2, include_real="false")
        arrays = np.load(io.BytesIO(samples(served, n=3, seed=2, format="npz").content))
    finally:
        shutil.move(tmp_path / SOFT_LABELS_FILE, path)
    assert manifest["soft_labels"] is False
    assert {row["kind"] for row in rows} == {"synthetic"} and len(rows) == 3 * len(SHAPES)
    classes = [SHAPES.index(row["class"]) for row in rows]
    np.testing.assert_array_equal(probabilities(rows), np.eye(len(SHAPES))[classes])
    np.testing.assert_array_equal(arrays["p"], np.eye(len(SHAPES))[arrays["y"]])
