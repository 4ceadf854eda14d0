"""Training on a CUDA device (make test-gpu); skipped where torch sees no GPU.

These run the CUDA step that `training.accel.Acceleration.choose` picks (bf16 autocast,
fused Adam, channels_last, and torch.compile with `compile_forwards`); benchmarks/gpu_check.sh
runs them with the throughput benchmark in one go."""

import json

import numpy as np
import pytest
import torch

import training
from models.artifact import MANIFEST_FILE, STATS_FILE
from models.sampler import GeneratorSampler
from tests.factories import shapes_arrays, store_dataset
from tests.training.test_methods import check_step_moves_both_networks
from training import TrainConfig
from training.accel import Acceleration
from training.dataset import StoredDataset
from training.loop import Trainer, TrainingSet
from training.stats import REPORT_EVERY_STEPS, Reporter

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="torch.cuda.is_available() is False"),
]
SIZE = 28


@pytest.fixture
def dataset(tmp_path):
    return store_dataset(tmp_path / "dataset", *shapes_arrays(per_class=24, size=SIZE))


# the default (cgan: spectral norm, hinge) and wacgan-gp (the gradient penalty's double backward)
@pytest.mark.parametrize("method", [None, "wacgan-gp"])
def test_default_config_step_on_cuda_moves_both_networks(dataset, method):
    device = torch.device("cuda")
    data = TrainingSet.load(StoredDataset.load(dataset), device)
    options = {"method": method} if method else {}
    trainer = Trainer(TrainConfig(seed=0, **options), data, device)
    assert all(p.is_cuda for p in [*trainer.critic.parameters(), *trainer.generator.parameters()])
    check_step_moves_both_networks(trainer)


def test_default_config_trains_and_exports_on_cuda(dataset, tmp_path):
    result = training.run(
        TrainConfig(steps=5, seed=0, report="none"),
        dataset_dir=dataset,
        out_dir=tmp_path / "model",
        model_id="cuda",
        device="cuda",
    )
    assert result.steps_completed == 5
    assert all(np.isfinite(list(result.final_losses.values())))
    sampler = GeneratorSampler(tmp_path / "model", providers=["CPUExecutionProvider"])
    images = sampler.generate(np.arange(6) % 3, np.zeros((6, 64), np.float32))
    assert images.shape == (6, SIZE, SIZE, 1) and images.dtype == np.uint8
    device = sampler.manifest.device
    assert device is not None and device.type == "cuda"
    assert device.name == torch.cuda.get_device_name() and result.trained_on == device


def sampled_images(model_dir, z_dim: int = 64) -> np.ndarray:
    manifest = json.loads((model_dir / MANIFEST_FILE).read_text())
    sampler = GeneratorSampler(model_dir, providers=["CPUExecutionProvider"])
    n = 2 * len(manifest["classes"])
    return sampler.generate(
        np.arange(n) % len(manifest["classes"]), np.zeros((n, z_dim), np.float32)
    )


# every method, and the compiled forwards where they apply (cgan's critic and generator,
# wacgan-gp's generator: its critic's gradient penalty needs the double backward)
@pytest.mark.parametrize(
    "method, compile_forwards",
    [
        ("cgan", False),
        ("cgan", True),
        ("wacgan-gp", False),
        ("wacgan-gp", True),
        ("acgan", False),
        ("vcagan", False),
    ],
)
def test_each_method_trains_with_the_cuda_step_and_exports(
    dataset, tmp_path, method, compile_forwards
):
    out = tmp_path / "model"
    result = training.run(
        TrainConfig(method=method, steps=12, seed=0, report="none"),
        dataset_dir=dataset,
        out_dir=out,
        model_id=f"cuda-{method}",
        device="cuda",
        compile_forwards=compile_forwards,
    )
    assert result.steps_completed == 12 and result.device == "cuda"
    assert all(np.isfinite(list(result.final_losses.values())))
    lines = (out / STATS_FILE).read_text().splitlines()
    assert json.loads(lines[-1])["step"] == 12  # (the first, compiling step may report too)
    images = sampled_images(out)
    assert images.shape[1:] == (SIZE, SIZE, 1) and images.dtype == np.uint8
    assert images.std() > 0  # not a constant image


def test_cuda_step_uses_bf16_with_an_fp32_gradient_penalty(dataset):
    device = torch.device("cuda")
    data = TrainingSet.load(StoredDataset.load(dataset), device)
    trainer = Trainer(TrainConfig(method="wacgan-gp", seed=0), data, device)
    assert trainer.opt_d.defaults["fused"] and trainer.opt_g.defaults["fused"]
    first_conv = trainer.critic.features[0]
    assert first_conv.weight.is_contiguous(memory_format=torch.channels_last)
    dtypes = []
    handle = first_conv.register_forward_hook(lambda m, i, out: dtypes.append(out.dtype))
    try:
        trainer.step()
    finally:
        handle.remove()
    # per critic update: real and fake in bf16, the penalty's interpolates in fp32
    n = trainer.config.n_critic
    assert dtypes.count(torch.bfloat16) == 2 * n + 1 and dtypes.count(torch.float32) == n
    assert all(p.dtype == torch.float32 for p in trainer.critic.parameters())


@pytest.mark.parametrize("options", [{"method": "wacgan-gp"}, {"ada_target": None}])
def test_steps_between_reports_never_wait_for_the_device(dataset, tmp_path, options):
    """torch's sync debug mode raises on any host-device synchronisation (.item(), copies
    to the host, nonzero ...): the steps before a report must make none."""
    device = torch.device("cuda")
    data = TrainingSet.load(StoredDataset.load(dataset), device)
    trainer = Trainer(TrainConfig(seed=0, **options), data, device)
    trainer.step()  # warm-up: cuDNN and cuBLAS set up their handles once
    reporter = Reporter(100, tmp_path / "stats.jsonl", None, trainer.measurements)
    torch.cuda.set_sync_debug_mode("error")
    try:
        for step in range(1, REPORT_EVERY_STEPS):
            reporter.add(step, trainer.step())
    finally:
        torch.cuda.set_sync_debug_mode("default")
    reporter.add(REPORT_EVERY_STEPS, trainer.step())
    assert np.isfinite(list(reporter.last_losses.values())).all()
    reporter.close()


def test_acceleration_on_cuda_is_what_the_docs_say():
    chosen = Acceleration.choose(TrainConfig(), torch.device("cuda"), compile=True)
    assert chosen == Acceleration(True, True, True, True, True)
