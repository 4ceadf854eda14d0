"""Levers against within-class collapse: transitional conditioning and mode seeking."""

import json

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from models.artifact import STATS_FILE
from models.networks import Discriminator, Generator
from models.sampler import GeneratorSampler
from tests.training.test_methods import TINY, train
from training import TrainConfig
from training.losses import GanLoss, mode_seeking_penalty

LEVER_RUNS = {
    "transition-projection": {"method": "cgan", "steps": 8, "transition_end": 6},
    "transition-aux": {"steps": 8, "transition_start": 2, "transition_end": 6},
    "mode-seeking": {"mode_seeking": 1.0},
    "mode-seeking-transition-hinge-sn": {
        "method": "cgan",
        "adv_loss": "hinge",
        "spectral_norm": True,
        "mode_seeking": 0.5,
        "transition_end": 4,
    },
}


@pytest.fixture(scope="module", params=list(LEVER_RUNS))
def lever_run(request, tmp_path_factory):
    return train(tmp_path_factory.mktemp(request.param), **LEVER_RUNS[request.param])


def test_lever_trains_exports_and_samples(lever_run):
    labels = np.array([0, 1, 2, 2], np.int64)
    latents = np.random.default_rng(0).standard_normal((4, 8), dtype=np.float32)
    images = GeneratorSampler(lever_run.out).generate(labels, latents)
    assert images.shape == (4, 16, 16, 1) and images.dtype == np.uint8
    losses = lever_run.result.final_losses
    assert all(np.isfinite(v) for v in losses.values())
    assert ("mode_seeking" in losses) == (lever_run.config.mode_seeking > 0)


def test_logged_condition_weight_follows_the_ramp(tmp_path):
    run = train(tmp_path, steps=10, transition_start=2, transition_end=6)
    (line,) = [json.loads(line) for line in (run.out / STATS_FILE).read_text().splitlines()]
    # one stats line averages the 10 steps' weights: 0, 0, 0, .25, .5, .75, 1, 1, 1, 1
    assert line["losses"]["condition_weight"] == pytest.approx(0.55)


@pytest.mark.parametrize(
    "start, end, expected",
    [
        # step: 0    1    2    3     4    5     6    7    8
        (2, 6, [0.0, 0.0, 0.0, 0.25, 0.5, 0.75, 1.0, 1.0, 1.0]),
        (0, 4, [0.0, 0.25, 0.5, 0.75, 1.0, 1.0, 1.0, 1.0, 1.0]),
        (3, 3, [0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]),
        (0, 0, [1.0] * 9),
    ],
)
def test_condition_weight_schedule(start, end, expected):
    config = TrainConfig(steps=8, transition_start=start, transition_end=end)
    assert [config.condition_weight(step) for step in range(9)] == expected


@pytest.mark.parametrize(
    "options, message",
    [
        ({"transition_start": 5, "transition_end": 3}, "transition_end must be >= transition_st"),
        ({"steps": 10, "transition_end": 11}, "fully conditional"),
        ({"method": "cgan", "d_conditioning": "concat", "transition_end": 5}, "projection or"),
        ({"mode_seeking": 1.0, "batch_size": 7}, "batch_size must be even"),
    ],
)
def test_inconsistent_lever_options_are_refused(options, message):
    with pytest.raises(ValidationError, match=message):
        TrainConfig(**options)


def test_unconditional_phase_ignores_the_label():
    torch.manual_seed(0)
    generator = Generator(z_dim=8, num_classes=3, image_size=16, channels=1, width=8).eval()
    critic = Discriminator(
        num_classes=3, image_size=16, channels=1, width=8, conditioning="projection"
    )
    z = torch.randn(4, 8)
    ones, twos = torch.ones(4, dtype=torch.int64), torch.full((4,), 2)
    with torch.no_grad():
        assert torch.equal(generator(z, ones, 0.0), generator(z, twos, 0.0))
        assert not torch.equal(generator(z, ones, 1.0), generator(z, twos, 1.0))
        x = generator(z, ones)
        assert torch.equal(critic(x, ones, 0.0)[0], critic(x, twos, 0.0)[0])
        assert not torch.equal(critic(x, ones, 1.0)[0], critic(x, twos, 1.0)[0])


def test_auxiliary_loss_is_scaled_by_the_condition_weight():
    torch.manual_seed(0)
    critic = Discriminator(num_classes=3, image_size=16, channels=1, width=8)
    loss = GanLoss(adversarial="wasserstein", gp_weight=0.0, aux_weight=1.0, augment=())
    fake, labels = torch.rand(4, 1, 16, 16) * 2 - 1, torch.tensor([0, 1, 2, 0])
    full, stats = loss.generator(critic, fake, labels, condition_weight=1.0)
    none, _ = loss.generator(critic, fake, labels, condition_weight=0.0)
    assert (full - none).item() == pytest.approx(stats["g_aux"].item(), rel=1e-5)


class LatentBlind(torch.nn.Module):
    """A collapsed generator: one image per class whatever the latent."""

    def forward(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return (
            labels.float()[:, None, None, None].expand(-1, 1, 8, 8) / 3
            + 0.01 * z[:, :1, None, None]
        )


def test_mode_seeking_penalises_a_generator_that_ignores_its_latent():
    z = torch.randn(16, 8, generator=torch.Generator().manual_seed(0))
    labels = torch.arange(8).repeat(2) % 3
    blind = mode_seeking_penalty(LatentBlind()(z, labels), z)
    torch.manual_seed(0)
    varied = Generator(z_dim=8, num_classes=3, image_size=8, channels=1, width=8).eval()
    with torch.no_grad():
        using = mode_seeking_penalty(varied(z, labels), z)
    assert blind > 10 * using
    identical = mode_seeking_penalty(torch.zeros(16, 1, 8, 8), z)
    assert identical == pytest.approx(1e5), "no variety at all: 1 / eps"


def test_mode_seeking_needs_pairs():
    with pytest.raises(ValueError, match="even batch"):
        mode_seeking_penalty(torch.zeros(3, 1, 8, 8), torch.zeros(3, 8))


def test_tiny_defaults_unchanged_by_the_levers():
    assert TrainConfig(**TINY).condition_weight(0) == 1.0
    assert TrainConfig(**TINY).mode_seeking == 0.0
