"""What a user of the API does and checks, shared by the end-to-end tests."""

from __future__ import annotations

import io
import json
import time
import zipfile

import httpx
import numpy as np
import onnxruntime as ort
from PIL import Image

from tests.factories import SHAPES, shapes_zip_bytes
from tests.tiny_model import PER_CLASS, SIZE


def upload_and_train(client: httpx.Client, config: dict) -> dict:
    """POST a shapes dataset with train=true; check the 201 body; return it."""
    files = {
        "file": ("shapes.zip", shapes_zip_bytes(per_class=PER_CLASS, size=SIZE), "application/zip")
    }
    data = {"name": "shapes", "train": "true", "config": json.dumps(config)}
    response = client.post("/v1/datasets", files=files, data=data)
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["num_images"] == PER_CLASS * len(SHAPES)
    assert [c["name"] for c in body["classes"]] == sorted(SHAPES)
    assert all(c["count"] == PER_CLASS for c in body["classes"])
    assert body["image"] == {"height": SIZE, "width": SIZE, "channels": 1}
    assert body["model"]["status"] in ("queued", "running")
    # the dataset's names and counts; named classes have no P(C) (only vcagan's do)
    model_classes = body["model"]["classes"]
    assert [{k: c[k] for k in ("index", "name", "count")} for c in model_classes] == body["classes"]
    assert all(c["probability"] is None for c in model_classes)
    assert body["model"]["config"]["steps"] == config["steps"]
    return body


def wait_for_model(client: httpx.Client, model_id: str, statuses: set[str], timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        model = client.get(f"/v1/models/{model_id}").json()
        if model["status"] in statuses:
            return model
        if model["status"] in {"failed", "cancelled", "succeeded"} or time.monotonic() > deadline:
            raise AssertionError(f"model ended as {model['status']}, wanted {statuses}: {model}")
        time.sleep(0.5)


def decode_png(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)))


def check_samples(client: httpx.Client, model_id: str) -> None:
    """Every format decodes to the right count and shape; seeds and truncation behave."""
    url = f"/v1/models/{model_id}/samples"
    one = client.get(url, params={"class": "circle", "n": 1, "format": "png", "seed": 1})
    assert one.status_code == 200 and one.headers["content-type"] == "image/png"
    assert decode_png(one.content).shape == (SIZE, SIZE)

    grid = client.get(url, params={"class": 1, "n": 8, "seed": 3})
    assert grid.status_code == 200 and decode_png(grid.content).shape[0] > SIZE
    assert grid.headers["x-seed"] == "3"

    zipped = client.get(url, params={"class": "square", "n": 5, "format": "zip", "seed": 3})
    with zipfile.ZipFile(io.BytesIO(zipped.content)) as archive:
        names = archive.namelist()
        assert len(names) == 5 and all(n.startswith("square/") for n in names)
        assert all(decode_png(archive.read(n)).shape == (SIZE, SIZE) for n in names)

    params = {"class": "triangle", "n": 6, "format": "npz", "seed": 7}
    first = client.get(url, params=params).content
    arrays = np.load(io.BytesIO(first))
    assert arrays["x"].shape == (6, SIZE, SIZE, 1) and arrays["x"].dtype == np.uint8
    assert arrays["y"].tolist() == [SHAPES.index("triangle")] * 6
    assert client.get(url, params=params).content == first, "same seed must give the same bytes"
    assert client.get(url, params={**params, "seed": 8}).content != first
    truncated = client.get(url, params={**params, "truncation": 0.3}).content
    assert truncated != first, "truncation must change the output"
    resample = {**params, "truncation": 0.3, "truncation_mode": "resample"}
    resampled = client.get(url, params=resample).content
    assert resampled not in (first, truncated), "resampling differs from clamping"
    assert client.get(url, params=resample).content == resampled

    every = np.load(io.BytesIO(client.get(url, params={"n": 2, "format": "npz"}).content))
    assert every["y"].tolist() == [0, 0, 1, 1, 2, 2]


