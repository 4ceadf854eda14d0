"""ganaug.client and the `ganaug datasets|models` commands against a real served gateway
(uvicorn on a free port, SQLite and files in a private data directory). No worker runs:
a model's training is ended as the worker records it, with the tiny model's files."""

from __future__ import annotations

import csv
import io
import json
import zipfile
from collections.abc import Iterator
from types import SimpleNamespace

import numpy as np
import onnxruntime as ort
import pytest
from PIL import Image
from typer.testing import CliRunner

from core.settings import Settings
from ganaug.cli import app as cli
from ganaug.client import ApiError, Client, JobFailed
from models.images import encode_png
from service.app import create_app
from tests.factories import SHAPES
from tests.servers import LiveServer, free_port
from tests.service.served import end_training, install_trained_model


@pytest.fixture(scope="module")
def live(
    tiny_model: SimpleNamespace, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SimpleNamespace]:
    root = tmp_path_factory.mktemp("client")
    settings = Settings(data_dir=root / "data")
    npz = root / "shapes.npz"
    np.savez(npz, x=tiny_model.x, y=tiny_model.y, classes=np.asarray(SHAPES))
    with LiveServer(create_app(settings)) as server:
        yield SimpleNamespace(url=server.base_url, settings=settings, npz=npz, tiny=tiny_model)


def run(live: SimpleNamespace, *args: str) -> SimpleNamespace:
    """`ganaug ARGS --url URL`, in this process; exit code, stdout and stderr."""
    result = CliRunner().invoke(cli, [*args, "--url", live.url])
    return SimpleNamespace(code=result.exit_code, out=result.stdout, err=result.stderr)


def trained(live: SimpleNamespace, report: bool = True) -> tuple[str, str]:
    """Upload through the CLI with --train; the training ends as the worker records it."""
    upload = run(live, "datasets", "upload", str(live.npz), "--name", "shapes", "--train",
                 "--steps", "5")  # fmt: skip
    assert upload.code == 0, upload.err
    dataset = json.loads(upload.out)
    assert dataset["num_images"] == len(live.tiny.y)
    assert [c["name"] for c in dataset["classes"]] == list(SHAPES)
    assert dataset["model"]["status"] == "queued"
    assert dataset["model"]["config"]["steps"] == 5
    model_id = dataset["model"]["id"]
    install_trained_model(live.settings, model_id, live.tiny.model_dir, report=report)
    return dataset["id"], model_id


def test_cli_covers_a_models_life(live, tmp_path):
    dataset_id, model_id = trained(live)

    listed = run(live, "datasets", "list")
    assert listed.code == 0 and dataset_id in listed.out and "shapes" in listed.out
    models = run(live, "models", "list", "--dataset", dataset_id)
    assert models.code == 0 and model_id in models.out and "succeeded" in models.out
    waited = run(live, "models", "wait", model_id, "--quiet")
    assert waited.code == 0, waited.err
    assert f"{model_id} succeeded, report succeeded" in waited.out

    grid = tmp_path / "grid.png"
    samples = run(live, "models", "samples", model_id, "--class", "square", "--n", "4",
                  "--seed", "7", "-o", str(grid))  # fmt: skip
    assert samples.code == 0, samples.err
    assert "seed 7, truncation none" in samples.out
    assert Image.open(grid).size[0] >= 4 * 16  # four 16 px tiles side by side

    archive = tmp_path / "augmented.zip"
    got = run(live, "models", "archive", model_id, "--per-class", "2", "--seed", "3",
              "-o", str(archive))  # fmt: skip
    assert got.code == 0, got.err
    with zipfile.ZipFile(archive) as z:
        rows = list(csv.DictReader(io.TextIOWrapper(z.open("labels.csv"))))
    synthetic = [r for r in rows if r["kind"] == "synthetic"]
    assert sorted(r["class"] for r in synthetic) == sorted(list(SHAPES) * 2)
    assert "archive" in got.err  # the progress bar, on stderr

    onnx_path = tmp_path / "generator.onnx"
    assert run(live, "models", "onnx", model_id, "-o", str(onnx_path), "-q").code == 0
    session = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["latent", "class"]

    image = tmp_path / "one.png"
    image.write_bytes(encode_png(live.tiny.x[0][..., None]))
    classified = run(live, "models", "classify", model_id, str(image))
    assert classified.code == 0, classified.err
    name, top, confidence = classified.out.strip().split("\t")
    assert name == "one.png" and top in SHAPES and 0 < float(confidence) <= 1

    pictures = tmp_path / "pictures"
    report = run(live, "models", "report", model_id, "--pictures", str(pictures))
    assert report.code == 0, report.err
    assert "recipe" in json.loads(report.out)
    assert {p.stem for p in pictures.glob("*.png")} == set(json.loads(report.out)["picture_urls"])

    assert run(live, "models", "delete", model_id).code == 0
    gone = run(live, "models", "show", model_id)
    assert gone.code == 1
    assert f"error: 404 model_not_found: No model with id '{model_id}'." in gone.err
    assert run(live, "datasets", "delete", dataset_id).code == 0
    assert run(live, "datasets", "show", dataset_id).code == 1


