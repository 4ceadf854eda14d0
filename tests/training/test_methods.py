"""Training methods and stabilisers: each trains a few steps on shapes, exports and samples."""

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import training
from models.artifact import CHECKPOINT_FILE
from models.networks import Generator
from tests.factories import SHAPES, shapes_arrays
from training import TrainConfig

TINY = dict(steps=6, batch_size=8, z_dim=8, g_channels=8, d_channels=8, seed=3, report="none")


def write_dataset(root: Path, size: int = 16) -> Path:
    """Three classes of 16x16 grey shapes (circle, square, triangle), 12 each."""
    x, y = shapes_arrays(per_class=12, size=size)
    root.mkdir(parents=True)
    np.save(root / "x.npy", x[..., None])
    np.save(root / "y.npy", y)
    meta = {
        "classes": list(SHAPES),
        "counts": [int((y == c).sum()) for c in range(len(SHAPES))],
        "num_images": len(x),
        "image": {"height": size, "width": size, "channels": 1},
    }
    (root / "dataset.json").write_text(json.dumps(meta))
    return root


def train(root: Path, size: int = 16, **overrides) -> SimpleNamespace:
    config = TrainConfig(**(TINY | overrides))
    reports: list[training.Progress] = []
    result = training.run(
        config,
        dataset_dir=write_dataset(root / "dataset", size),
        out_dir=root / "model",
        model_id="m",
        progress_fn=reports.append,
        device="cpu",
    )
    return SimpleNamespace(out=root / "model", result=result, reports=reports, config=config)


def ema_generator_output(model_dir: Path) -> torch.Tensor:
    """Per-image means of the exported (EMA) generator's images at fixed latents."""
    checkpoint = torch.load(model_dir / CHECKPOINT_FILE)
    generator = Generator(**checkpoint["generator_kwargs"]).eval()
    generator.load_state_dict(checkpoint["generator_ema"])
    z = torch.randn(6, generator.config()["z_dim"], generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        return generator(z, torch.arange(6) % 3).mean(dim=(1, 2, 3))  # (6,)


# Computed with the code before the methods-and-stabilisers options existed: the defaults
# (method, options, RNG use) must train exactly as they did. Tolerances absorb float
# rounding across thread counts only.
PINNED_DEFAULTS = [
    # (overrides, size, EMA generator per-image means at fixed latents + critic |w| sums)
    (
        {},
        16,
        [0.351923, 0.388422, 0.463841, 0.430335, 0.308526, 0.360648]
        + [17.0985, 0.74722, 92.9411, 0.918562, 8.69969, 0.00418078, 25.4717, 0.0938842],
    ),
    (
        {"method": "acgan"},
        16,
        [0.340553, 0.379956, 0.458019, 0.418806, 0.300546, 0.354082]
        + [16.8833, 0.751069, 91.9516, 0.918014, 8.39325, 0.00534745, 25.4282, 0.0937901],
    ),
    (  # the default widths, batch and latent size at 28 px
        {"batch_size": 64, "z_dim": 64, "g_channels": 32, "d_channels": 32, "steps": 2},
        28,
        [0.019148, 0.089523, -0.0744318, -0.196687, -0.00221525, 0.167676]
        + [62.9643, 4.48699, 726.693, 1.4748, 29.292, 0.0124434, 84.2853, 0.0246303],
    ),
]


@pytest.mark.parametrize("overrides, size, expected", PINNED_DEFAULTS)
def test_defaults_train_as_before(tmp_path, overrides, size, expected):
    run = train(tmp_path, size, **overrides)
    checkpoint = torch.load(run.out / CHECKPOINT_FILE)
    critic_abs = [float(v.abs().sum()) for v in checkpoint["critic"].values()]
    actual = ema_generator_output(run.out).tolist() + critic_abs
    np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=2e-4)