def check_archive(client: httpx.Client, model_id: str, per_class: int = 7) -> None:
    """ImageFolder layout with the real and synthetic counts the manifest states."""
    response = client.get(
        f"/v1/models/{model_id}/archive",
        params={"per_class": per_class, "seed": 5, "truncation": 1.0},
    )
    assert response.status_code == 200, response.text
    assert "content-length" not in response.headers, "the archive is streamed, not buffered"
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        names = archive.namelist()
        manifest = json.loads(archive.read("manifest.json"))
        for shape in SHAPES:
            real = [n for n in names if n.startswith(f"{shape}/real_")]
            synthetic = [n for n in names if n.startswith(f"{shape}/synthetic_")]
            assert len(real) == PER_CLASS and len(synthetic) == per_class
            assert decode_png(archive.read(synthetic[0])).shape == (SIZE, SIZE)
            assert manifest["counts"][shape] == {"real": PER_CLASS, "synthetic": per_class}
    assert manifest["model_id"] == model_id and manifest["truncation"] == 1.0
    assert len(names) == len(SHAPES) * (PER_CLASS + per_class) + 2  # manifest, labels.csv


def check_onnx(client: httpx.Client, model_id: str) -> None:
    """The downloaded generator runs in ONNX Runtime with a dynamic batch."""
    response = client.get(f"/v1/models/{model_id}/generator.onnx")
    assert response.status_code == 200
    session = ort.InferenceSession(response.content, providers=["CPUExecutionProvider"])
    z_dim = session.get_inputs()[0].shape[1]
    feeds = {"latent": np.zeros((3, z_dim), np.float32), "class": np.array([0, 1, 2], np.int64)}
    (images,) = session.run(None, feeds)
    assert images.shape == (3, 1, SIZE, SIZE)
    assert -1.0 <= images.min() and images.max() <= 1.0