def test_top_level_commands_are_the_groups_commands(live, tmp_path):
    """`ganaug upload | train | watch | samples | archive | report | classify`, as a user
    types them after the README."""
    upload = run(live, "upload", str(live.npz), "--name", "top", "--id")
    assert upload.code == 0, upload.err
    dataset_id = upload.out.strip()
    assert json.loads(run(live, "datasets", "show", dataset_id).out)["name"] == "top"
    queued = run(live, "train", dataset_id, "--steps", "5", "--method", "wacgan-gp")
    assert queued.code == 0, queued.err
    model_id = queued.out.strip()
    model = json.loads(run(live, "models", "show", model_id).out)
    assert model["dataset_id"] == dataset_id and model["config"]["steps"] == 5
    assert model["method"] == "wacgan-gp" and model["device"] is None  # not started yet
    install_trained_model(live.settings, model_id, live.tiny.model_dir, report=True)

    watched = run(live, "watch", model_id, "--quiet")
    assert watched.code == 0 and f"{model_id} succeeded, report succeeded" in watched.out
    grid = tmp_path / "grid.png"
    samples = run(live, "samples", model_id, "--class", "circle", "--n", "3", "-o", str(grid))
    assert samples.code == 0 and Image.open(grid).size[0] >= 3 * 16
    archive = tmp_path / "a.zip"
    got = run(live, "archive", model_id, "--per-class", "1", "-o", str(archive), "-q")
    assert got.code == 0, got.err
    with zipfile.ZipFile(archive) as z:
        kinds = [r["kind"] for r in csv.DictReader(io.TextIOWrapper(z.open("labels.csv")))]
    assert kinds.count("synthetic") == len(SHAPES)
    report = run(live, "report", model_id)
    assert report.code == 0 and "recipe" in json.loads(report.out)
    image = tmp_path / "one.png"
    image.write_bytes(encode_png(live.tiny.x[0][..., None]))
    classified = run(live, "classify", model_id, str(image))
    assert classified.code == 0 and classified.out.startswith("one.png\t")

    listed = CliRunner().invoke(cli, ["--help"]).stdout
    for command in ("upload", "train", "watch", "samples", "archive", "report", "classify"):
        assert command in listed
    refused = run(live, "train", str(live.npz))  # a file, not a dataset id, and no --out
    assert refused.code == 2 and "add --out DIR" in refused.err


def test_cli_prints_the_services_refusals_and_exits_non_zero(live, tmp_path):
    _, model_id = trained(live, report=False)
    cancel = run(live, "models", "cancel", model_id)
    assert cancel.code == 1
    assert "409 model_finished" in cancel.err
    report = run(live, "models", "report", model_id)
    assert report.code == 1 and "409 report_not_ready" in report.err
    unknown = run(live, "models", "samples", model_id, "--class", "hexagon", "-o",
                  str(tmp_path / "x.png"))  # fmt: skip
    assert unknown.code == 1 and "422 unknown_class" in unknown.err and "hexagon" in unknown.err
    assert not (tmp_path / "x.png").exists()
    bad = tmp_path / "notes.txt"
    bad.write_text("not a dataset")
    refused = run(live, "datasets", "upload", str(bad))
    assert refused.code == 1 and "415 unsupported_format" in refused.err


def test_cli_says_when_the_service_cannot_be_reached():
    result = CliRunner().invoke(cli, ["models", "list", "--url", f"http://127.0.0.1:{free_port()}"])
    assert result.exit_code == 1
    assert "cannot reach the service" in result.stderr


def test_client_wait_raises_when_training_failed_and_reads_keys_from_the_environment(
    live, monkeypatch
):
    upload = Client(live.url, progress=False).upload_dataset(
        live.npz, train=True, config={"steps": 5}
    )
    model_id = upload["model"]["id"]
    end_training(live.settings, model_id, "failed")
    with Client(live.url, progress=False) as api, pytest.raises(JobFailed) as failed:
        api.wait(model_id, poll_s=0.1, timeout_s=10)
    assert failed.value.model["status"] == "failed"
    monkeypatch.setenv("GANAUG_URL", live.url)
    monkeypatch.setenv("GANAUG_API_KEY", "gak_not-a-key")
    with Client(progress=False) as api:
        assert api.url == live.url
        with pytest.raises(ApiError) as refused:  # a key is checked even on loopback
            api.get_model(model_id)
    assert refused.value.status == 401 and refused.value.code == "invalid_api_key"
