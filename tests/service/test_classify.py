"""POST /v1/models/{id}/classify in-process: probabilities per image from a PNG, a zip or an
npz, under the critic's class head or the report's evaluator, and every bad input refused.

Models are put in place as the worker would leave them: the session's tiny trained model
(tests/tiny_model.py: wacgan-gp, so it has classifier.onnx, with a fast report), the same
model as if trained before classifier.onnx existed, the same model without its report's
evaluator, a cgan model without a report, and one still queued.
"""

from __future__ import annotations

import io
import json
import shutil
import zipfile
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from core.settings import Settings
from models.artifact import CLASSIFIER_FILE, Manifest
from models.evaluator import EVALUATOR_FILE
from models.image_classifier import ImageClassifier
from service.app import create_app
from tests.factories import SHAPES
from tests.service.served import install_trained_model
from tests.service.test_bad_input import assert_error

MAX_IMAGES = 8


def png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def npz(**arrays: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def put_model(client: TestClient, settings: Settings, dataset_id: str, source: Path | None):
    """A model row on the dataset; with `source`, its files copied in and training succeeded."""
    response = client.post("/v1/models", json={"dataset_id": dataset_id, "steps": 5})
    assert response.status_code == 202, response.text
    model_id = response.json()["id"]
    if source is not None:
        install_trained_model(settings, model_id, source)
    return model_id


@pytest.fixture(scope="module")
def served(tiny_model: SimpleNamespace, tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    import training

    root = tmp_path_factory.mktemp("classify")
    settings = Settings(data_dir=root / "data", max_classify_images=MAX_IMAGES)
    old = root / "old"  # as trained before classifier.onnx: the report's evaluator only
    shutil.copytree(tiny_model.model_dir, old)
    (old / CLASSIFIER_FILE).unlink()
    Manifest.load(old).model_copy(update={"classifier": None}).save(old)
    critic_only = root / "critic_only"  # its class head, no report evaluator
    shutil.copytree(tiny_model.model_dir, critic_only)
    (critic_only / EVALUATOR_FILE).unlink()
    config = {"method": "cgan", "steps": 2, "batch_size": 8, "g_channels": 8, "d_channels": 8}
    cgan = root / "cgan"
    training.run(
        training.TrainConfig(**config, report="none"),
        dataset_dir=tiny_model.dataset,
        out_dir=cgan,
        model_id="cgan",
        device="cpu",
    )
    with TestClient(create_app(settings), base_url="http://localhost") as client:
        upload = client.post(
            "/v1/datasets",
            files={"file": ("shapes.npz", npz(x=tiny_model.x, y=tiny_model.y))},
            data={"train": "true", "config": json.dumps({"steps": 5, "report": "fast"})},
        )
        assert upload.status_code == 201, upload.text
        dataset_id, model_id = upload.json()["id"], upload.json()["model"]["id"]
        install_trained_model(settings, model_id, tiny_model.model_dir, report=True)
        yield SimpleNamespace(
            client=client,
            model_dir=settings.models_dir / model_id,
            model_id=model_id,
            old_id=put_model(client, settings, dataset_id, old),
            critic_only_id=put_model(client, settings, dataset_id, critic_only),
            cgan_id=put_model(client, settings, dataset_id, cgan),
            queued_id=put_model(client, settings, dataset_id, None),
            x=tiny_model.x,
        )


def classify(served, payload: bytes, filename: str, model_id: str | None = None, **data):
    return served.client.post(
        f"/v1/models/{model_id or served.model_id}/classify",
        files={"file": (filename, payload)},
        data=data,
    )


def classified(served, payload: bytes, filename: str, **kwargs) -> dict:
    response = classify(served, payload, filename, **kwargs)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["count"] == len(body["data"])
    for row in body["data"]:
        assert set(row["probs"]) == set(SHAPES)
        assert sum(row["probs"].values()) == pytest.approx(1, abs=1e-5)
        assert row["top"] == max(row["probs"], key=row["probs"].get)
        assert row["confidence"] == row["probs"][row["top"]]
    return body


def head_probs(model_dir: Path, file: str, images: np.ndarray) -> np.ndarray:
    return ImageClassifier(model_dir / file).probs(images[..., None])  # gray (N, 16, 16, 1)


def as_matrix(body: dict) -> np.ndarray:
    return np.array([[row["probs"][name] for name in SHAPES] for row in body["data"]])


def test_a_png_gets_the_critic_heads_probabilities(served):
    body = classified(served, png(served.x[0]), "circle.png", head="critic")
    assert body["head"] == "critic" and body["model_id"] == served.model_id
    assert body["image"] == {"height": 16, "width": 16, "channels": 1}
    assert [row["name"] for row in body["data"]] == ["circle.png"]
    expected = head_probs(served.model_dir, CLASSIFIER_FILE, served.x[:1])
    np.testing.assert_allclose(as_matrix(body), expected, atol=1e-6)


def test_a_zip_is_classified_image_by_image(served):
    rows = [0, 40, 80]  # a circle, a square, a triangle
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for row in rows:
            archive.writestr(f"batch/{row:03d}.png", png(served.x[row]))
        archive.writestr("__MACOSX/._000.png", b"junk is skipped")
    body = classified(served, buffer.getvalue(), "three.zip", head="critic")
    assert [row["name"] for row in body["data"]] == [f"batch/{row:03d}.png" for row in rows]
    expected = head_probs(served.model_dir, CLASSIFIER_FILE, served.x[rows])
    np.testing.assert_allclose(as_matrix(body), expected, atol=1e-6)


def test_an_npz_under_the_evaluator(served):
    x = served.x[::15]  # 6 images, 2 per class
    body = classified(served, npz(x=x), "six.npz", head="evaluator")
    assert body["head"] == "evaluator" and body["count"] == 6
    assert [row["name"] for row in body["data"]] == [f"x[{i}]" for i in range(6)]
    expected = head_probs(served.model_dir, EVALUATOR_FILE, x)
    np.testing.assert_allclose(as_matrix(body), expected, atol=1e-6)


def test_by_default_the_report_evaluator_answers_else_the_critic_head(served):
    x = served.x[::15]
    body = classified(served, npz(x=x), "six.npz")
    assert body["head"] == "evaluator"
    np.testing.assert_allclose(
        as_matrix(body), head_probs(served.model_dir, EVALUATOR_FILE, x), atol=1e-6
    )
    body = classified(served, npz(x=x), "six.npz", model_id=served.critic_only_id)
    assert body["head"] == "critic"
    np.testing.assert_allclose(
        as_matrix(body), head_probs(served.model_dir, CLASSIFIER_FILE, x), atol=1e-6
    )


def test_images_are_converted_and_resized_like_training(served):
    big_rgb = np.repeat(np.kron(served.x[40], np.ones((2, 2), np.uint8))[..., None], 3, axis=2)
    body = classified(served, png(big_rgb), "square-32px-rgb.png")
    small = classified(served, png(served.x[40]), "square.png")
    assert body["data"][0]["top"] == small["data"][0]["top"]
    np.testing.assert_allclose(as_matrix(body), as_matrix(small), atol=0.1)


def test_a_model_without_the_critic_head_falls_back_to_its_evaluator(served):
    body = classified(served, png(served.x[0]), "a.png", model_id=served.old_id)
    assert body["head"] == "evaluator"
    error = assert_error(
        classify(served, png(served.x[0]), "a.png", served.old_id, head="critic"),
        409,
        "no_classifier",
    )
    assert "head=evaluator" in error["message"]


@pytest.mark.parametrize(
    "payload, filename, status, code",
    [
        (b"just some text, not an image", "notes.txt", 415, "unsupported_format"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 64, "broken.png", 422, "corrupt_image"),
        (npz(x=np.zeros((2, 16, 16, 4), np.uint8)), "rgba.npz", 422, "npz_invalid"),
        (npz(y=np.zeros(2, np.int64)), "labels-only.npz", 422, "npz_invalid"),
        (npz(x=np.zeros((MAX_IMAGES + 1, 16, 16), np.uint8)), "many.npz", 413, "too_many_images"),
    ],
)
def test_bad_uploads_are_refused(served, payload, filename, status, code):
    assert_error(classify(served, payload, filename), status, code)


def test_a_zip_with_a_file_that_is_not_an_image_is_refused(served):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("a.png", png(served.x[0]))
        archive.writestr("notes.txt", b"hello")
    error = assert_error(classify(served, buffer.getvalue(), "mixed.zip"), 422, "corrupt_image")
    assert "notes.txt" in error["message"]


def test_wrong_channels_say_what_to_send(served):
    error = assert_error(
        classify(served, npz(x=np.zeros((2, 16, 16, 2), np.uint8)), "two.npz"), 422, "npz_invalid"
    )
    assert "C is 1 (gray) or 3 (RGB)" in error["message"]


def test_unknown_model_unknown_head_and_unfinished_model(served):
    image = png(served.x[0])
    assert_error(classify(served, image, "a.png", "no-such-model"), 404, "model_not_found")
    assert_error(classify(served, image, "a.png", head="discriminator"), 422, "validation_error")
    error = assert_error(classify(served, image, "a.png", served.queued_id), 409, "model_not_ready")
    assert "queued" in error["message"]


def test_a_model_with_no_class_head_and_no_report(served):
    image = png(served.x[0])
    messages = [
        assert_error(
            classify(served, image, "a.png", served.cgan_id, **head), 409, "no_classifier"
        )["message"]
        for head in ({}, {"head": "critic"}, {"head": "evaluator"})
    ]
    assert all(f"POST /v1/models/{served.cgan_id}/report" in message for message in messages)
    assert "cgan critic has no class head" in messages[0]