def wait_for_report(client: httpx.Client, model_id: str, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        model = client.get(f"/v1/models/{model_id}").json()
        status = model["report"]["status"]
        if status == "succeeded":
            return model
        assert status in ("queued", "running") and time.monotonic() < deadline, model["report"]
        time.sleep(0.5)


def check_report(client: httpx.Client, model_id: str) -> dict:
    """The report's JSON and pictures are served; its recipe drives the archive."""
    report = client.get(f"/v1/models/{model_id}/report")
    assert report.status_code == 200, report.text
    body = report.json()
    assert {"samples", "truncation_sweep", "losses", "embedding"} <= set(body["picture_urls"])
    for url in body["picture_urls"].values():
        picture = client.get(url)
        assert picture.status_code == 200 and decode_png(picture.content).ndim in (2, 3)
    missing = client.get(f"/v1/models/{model_id}/report/nope.png")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "picture_not_found"
    return body


def npz_samples(client: httpx.Client, model_id: str, **params) -> dict[str, np.ndarray]:
    """GET samples as npz (200 expected): {"x": uint8 (N, H, W, C), "y": int64 (N,)}."""
    response = client.get(f"/v1/models/{model_id}/samples", params={**params, "format": "npz"})
    assert response.status_code == 200, (params, response.text)
    arrays = np.load(io.BytesIO(response.content))
    return {"x": arrays["x"], "y": arrays["y"]}


def check_auto_truncation(client: httpx.Client, model_id: str, t_star: float | None) -> None:
    """truncation=auto draws exactly what the explicit t* from the report draws."""
    params = {"class": "square", "n": 4, "seed": 2}
    said = client.get(f"/v1/models/{model_id}/samples", params={**params, "truncation": "auto"})
    assert said.headers["x-truncation"] == ("none" if t_star is None else repr(t_star))
    auto = npz_samples(client, model_id, **params, truncation="auto")["x"]
    untruncated = npz_samples(client, model_id, **params)["x"]
    if t_star is None:
        np.testing.assert_array_equal(auto, untruncated)
        return
    explicit = npz_samples(client, model_id, **params, truncation=str(t_star))["x"]
    np.testing.assert_array_equal(auto, explicit)
    assert not np.array_equal(auto, untruncated), "t* must change the images"


def check_filters(client: httpx.Client, model_id: str, scorer) -> None:
    """With the tiny trained model (tests/tiny_model.py): filter=confident and
    filter=manifold return only images that pass the evaluator, the same for a seed (a filter
    that rejects everything fails here; filters nothing can pass, built so by construction,
    are in tests/service/test_sampling.py)."""
    square = {"class": "square", "n": 4, "seed": 2}
    threshold = 0.8  # about half of this model's squares reach it
    unfiltered = npz_samples(client, model_id, **{**square, "n": 16})
    assert (scorer.confidence(unfiltered["x"], unfiltered["y"]) < threshold).any(), (
        "the test needs squares below the threshold for the filter to reject"
    )
    confident = {**square, "filter": "confident", "min_confidence": threshold}
    kept = npz_samples(client, model_id, **confident)
    assert len(kept["x"]) == 4 and kept["y"].tolist() == [1] * 4
    assert (scorer.confidence(kept["x"], kept["y"]) >= threshold - 1e-6).all()
    np.testing.assert_array_equal(npz_samples(client, model_id, **confident)["x"], kept["x"])

    inside = npz_samples(client, model_id, **square, filter="manifold")
    assert len(inside["x"]) == 4 and scorer.in_manifold(inside["x"], inside["y"]).all()
    np.testing.assert_array_equal(
        npz_samples(client, model_id, **square, filter="manifold")["x"], inside["x"]
    )


def check_recommended_archive(client: httpx.Client, model_id: str, manifest_recipe: dict) -> None:
    """recipe=recommended writes the recipe's per-class counts with its draw, completely."""
    response = client.get(
        f"/v1/models/{model_id}/archive", params={"recipe": "recommended", "seed": 1}
    )
    assert response.status_code == 200, response.text
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        manifest = json.loads(archive.read("manifest.json"))
        names = archive.namelist()
    assert manifest["recipe"] == manifest_recipe
    assert manifest["recipe"]["mixing_searched"] is True, "the report searched how to mix"
    assert manifest["recipe"]["basis"] == "search", "the fast report has no benchmark recipe"
    assert manifest["complete"] is True and manifest["error"] is None, manifest
    assert (manifest["truncation"], manifest["filter"]) == (
        manifest_recipe["truncation"],
        manifest_recipe["filter"],
    )
    expected = round(manifest_recipe["ratio"] * PER_CLASS)
    for shape in SHAPES:
        synthetic = [n for n in names if n.startswith(f"{shape}/synthetic_")]
        assert len(synthetic) == expected == manifest["counts"][shape]["synthetic"]
    conflict = client.get(
        f"/v1/models/{model_id}/archive", params={"recipe": "recommended", "per_class": 3}
    )
    assert conflict.status_code == 422
    assert conflict.json()["error"]["code"] == "recipe_conflict"


def check_one_seeding_rule(client: httpx.Client, model_id: str) -> None:
    """The images of class c for seed s are the same wherever they are asked for: from
    samples?class=c&seed=s, the class-c rows of samples?seed=s and the archive at seed s."""
    seed, n = 9, 3
    every = npz_samples(client, model_id, n=n, seed=seed)
    response = client.get(
        f"/v1/models/{model_id}/archive",
        params={"per_class": n, "seed": seed, "include_real": "false"},
    )
    assert response.status_code == 200, response.text
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        names = sorted(archive.namelist())
        archived = {
            shape: np.stack(
                [decode_png(archive.read(name)) for name in names if name.startswith(f"{shape}/")]
            )
            for shape in SHAPES
        }
    for index, shape in enumerate(SHAPES):
        alone = npz_samples(client, model_id, **{"class": shape, "n": n, "seed": seed})["x"]
        np.testing.assert_array_equal(
            every["x"][every["y"] == index], alone, f"{shape}: samples?seed vs samples?class&seed"
        )
        np.testing.assert_array_equal(
            archived[shape], alone[..., 0], f"{shape}: archive vs samples?class&seed"
        )


def check_sampling_errors(client: httpx.Client, model_id: str) -> None:
    """Out-of-range or unknown sampling parameters are 422 with a code that says which."""
    samples, archive = f"/v1/models/{model_id}/samples", f"/v1/models/{model_id}/archive"
    cases = [
        (samples, {"class": "hexagon"}, "unknown_class"),
        (samples, {"class": 7}, "unknown_class"),
        (samples, {"n": 0}, "validation_error"),
        (samples, {"n": 100_000}, "too_many_images_requested"),
        (samples, {"truncation": -1}, "invalid_truncation"),
        (samples, {"truncation": "abc"}, "invalid_truncation"),
        (samples, {"truncation": 1e9}, "invalid_truncation"),
        (samples, {"format": "gif"}, "validation_error"),
        (samples, {"n": 2, "format": "png", "class": 0}, "invalid_format"),
        (archive, {"per_class": -1}, "validation_error"),
        (archive, {"per_class": 10_000_000}, "too_many_images_requested"),
        (archive, {"truncation": 0}, "invalid_truncation"),
        (samples, {"truncation": 1e-9, "truncation_mode": "resample"}, "invalid_truncation"),
    ]
    for url, params, code in cases:
        response = client.get(url, params=params)
        assert response.status_code == 422, (params, response.text)
        assert response.json()["error"]["code"] == code, (params, response.json())
