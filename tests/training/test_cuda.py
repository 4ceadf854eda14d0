"""Training on a CUDA device (make test-gpu); skipped where torch sees no GPU."""

import numpy as np
import pytest
import torch

import training
from models.sampler import GeneratorSampler
from tests.factories import shapes_arrays, store_dataset
from tests.training.test_methods import check_step_moves_both_networks
from training import TrainConfig
from training.dataset import StoredDataset
from training.loop import Trainer, TrainingSet

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
