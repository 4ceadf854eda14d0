"""Levers against within-class collapse: transitional conditioning, mode seeking, adaptive
augmentation (ADA) and the TAC-GAN twin classifier."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from pydantic import ValidationError

from models.artifact import CHECKPOINT_FILE, STATS_FILE
from models.networks import Discriminator, Generator
from models.sampler import GeneratorSampler
from tests.training.test_methods import TINY, fixed_batch, train, write_dataset
from training import TrainConfig
from training.dataset import StoredDataset
from training.loop import Trainer, TrainingSet
from training.losses import GanLoss, mode_seeking_penalty

LEVER_RUNS = {
    "transition-projection": {"method": "cgan", "steps": 8, "transition_end": 6},
    "transition-aux": {
        "method": "wacgan-gp",
        "steps": 8,
        "transition_start": 2,
        "transition_end": 6,
    },
    "mode-seeking": {"method": "wacgan-gp", "mode_seeking": 1.0},
    "mode-seeking-transition-hinge-sn": {
        "method": "cgan",
        "adv_loss": "hinge",
        "spectral_norm": True,
        "mode_seeking": 0.5,
        "transition_end": 4,
    },
    # ada_kimg 0.032: each adjustment (4 critic updates of 8 reals) moves p by 1, so it moves
    "ada-cgan-hinge": {"method": "cgan", "adv_loss": "hinge", "ada_target": 0.6, "ada_kimg": 0.032},
    "ada-acgan-from-half": {"method": "acgan", "augment_p": 0.5, "ada_target": 0.6},
    "tac-acgan": {"method": "acgan", "aux_twin": True},
    "tac-wacgan-gp": {"method": "wacgan-gp", "aux_twin": True},
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
    ada = lever_run.config.ada_target is not None
    assert ("augment_p" in losses) == ("ada_rt" in losses) == ada
    if ada:
        assert 0 <= losses["augment_p"] <= 1 and -1 <= losses["ada_rt"] <= 1
    assert ("g_twin" in losses) == ("d_twin" in losses) == lever_run.config.aux_twin
    checkpoint = torch.load(lever_run.out / CHECKPOINT_FILE)
    critic = Discriminator(**checkpoint["critic_kwargs"])
    critic.load_state_dict(checkpoint["critic"])
    assert (critic.twin_head is not None) == lever_run.config.aux_twin


def test_logged_condition_weight_follows_the_ramp(tmp_path):
    run = train(tmp_path, steps=10, transition_start=2, transition_end=6)
    lines = [json.loads(line) for line in (run.out / STATS_FILE).read_text().splitlines()]
    # each stats line averages its interval's steps (a loaded machine may write more lines):
    # weighted by steps, they average 0, 0, 0, .25, .5, .75, 1, 1, 1, 1
    steps = np.diff([0] + [line["step"] for line in lines])
    weights = [line["losses"]["condition_weight"] for line in lines]
    assert lines[-1]["step"] == 10
    assert float(np.dot(steps, weights)) / 10 == pytest.approx(0.55)


def test_paired_latents_repeat_the_first_halfs_labels(tmp_path):
    run = train(tmp_path, steps=1)
    trainer = Trainer(
        run.config,
        TrainingSet.load(StoredDataset.load(tmp_path / "dataset"), torch.device("cpu")),
        torch.device("cpu"),
    )
    for n in (8, 7):
        z, labels = trainer.paired_latents(n)
        assert z.shape == (n, run.config.z_dim) and labels.shape == (n,)
        assert torch.equal(labels[: n // 2], labels[n // 2 : 2 * (n // 2)])


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
        ({"mode_seeking": 1.0, "batch_size": 1}, "batch_size must be >= 2"),
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


def test_which_levers_are_on_by_default():
    """Mode seeking is part of cgan's defaults (measured: benchmarks/results/diversity.md);
    the other methods keep theirs, and transitional conditioning is off everywhere."""
    assert TrainConfig(**TINY).condition_weight(0) == 1.0
    assert TrainConfig(**TINY).mode_seeking == 0.5
    assert TrainConfig(**TINY, method="wacgan-gp").mode_seeking == 0.0
    assert TrainConfig(**TINY, method="acgan").mode_seeking == 0.0


def test_an_odd_batch_pairs_all_but_its_last_image(tmp_path):
    run = train(tmp_path, batch_size=7, steps=3)
    assert np.isfinite(run.result.final_losses["mode_seeking"])


def ada_trainer(tmp_path, **overrides) -> Trainer:
    """A cgan trainer with one critic update per step, so ADA adjusts every 4 steps."""
    config = TrainConfig(**(TINY | {"method": "cgan", "n_critic": 1} | overrides))
    stored = StoredDataset.load(write_dataset(tmp_path / "dataset"))
    return Trainer(config, TrainingSet.load(stored, torch.device("cpu")), torch.device("cpu"))


def test_ada_tunes_p_logs_it_and_checkpoints_it(tmp_path):
    # kimg 0.016: an adjustment (4 critic updates of 8 reals) moves p by 2, i.e. to 0 or 1
    trainer = ada_trainer(tmp_path, augment_p=0.5, ada_target=0.6, ada_kimg=0.016)
    logged = [trainer.step() for _ in range(8)]
    assert [float(s["augment_p"]) for s in logged[:4]] == [0.5] * 4, "first adjustment: step 4"
    assert {float(s["augment_p"]) for s in logged[4:]} <= {0.0, 1.0}
    assert all(-1 <= float(s["ada_rt"]) <= 1 for s in logged)
    assert trainer.checkpoint()["augment"] == trainer.augment.state_dict()
    assert trainer.checkpoint()["augment"]["p"] == trainer.augment.p


def test_fixed_augment_p_is_not_logged_and_stays(tmp_path):
    trainer = ada_trainer(tmp_path, augment_p=0.25, ada_target=None)
    stats = trainer.step()
    assert "augment_p" not in stats and "ada_rt" not in stats
    assert trainer.checkpoint()["augment"]["p"] == 0.25


def test_twin_head_exists_only_when_on_and_leaves_the_critic_outputs_alone():
    kwargs = dict(num_classes=3, image_size=16, channels=1, width=8, spectral_norm=True)
    torch.manual_seed(0)
    plain = Discriminator(**kwargs)
    torch.manual_seed(0)
    twin = Discriminator(**kwargs, twin_head=True)
    assert plain.twin_head is None and twin.twin_head is not None
    assert Discriminator(**twin.config()).twin_head is not None, "rebuilds from its config"
    extra = set(twin.state_dict()) - set(plain.state_dict())
    assert extra and all(key.startswith("twin_head.") for key in extra)
    plain.eval(), twin.eval()
    x = torch.rand(4, 1, 16, 16) * 2 - 1
    with torch.no_grad():
        score, logits = plain(x)
        twin_score, twin_logits, twin_only = twin(x, twin=True)
        assert all(torch.equal(a, b) for a, b in zip(twin(x), (score, logits), strict=True))
    assert torch.equal(twin_score, score) and torch.equal(twin_logits, logits)
    assert twin_only.shape == (4, 3) and not torch.equal(twin_only, logits)
    with pytest.raises(ValueError, match="no twin class head"):
        plain(x, twin=True)
    with pytest.raises(ValueError, match="twin class head needs"):
        Discriminator(**kwargs | {"conditioning": "projection"}, twin_head=True)


def twin_batch():
    critic, real, labels, fake, fake_labels = fixed_batch()
    torch.manual_seed(1)
    return Discriminator(**critic.config() | {"twin_head": True}), real, labels, fake, fake_labels


def test_tac_generator_loss_is_class_minus_twin_cross_entropy():
    critic, _, _, fake, fake_labels = twin_batch()
    loss = GanLoss(adversarial="bce", gp_weight=0.0, aux_weight=0.5, augment=(), aux_twin=True)
    total, stats = loss.generator(critic, fake, fake_labels)
    adv, logits, twin_logits = critic(fake, fake_labels, twin=True)
    ce_class = F.cross_entropy(logits, fake_labels)
    ce_twin = F.cross_entropy(twin_logits, fake_labels)
    expected = F.softplus(-adv).mean() + 0.5 * (ce_class - ce_twin)
    assert total.item() == pytest.approx(expected.item(), rel=1e-5)
    assert stats["g_aux"].item() == pytest.approx(ce_class.item(), rel=1e-5)
    assert stats["g_twin"].item() == pytest.approx(ce_twin.item(), rel=1e-5)


def test_tac_critic_trains_the_class_head_on_reals_and_the_twin_on_fakes():
    critic, real, labels, fake, fake_labels = twin_batch()
    loss = GanLoss(adversarial="bce", gp_weight=0.0, aux_weight=0.5, augment=(), aux_twin=True)
    total, stats = loss.critic(critic, real, labels, fake, fake_labels)
    adv_real, logits_real = critic(real, labels)
    adv_fake, _, twin_fake = critic(fake, fake_labels, twin=True)
    aux = F.cross_entropy(logits_real, labels) + F.cross_entropy(twin_fake, fake_labels)
    adv = F.softplus(-adv_real).mean() + F.softplus(adv_fake).mean()
    assert total.item() == pytest.approx((adv + 0.5 * aux).item(), rel=1e-5)
    assert stats["d_twin"].item() == pytest.approx(
        F.cross_entropy(twin_fake, fake_labels).item(), rel=1e-5
    )
    total.backward()
    assert critic.twin_head.weight.grad.abs().sum() > 0


def test_tac_acgan_stops_training_the_class_head_on_fakes(tmp_path):
    trainer = ada_trainer(tmp_path, method="acgan", adv_loss="bce", aux_twin=True)
    assert trainer.loss.aux_twin and not trainer.loss.aux_on_fakes
    assert ada_trainer(tmp_path / "plain", method="acgan", adv_loss="bce").loss.aux_on_fakes


@pytest.mark.parametrize(
    "options, message",
    [
        ({"method": "wacgan-gp", "ada_target": 0.6}, "Wasserstein critic"),
        ({"method": "cgan", "ada_target": 0.6, "diffaugment": ""}, "need DiffAugment ops"),
        ({"augment_p": 0.5, "diffaugment": ""}, "need DiffAugment ops"),
        ({"method": "cgan", "aux_twin": True}, "cgan has none"),
        ({"method": "acgan", "aux_twin": True, "aux_weight": 0.0}, "set aux_weight > 0"),
        ({"augment_p": 1.5}, "less than or equal to 1"),
        ({"method": "acgan", "ada_target": 1.0}, "less than 1"),
    ],
)
def test_inconsistent_ada_and_tac_options_are_refused(options, message):
    with pytest.raises(ValidationError, match=message):
        TrainConfig(**options)


def test_ada_is_on_for_cgan_only_and_tac_off_by_default():
    config = TrainConfig(**TINY)
    assert (config.augment_p, config.ada_target, config.aux_twin) == (1.0, 0.6, False)
    assert TrainConfig(**config.model_dump()) == config, "a stored config validates again"
    for method in ("wacgan-gp", "acgan"):
        assert TrainConfig(**TINY, method=method).ada_target is None
    assert TrainConfig(**TINY, diffaugment="").ada_target is None, "no ops: no ADA default"
