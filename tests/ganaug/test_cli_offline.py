"""`ganaug train FILE --out DIR`: training with no server, through the command line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from typer.testing import CliRunner

from ganaug.cli import app as cli
from models.artifact import Manifest
from tests.factories import SHAPES, shapes_arrays, write_shapes_zip

TINY = {"steps": 4, "batch_size": 8, "z_dim": 8, "g_channels": 8, "d_channels": 8, "seed": 2}


def train(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["train", *args])
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture(scope="module")
def offline(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, str]:
    """A wacgan-gp model (it has a class head) trained offline from an .npz, with its report."""
    root = tmp_path_factory.mktemp("offline")
    x, y = shapes_arrays(per_class=8, size=16)
    np.savez(root / "shapes.npz", x=x, y=y, classes=np.asarray(SHAPES))
    config = json.dumps(TINY | {"report": "fast"})
    code, out, err = train(str(root / "shapes.npz"), "--out", str(root / "model"),
                           "--config", config, "--method", "wacgan-gp")  # fmt: skip
    assert code == 0, err
    return root / "model", out, err


def test_offline_training_writes_a_model_whose_generator_draws_its_classes(offline):
    model_dir, out, err = offline
    manifest = Manifest.load(model_dir)
    assert manifest.method == "wacgan-gp" and manifest.steps_completed == 4
    assert manifest.classes == list(SHAPES)
    assert manifest.device is not None and manifest.device.type == "cpu"
    assert (model_dir / "classifier.onnx").stat().st_size > 0  # wacgan-gp has a class head
    assert manifest.evaluation is not None  # the report ran too, as a worker would run it
    assert (model_dir / "report.json").exists()

    cpu = ["CPUExecutionProvider"]
    generator = ort.InferenceSession(model_dir / "generator.onnx", providers=cpu)
    props = generator.get_modelmeta().custom_metadata_map
    assert json.loads(props["class_names"]) == list(SHAPES)
    latent = np.random.default_rng(0).standard_normal((5, 8)).astype(np.float32)
    (images,) = generator.run(None, {"latent": latent, "class": np.arange(5) % 3})
    assert images.shape == (5, 1, 16, 16) and np.isfinite(images).all()

    assert f"wrote {model_dir}: wacgan-gp, 4 steps" in out and "on cpu" in out
    assert "training" in err and "100%" in err  # the progress bar, on stderr
    assert "report" in err


def test_offline_training_of_a_zip_without_a_class_head(tmp_path):
    data = write_shapes_zip(tmp_path / "shapes.zip", per_class=6)
    code, out, err = train(str(data), "--out", str(tmp_path / "model"), "--steps", "3",
                           "--config", json.dumps(TINY | {"report": "none"}), "-q")  # fmt: skip
    assert code == 0, err
    manifest = Manifest.load(tmp_path / "model")
    assert manifest.method == "cgan" and manifest.steps_completed == 3  # --steps wins
    assert not (tmp_path / "model" / "classifier.onnx").exists()  # cgan has no class head
    assert manifest.evaluation is None and err == ""  # no report asked for; no bars with -q


def test_offline_training_says_what_to_fix(offline, tmp_path):
    model_dir, _, _ = offline
    npz = model_dir.parent / "shapes.npz"
    code, _, err = train(str(npz), "--out", str(model_dir), "--steps", "2")
    assert code == 1 and "already holds a model" in err

    code, _, err = train(str(npz), "--out", str(tmp_path / "m"), "--config", '{"stepz": 2}')
    assert code == 1 and "invalid training options" in err and "stepz" in err
    assert not (tmp_path / "m").exists()

    code, _, err = train(str(npz), "--out", str(tmp_path / "m"), "--device", "abacus")
    assert code == 1 and "unknown device 'abacus'" in err

    notes = tmp_path / "notes.txt"
    notes.write_text("not a dataset")
    code, _, err = train(str(notes), "--out", str(tmp_path / "m"))
    assert code == 1 and "unsupported_format" in err

    code, _, err = train(str(npz))  # a file, but no --out: it is not a dataset id
    assert code == 2 and "add --out DIR" in err


def test_the_same_command_resumes_an_interrupted_offline_training(tmp_path, monkeypatch):
    """A run cut short (a crash, Ctrl-C) leaves its last checkpoint in DIR; the same command
    again ingests the same file the same way and continues from it, seed and all."""
    from training.loop import Trainer

    data = write_shapes_zip(tmp_path / "shapes.zip", per_class=6)
    unseeded = {k: v for k, v in TINY.items() if k != "seed"}
    config = json.dumps(unseeded | {"steps": 6, "checkpoint_every": 3, "report": "none"})
    command = [str(data), "--out", str(tmp_path / "model"), "--config", config, "-q"]
    real_step, steps_run = Trainer.step, []

    def step(self: Trainer):
        steps_run.append(self.steps_done + 1)
        if steps_run == [1, 2, 3, 4]:
            raise KeyboardInterrupt  # after the checkpoint at step 3
        return real_step(self)

    monkeypatch.setattr(Trainer, "step", step)
    code, _, _ = train(*command)
    assert code != 0 and not (tmp_path / "model" / "manifest.json").exists()
    steps_run.clear()
    code, out, err = train(*command)
    assert code == 0, err
    assert steps_run == [4, 5, 6]  # continued, not started over
    manifest = Manifest.load(tmp_path / "model")
    assert manifest.steps_completed == 6 and "wrote" in out
