import io
import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image
from pydantic import ValidationError

import training
from models.artifact import (
    CHECKPOINT_FILE,
    GENERATOR_FILE,
    MANIFEST_FILE,
    SAMPLES_FILE,
    STATS_FILE,
    Manifest,
)
from models.images import to_uint8_nhwc
from models.networks import Discriminator, Generator
from models.sampler import GeneratorSampler
from models.truncation import sample_latents
from tests.factories import store_dataset
from training import Progress, TrainConfig, TrainingAborted

CLASSES = ["bar", "cross", "square"]
STEPS = 12
TINY = dict(
    steps=STEPS, batch_size=8, z_dim=8, g_channels=8, d_channels=8, checkpoint_every=5, seed=3
)


def write_shapes_dataset(root: Path, size: int = 16, channels: int = 1, per_class: int = 8) -> Path:
    """Three classes of white shapes (bar, cross, square) at jittered positions."""
    rng = np.random.default_rng(0)
    x = np.zeros((len(CLASSES) * per_class, size, size), np.uint8)
    third = max(size // 3, 2)
    for i in range(len(x)):
        cy, cx = size // 2 + rng.integers(-1, 2, 2)
        cls = i // per_class
        if cls == 0:
            x[i, cy - 1 : cy + 1, 1:-1] = 255
        elif cls == 1:
            x[i, cy - 1 : cy + 1, 1:-1] = x[i, 1:-1, cx - 1 : cx + 1] = 255
        else:
            x[i, cy - third // 2 : cy + third // 2, cx - third // 2 : cx + third // 2] = 255
    y = np.repeat(np.arange(len(CLASSES)), per_class)
    return store_dataset(root, np.repeat(x[..., None], channels, axis=-1), y, CLASSES)


def train(
    root: Path, size: int = 16, channels: int = 1, abort_fn=None, interrupt_fn=None, **overrides
) -> SimpleNamespace:
    dataset = root / "dataset"
    if not dataset.exists():  # a second run in root resumes or starts over on the same data
        write_shapes_dataset(dataset, size, channels)
    reports: list[Progress] = []
    config = TrainConfig(**(TINY | overrides))
    result = training.run(
        config,
        dataset_dir=dataset,
        out_dir=root / "model",
        model_id="tiny-1",
        progress_fn=reports.append,
        abort_fn=abort_fn,
        interrupt_fn=interrupt_fn,
        device="cpu",
    )
    return SimpleNamespace(out=root / "model", result=result, reports=reports, config=config)


@pytest.fixture(scope="module", params=["cgan", "wacgan-gp", "acgan"])
def trained(request, tmp_path_factory):
    return train(tmp_path_factory.mktemp(request.param), method=request.param)


def test_writes_model_directory(trained):
    for name in (GENERATOR_FILE, MANIFEST_FILE, CHECKPOINT_FILE, SAMPLES_FILE, STATS_FILE):
        assert (trained.out / name).stat().st_size > 0, name
    manifest = Manifest.load(trained.out)
    assert manifest.model_id == "tiny-1" and manifest.method == trained.config.method
    assert manifest.classes == CLASSES and manifest.z_dim == 8
    assert (manifest.image.height, manifest.image.width, manifest.image.channels) == (16, 16, 1)
    assert manifest.steps_completed == STEPS == trained.result.steps_completed
    assert manifest.config == trained.config.model_dump()
    assert set(manifest.versions) == {"ganaug", "torch", "onnx", "python"}
    assert {"d_loss", "g_loss"} <= set(manifest.final_losses)
    has_class_head = trained.config.method != "cgan"
    assert ({"d_aux", "g_aux"} <= set(manifest.final_losses)) == has_class_head
    assert (manifest.classifier is not None) == has_class_head
    assert all(np.isfinite(v) for v in manifest.final_losses.values())
    assert manifest.final_losses == trained.result.final_losses
    assert [t.name for t in manifest.inputs] == ["latent", "class"]
    assert manifest.outputs[0].shape == ["B", 1, 16, 16]
    assert trained.result.device == "cpu" and trained.result.seed == 3
    assert manifest.device is not None
    assert (manifest.device.type, manifest.device.name) == ("cpu", None)


def test_progress_reports_increasing_steps(trained):
    steps = [p.step for p in trained.reports]
    assert steps == sorted(set(steps)) and steps[-1] == STEPS and len(steps) >= 2
    assert all(p.total_steps == STEPS for p in trained.reports)
    assert trained.reports[-1].eta_s == 0 and trained.reports[-1].elapsed_s > 0
    assert {"d_loss", "g_loss"} <= set(trained.reports[-1].losses)
    assert {(p.device, p.device_name) for p in trained.reports} == {("cpu", None)}


def test_stats_jsonl_has_a_line_per_report(trained):
    lines = [json.loads(line) for line in (trained.out / STATS_FILE).read_text().splitlines()]
    assert [line["step"] for line in lines] == [p.step for p in trained.reports]
    assert lines[-1]["losses"] == trained.result.final_losses


@pytest.mark.parametrize("n", [1, 7])
def test_sampler_matches_torch_generator(trained, n):
    labels = np.arange(n, dtype=np.int64) % len(CLASSES)
    latents = sample_latents(np.random.default_rng(n), n, 8)
    images = GeneratorSampler(trained.out).generate(labels, latents)
    assert images.dtype == np.uint8 and images.shape == (n, 16, 16, 1)

    checkpoint = torch.load(trained.out / CHECKPOINT_FILE)
    generator = Generator(**checkpoint["generator_kwargs"]).eval()
    generator.load_state_dict(checkpoint["generator_ema"])
    with torch.no_grad():
        expected = to_uint8_nhwc(
            generator(torch.from_numpy(latents), torch.from_numpy(labels)).numpy()
        )
    assert np.abs(images.astype(int) - expected).max() <= 1


def test_sampler_is_deterministic(trained):
    sampler = GeneratorSampler(trained.out)
    labels = np.array([0, 1, 2, 2, 1], np.int64)
    latents = sample_latents(np.random.default_rng(0), 5, 8, truncation=1.0)
    first = sampler.generate(labels, latents, batch_size=2)
    assert first.tobytes() == sampler.generate(labels, latents, batch_size=2).tobytes()
    assert (
        first.tobytes()
        == GeneratorSampler(trained.out).generate(labels, latents, batch_size=2).tobytes()
    )


def test_sampler_rejects_bad_inputs(trained):
    sampler = GeneratorSampler(trained.out)
    with pytest.raises(ValueError, match="labels must be in"):
        sampler.generate(np.array([3]), np.zeros((1, 8), np.float32))
    with pytest.raises(ValueError, match="latents"):
        sampler.generate(np.array([0]), np.zeros((1, 9), np.float32))


def test_samples_png_has_a_row_per_class(trained):
    grid = Image.open(io.BytesIO((trained.out / SAMPLES_FILE).read_bytes()))
    assert grid.mode == "L"
    assert grid.size == (8 * 18 + 2, len(CLASSES) * 18 + 2)  # 16 px cells, 2 px padding


def test_checkpoint_rebuilds_networks(trained):
    checkpoint = torch.load(trained.out / CHECKPOINT_FILE)  # weights_only: no pickled code
    assert checkpoint["step"] == STEPS and checkpoint["config"] == trained.config.model_dump()
    Generator(**checkpoint["generator_kwargs"]).load_state_dict(checkpoint["generator"])
    Discriminator(**checkpoint["critic_kwargs"]).load_state_dict(checkpoint["critic"])
    assert {"opt_g", "opt_d"} <= set(checkpoint)


def test_abort_stops_within_a_step(tmp_path):
    polls = []

    def abort() -> bool:
        polls.append(1)
        return len(polls) >= 3

    with pytest.raises(TrainingAborted):
        train(tmp_path, abort_fn=abort, steps=10_000)
    assert len(polls) == 3, "polled once per step and stopped at the first True"
    assert not (tmp_path / "model" / GENERATOR_FILE).exists()


@pytest.mark.parametrize("size, channels", [(8, 1), (27, 3), (16, 3)])
def test_odd_sizes_and_rgb(tmp_path, size, channels):
    run = train(tmp_path, size, channels, steps=3)
    images = GeneratorSampler(run.out).generate(
        np.array([0, 2], np.int64), np.zeros((2, 8), np.float32)
    )
    assert images.shape == (2, size, size, channels)
    assert Manifest.load(run.out).outputs[0].shape == ["B", channels, size, size]


def test_same_seed_same_generator_and_none_picks_one(tmp_path):
    labels = np.arange(3, dtype=np.int64)
    latents = sample_latents(np.random.default_rng(0), 3, 8)
    outputs = []
    for name in ("a", "b"):
        run = train(tmp_path / name, steps=3, seed=11)
        outputs.append(GeneratorSampler(run.out).generate(labels, latents))
    np.testing.assert_array_equal(outputs[0], outputs[1])
    run = train(tmp_path / "c", steps=1, seed=None)
    assert 0 <= run.result.seed < 2**31
    assert Manifest.load(run.out).config["seed"] == run.result.seed


@pytest.mark.parametrize(
    "field, value",
    [
        ("steps", 0),
        ("steps", 200_001),
        ("batch_size", 0),
        ("batch_size", 1025),
        ("seed", -1),
        ("seed", 2**31),
        ("z_dim", 1),
        ("z_dim", 513),
        ("lr_g", 0),
        ("lr_d", 1.5),
        ("beta1", 1.0),
        ("beta2", -0.1),
        ("n_critic", 0),
        ("n_critic", 11),
        ("gp_weight", -1),
        ("aux_weight", -1),
        ("ema_decay", 1.0),
        ("diffaugment", "translation,flip"),
        ("checkpoint_every", 0),
        ("g_channels", 4),
        ("d_channels", 1024),
        ("method", "wgan"),
    ],
)
def test_config_rejects_out_of_range(field, value):
    with pytest.raises(ValidationError, match=field):
        TrainConfig(**{field: value})


def test_config_rejects_unknown_fields():
    with pytest.raises(ValidationError, match="learning_rate"):
        TrainConfig(learning_rate=1e-3)


def test_config_method_defaults_and_overrides():
    assert (TrainConfig().n_critic, TrainConfig().gp_weight) == (2, 0.0)
    wacgan = TrainConfig(method="wacgan-gp")
    assert (wacgan.n_critic, wacgan.gp_weight, wacgan.beta1) == (2, 10.0, 0.0)
    acgan = TrainConfig(method="acgan")
    assert (acgan.n_critic, acgan.gp_weight, acgan.beta1) == (1, 0.0, 0.5)
    assert TrainConfig(method="acgan", n_critic=3).n_critic == 3
    assert TrainConfig(diffaugment=" color, translation,").diffaugment_ops == [
        "color",
        "translation",
    ]
    assert TrainConfig(diffaugment="").diffaugment_ops == []


def test_package_imports_without_torch():
    code = (
        "import sys, training, training.config, models.artifact, models.sampler, "
        "models.images, models.truncation; assert 'torch' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[2])


# --- resuming from a checkpoint -------------------------------------------------------------


def stats_steps(out: Path) -> list[int]:
    return [json.loads(line)["step"] for line in (out / STATS_FILE).read_text().splitlines()]


def final_state(out: Path) -> dict:
    checkpoint = torch.load(out / CHECKPOINT_FILE)
    return {
        name: checkpoint[name]
        for name in ("generator", "critic", "generator_ema", "opt_g", "opt_d", "augment")
    }


def assert_same_state(a, b, where: str = "") -> None:
    if isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            assert_same_state(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same_state(x, y, f"{where}[{i}]")
    elif isinstance(a, torch.Tensor):
        assert torch.equal(a, b), f"{where} differs"
    else:
        assert a == b, where


RESUMED = {
    "steps": 14,
    "checkpoint_every": 4,
    "select_by": "recall",
    "select_every": 3,
    "select_evaluator_steps": 5,
    "holdout_fraction": 0.25,
}


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """cgan's defaults (ADA, mode seeking) with select_by recall, trained in one go."""
    return train(tmp_path_factory.mktemp("uninterrupted"), **RESUMED)


def test_a_crashed_run_resumes_from_its_checkpoint_as_if_never_stopped(tmp_path, uninterrupted):
    polls = []
    with pytest.raises(TrainingAborted):  # the process dies before step 11: last checkpoint 8
        train(tmp_path, abort_fn=lambda: polls.append(1) or len(polls) > 10, **RESUMED)
    out = tmp_path / "model"
    assert torch.load(out / CHECKPOINT_FILE)["step"] == 8
    assert stats_steps(out)[-1] == 10  # lines past the checkpoint, a torn one after them:
    with (out / STATS_FILE).open("ab") as stats:
        stats.write(b"\0" * 300 + b"\n" + b'{"step": 11, "elaps')

    resumed = train(tmp_path, **RESUMED)
    assert resumed.result.steps_completed == 14
    assert [p.step for p in resumed.reports][0] > 8, "progress continues after the checkpoint"
    steps = stats_steps(out)
    assert steps == sorted(set(steps)) and 8 in steps and steps[-1] == 14
    assert b"\0" not in (out / STATS_FILE).read_bytes()
    assert_same_state(final_state(out), final_state(uninterrupted.out))
    selected, reference = Manifest.load(out).selection, Manifest.load(uninterrupted.out).selection
    assert (selected.step, selected.evaluations) == (reference.step, reference.evaluations)
    assert Manifest.load(out).steps_completed == 14
    np.testing.assert_array_equal(
        GeneratorSampler(out).generate(np.arange(3), np.ones((3, 8), np.float32)),
        GeneratorSampler(uninterrupted.out).generate(np.arange(3), np.ones((3, 8), np.float32)),
    )


def test_an_interrupted_run_checkpoints_first_and_resumes(tmp_path, uninterrupted):
    polls = []
    with pytest.raises(training.TrainingInterrupted):
        train(tmp_path, interrupt_fn=lambda: polls.append(1) or len(polls) > 6, **RESUMED)
    out = tmp_path / "model"
    assert torch.load(out / CHECKPOINT_FILE)["step"] == 6  # saved when asked, not at step 4
    assert stats_steps(out)[-1] == 6
    train(tmp_path, **RESUMED)
    assert_same_state(final_state(out), final_state(uninterrupted.out))


def test_a_checkpoint_of_other_options_is_not_resumed(tmp_path):
    train(tmp_path, steps=4, checkpoint_every=2)
    again = train(tmp_path, steps=6, checkpoint_every=2)  # another config: starts over
    assert [p.step for p in again.reports][0] <= 2 and stats_steps(again.out)[0] <= 2
