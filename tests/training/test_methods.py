"""Training methods and stabilisers: each trains a few steps on shapes, exports and samples."""

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from pydantic import ValidationError

import training
from models.artifact import CHECKPOINT_FILE, STATS_FILE
from models.networks import Discriminator, Generator
from models.sampler import GeneratorSampler
from tests.factories import shapes_arrays, store_dataset
from training import TrainConfig
from training.dataset import StoredDataset
from training.loop import Trainer, TrainingSet
from training.losses import GanLoss, r1_penalty

TINY = dict(steps=6, batch_size=8, z_dim=8, g_channels=8, d_channels=8, seed=3, report="none")


def write_dataset(root: Path, size: int = 16) -> Path:
    """Three classes of 16x16 grey shapes (circle, square, triangle), 12 each."""
    x, y = shapes_arrays(per_class=12, size=size)
    return store_dataset(root, x, y)


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


def ema_generator(model_dir: Path) -> Generator:
    """The exported (EMA) generator, rebuilt from the checkpoint."""
    checkpoint = torch.load(model_dir / CHECKPOINT_FILE)
    generator = Generator(**checkpoint["generator_kwargs"]).eval()
    generator.load_state_dict(checkpoint["generator_ema"])
    return generator


# The default method (cgan) and options, wacgan-gp and acgan with theirs, and the default
# widths, batch and latent size at 28 px. What a user would notice, not float digits that
# move with the CPU or torch build.
DEFAULT_RUNS = {
    "default": ({}, 16),
    "wacgan-gp": ({"method": "wacgan-gp"}, 16),
    "acgan": ({"method": "acgan"}, 16),
    "default-sizes-28px": (
        {"batch_size": 64, "z_dim": 64, "g_channels": 32, "d_channels": 32, "steps": 2},
        28,
    ),
}


@pytest.mark.parametrize("name", list(DEFAULT_RUNS))
def test_defaults_train_to_finite_losses_and_class_images(tmp_path, name):
    overrides, size = DEFAULT_RUNS[name]
    run = train(tmp_path / "a", size, **overrides)
    assert run.result.steps_completed == run.config.steps
    assert run.result.final_losses and all(np.isfinite(list(run.result.final_losses.values())))

    generator = ema_generator(run.out)
    z = torch.randn(6, run.config.z_dim, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        images = generator(z, torch.arange(6) % 3)  # (6, 1, size, size)
        same_z_other_class = generator(z, (torch.arange(6) + 1) % 3)
    assert images.shape == (6, 1, size, size)
    assert images.min() >= -1 and images.max() <= 1 and images.std() > 0
    assert (images - same_z_other_class).abs().flatten(1).amax(dim=1).min() > 0, (
        "every class must change the image of a latent"
    )

    again = train(tmp_path / "b", size, **overrides)
    with torch.no_grad():
        np.testing.assert_array_equal(ema_generator(again.out)(z, torch.arange(6) % 3), images)


@pytest.mark.parametrize("name", list(DEFAULT_RUNS))
def test_a_default_training_step_moves_both_networks(tmp_path, name):
    overrides, size = DEFAULT_RUNS[name]
    config = TrainConfig(**(TINY | overrides))
    stored = StoredDataset.load(write_dataset(tmp_path / "dataset", size))
    data = TrainingSet.load(stored, torch.device("cpu"))
    check_step_moves_both_networks(Trainer(config, data, torch.device("cpu")))


def check_step_moves_both_networks(trainer: Trainer) -> None:
    """One step gives finite stats and changes most critic weights and the generator."""
    critic = {k: v.clone() for k, v in trainer.critic.state_dict().items()}
    generator = {k: v.clone() for k, v in trainer.generator.state_dict().items()}
    stats = trainer.step()
    assert all(np.isfinite(float(v)) for v in stats.values())
    moved = [not torch.equal(v, critic[k]) for k, v in trainer.critic.state_dict().items()]
    assert sum(moved) >= len(moved) // 2, "the critic's weights must train"
    assert any(not torch.equal(v, generator[k]) for k, v in trainer.generator.state_dict().items())


# cgan's defaults until it became the default method: BCE, no spectral norm, Adam (0.5, 0.999)
OLD_CGAN = {"adv_loss": "bce", "spectral_norm": False, "n_critic": 1, "beta1": 0.5, "beta2": 0.999}
OPTION_RUNS = {
    "cgan-projection-bce": {"method": "cgan"} | OLD_CGAN,
    "cgan-concat-gp": {"method": "cgan", "d_conditioning": "concat", "gp_weight": 1.0},
    "cgan-hinge-sn": {"method": "cgan"},
    "acgan-hinge": {"method": "acgan", "adv_loss": "hinge"},
    "acgan-label-smoothing": {"method": "acgan", "label_smoothing": 0.1},
    "spectral-norm-gp": {"method": "wacgan-gp", "spectral_norm": True},
    "d-dropout": {"d_dropout": 0.3},
    "r1": {"r1_weight": 1.0},
    "weight-clip": {"method": "wacgan-gp", "weight_clip": 0.01, "gp_weight": 0.0},
    "g-embed": {"g_conditioning": "embed"},
    "existing-options": {
        "n_critic": 3,
        "lr_g": 1e-4,
        "lr_d": 3e-4,
        "beta1": 0.5,
        "beta2": 0.99,
        "ema_decay": 0.0,
        "diffaugment": "color,translation,cutout",
    },
}


@pytest.fixture(scope="module", params=list(OPTION_RUNS))
def option_run(request, tmp_path_factory):
    return train(tmp_path_factory.mktemp(request.param), **OPTION_RUNS[request.param])


def test_option_trains_exports_and_samples(option_run):
    labels = np.array([0, 1, 2, 2], np.int64)
    images = GeneratorSampler(option_run.out).generate(labels, np.zeros((4, 8), np.float32))
    assert images.shape == (4, 16, 16, 1) and images.dtype == np.uint8
    losses = option_run.result.final_losses
    assert all(np.isfinite(v) for v in losses.values())
    config = option_run.config
    assert ("d_aux" in losses) == (config.method != "cgan")
    assert ("gp" in losses) == (config.gp_weight > 0)
    assert ("r1" in losses) == (config.r1_weight > 0)
    assert ("wdist" in losses) == (config.method == "wacgan-gp")
    checkpoint = torch.load(option_run.out / CHECKPOINT_FILE)
    Generator(**checkpoint["generator_kwargs"]).load_state_dict(checkpoint["generator"])
    critic = Discriminator(**checkpoint["critic_kwargs"])
    critic.load_state_dict(checkpoint["critic"])
    assert checkpoint["critic_kwargs"]["spectral_norm"] == config.spectral_norm
    assert checkpoint["critic_kwargs"]["dropout"] == config.d_dropout
    assert checkpoint["generator_kwargs"]["conditioning"] == config.g_conditioning


def test_lipschitz_is_logged_at_every_report(option_run):
    lines = [json.loads(line) for line in (option_run.out / STATS_FILE).read_text().splitlines()]
    assert all(line["losses"]["lipschitz"] > 0 for line in lines)
    assert all("lipschitz" in p.losses for p in option_run.reports)
    # the last report measured the critic that was then checkpointed
    checkpoint = torch.load(option_run.out / CHECKPOINT_FILE)
    critic = Discriminator(**checkpoint["critic_kwargs"])
    critic.load_state_dict(checkpoint["critic"])
    assert lines[-1]["losses"]["lipschitz"] == pytest.approx(independent_lipschitz(critic))


def test_existing_options_are_honoured(tmp_path):
    run = train(tmp_path, **OPTION_RUNS["existing-options"])
    checkpoint = torch.load(run.out / CHECKPOINT_FILE)
    assert checkpoint["generator_ema"] is None, "ema_decay 0 exports the raw generator"
    for name, lr, updates in (("opt_g", 1e-4, TINY["steps"]), ("opt_d", 3e-4, 3 * TINY["steps"])):
        (group,) = checkpoint[name]["param_groups"]
        assert group["lr"] == lr and group["betas"] == (0.5, 0.99)
        assert all(float(s["step"]) == updates for s in checkpoint[name]["state"].values())


def independent_lipschitz(critic: Discriminator) -> float:
    """Product of the largest singular values of the critic's conv weights and score head."""
    critic.eval()
    with torch.no_grad():
        norms = [
            torch.linalg.svdvals(m.weight.flatten(1))[0]
            for m in critic.features
            if isinstance(m, torch.nn.Conv2d)
        ]
        head = critic.adv_head.weight  # (1, D); per class w + e_y for projection
        if critic.conditioning == "projection":
            head = head + critic.embed.weight
        heads = [torch.linalg.svdvals(row[None])[0] for row in head]
    return float(torch.stack(norms).prod() * torch.stack(heads).max())


@pytest.mark.parametrize("conditioning", ["aux", "projection", "concat"])
@pytest.mark.parametrize("spectral_norm", [False, True])
def test_lipschitz_bound_is_product_of_layer_norms(conditioning, spectral_norm):
    torch.manual_seed(0)
    critic = Discriminator(
        num_classes=3,
        image_size=32,
        channels=3,
        width=8,
        conditioning=conditioning,
        spectral_norm=spectral_norm,
    )
    bound = critic.lipschitz_bound()
    assert critic.training, "the monitor leaves the critic's mode alone"
    assert bound == pytest.approx(independent_lipschitz(critic), rel=1e-5)
    if spectral_norm:
        # power iteration under-estimates each sigma a little, so each layer is ~1.0x
        assert bound < 1.1 * (2 if conditioning == "projection" else 1)


@pytest.mark.parametrize("conditioning", ["aux", "projection", "concat"])
def test_spectral_norm_bounds_every_layer(conditioning):
    torch.manual_seed(0)
    critic = Discriminator(
        num_classes=3, image_size=16, channels=1, width=8, conditioning=conditioning
    )
    normalised = Discriminator(**(critic.config() | {"spectral_norm": True}))
    with torch.no_grad():
        for p in normalised.parameters():
            p.mul_(20)  # far from unit norm: spectral normalisation must undo it
        x, labels = torch.randn(8, 1, 16, 16), torch.arange(8) % 3
        for _ in range(20):  # each training-mode forward is one power iteration
            normalised(x, labels)
    normalised.eval()
    layers = [m for m in normalised.modules() if isinstance(m, torch.nn.Conv2d | torch.nn.Linear)]
    layers += [m for m in normalised.modules() if isinstance(m, torch.nn.Embedding)]
    assert len(layers) == len([p for p in critic.parameters() if p.dim() > 1])
    for layer in layers:
        sigma = torch.linalg.svdvals(layer.weight.detach().flatten(1))[0]
        assert sigma == pytest.approx(1.0, abs=0.02), layer


def test_weight_clip_bounds_every_critic_parameter(tmp_path):
    run = train(tmp_path, method="wacgan-gp", weight_clip=0.02, gp_weight=0.0)
    checkpoint = torch.load(run.out / CHECKPOINT_FILE)
    largest = max(float(v.abs().max()) for v in checkpoint["critic"].values())
    assert largest == pytest.approx(0.02), "every |w| <= c, and the init exceeded c"


def fixed_batch():
    torch.manual_seed(0)
    critic = Discriminator(num_classes=3, image_size=16, channels=1, width=8)
    x, y = shapes_arrays(per_class=4)
    real = torch.from_numpy(x).float().div(127.5).sub(1)[:, None]  # (12, 1, 16, 16)
    labels = torch.from_numpy(y)
    fake = torch.rand_like(real) * 2 - 1
    return critic, real, labels, fake, labels.flip(0)


def test_label_smoothing_softens_the_real_target():
    critic, real, labels, fake, fake_labels = fixed_batch()
    base = dict(adversarial="bce", gp_weight=0.0, aux_weight=0.2, augment=(), aux_on_fakes=True)
    plain, _ = GanLoss(**base).critic(critic, real, labels, fake, fake_labels)
    smooth, _ = GanLoss(**base, label_smoothing=0.2).critic(critic, real, labels, fake, fake_labels)
    adv_real = critic(real)[0].detach()  # (B,)
    bce = F.binary_cross_entropy_with_logits
    expected = bce(adv_real, torch.full_like(adv_real, 0.8)) - bce(
        adv_real, torch.ones_like(adv_real)
    )
    assert (smooth - plain).item() == pytest.approx(expected.item(), abs=1e-6)


def test_r1_penalty_zero_when_off_positive_when_on():
    critic, real, labels, fake, fake_labels = fixed_batch()
    base = dict(adversarial="wasserstein", gp_weight=0.0, aux_weight=0.2, augment=())
    plain, plain_stats = GanLoss(**base).critic(critic, real, labels, fake, fake_labels)
    off, off_stats = GanLoss(**base, r1_weight=0.0).critic(critic, real, labels, fake, fake_labels)
    on, on_stats = GanLoss(**base, r1_weight=4.0).critic(critic, real, labels, fake, fake_labels)
    assert off.item() == plain.item() and "r1" not in off_stats | plain_stats
    assert on_stats["r1"] > 0
    assert (on - plain).item() == pytest.approx(2.0 * on_stats["r1"].item(), rel=1e-5)
    on.backward()  # the penalty trains the critic: its gradients reach the weights
    assert all(p.grad is not None for p in critic.parameters())


def test_r1_penalty_of_a_linear_critic_is_its_squared_weight_norm():
    weight = torch.randn(1, 4, 4)
    real = torch.randn(5, 1, 4, 4, requires_grad=True)
    adv = (real * weight).sum(dim=(1, 2, 3))  # (5,)
    assert float(r1_penalty(adv, real)) == pytest.approx(float(weight.square().sum()), rel=1e-5)


def test_critic_sees_augmented_images_in_both_steps():
    critic, real, labels, fake, fake_labels = fixed_batch()
    seen: list[torch.Tensor] = []
    critic.register_forward_pre_hook(lambda _, args: seen.append(args[0].detach()))
    loss = GanLoss(adversarial="wasserstein", gp_weight=0.0, aux_weight=0.2, augment=["cutout"])
    loss.critic(critic, real, labels, fake, fake_labels)
    loss.generator(critic, fake, fake_labels)
    assert len(seen) == 3, "real and fake in the critic step, fake in the generator step"
    for images in seen:  # the shapes and the fakes hold no exact zeros; cutout writes them
        assert ((images == 0).flatten(1).sum(dim=1) > 0).all()


@pytest.mark.parametrize(
    "options, match",
    [
        ({"method": "acgan", "d_conditioning": "concat"}, "d_conditioning applies to cgan"),
        ({"method": "cgan", "d_conditioning": None}, "d_conditioning must be"),
        ({"method": "cgan", "d_conditioning": "sum"}, "d_conditioning"),
        ({"method": "cgan", "aux_weight": 0.5}, "aux_weight must be 0 for cgan"),
        ({"method": "wacgan-gp", "adv_loss": "hinge"}, "adv_loss applies to acgan and cgan"),
        ({"adv_loss": None}, "adv_loss must be bce or hinge for cgan"),
        ({"method": "acgan", "adv_loss": None}, "adv_loss must be bce or hinge"),
        ({"method": "acgan", "adv_loss": "wasserstein"}, "adv_loss"),
        ({"method": "wacgan-gp", "label_smoothing": 0.1}, "wasserstein loss has none"),
        ({"label_smoothing": 0.1}, "hinge loss has none"),
        ({"method": "cgan", "adv_loss": "hinge", "label_smoothing": 0.1}, "hinge loss has none"),
        ({"method": "acgan", "label_smoothing": 0.5}, "label_smoothing"),
        ({"method": "acgan", "label_smoothing": -0.1}, "label_smoothing"),
        ({"d_dropout": 0.9}, "d_dropout"),
        ({"d_dropout": -0.1}, "d_dropout"),
        ({"r1_weight": -1}, "r1_weight"),
        ({"weight_clip": 0.0, "gp_weight": 0.0}, "weight_clip"),
        ({"method": "wacgan-gp", "weight_clip": 0.01}, "weight_clip replaces the gradient"),
        (
            {"method": "wacgan-gp", "weight_clip": 0.01, "gp_weight": 0, "spectral_norm": True},
            "pick one",
        ),
        ({"weight_clip": 0.01}, "weight_clip is the WGAN critic constraint"),
        ({"method": "acgan", "weight_clip": 0.01}, "weight_clip is the WGAN critic constraint"),
        ({"g_conditioning": "film"}, "g_conditioning"),
        ({"spectral_norm": "maybe"}, "spectral_norm"),
    ],
)
def test_config_rejects_bad_values_and_combinations(options, match):
    with pytest.raises(ValidationError, match=match):
        TrainConfig(**options)


# What TrainConfig() meant before cgan became the default, written out field by field:
# {"method": "wacgan-gp"} must still train exactly this.
OLD_DEFAULT = {
    "method": "wacgan-gp",
    "adv_loss": None,
    "d_conditioning": None,
    "g_conditioning": "cbn",
    "steps": 3000,
    "batch_size": 64,
    "seed": None,
    "z_dim": 64,
    "lr_g": 2e-4,
    "lr_d": 2e-4,
    "beta1": 0.0,
    "beta2": 0.9,
    "n_critic": 2,
    "gp_weight": 10.0,
    "aux_weight": 0.2,
    "aux_twin": False,
    "aux_fake_truncation": None,
    "aux_diffaugment": True,
    "label_smoothing": 0.0,
    "spectral_norm": False,
    "d_dropout": 0.0,
    "r1_weight": 0.0,
    "weight_clip": None,
    "transition_start": 0,
    "transition_end": 0,
    "mode_seeking": 0.0,
    "ema_decay": 0.999,
    "diffaugment": "translation,cutout",
    "augment_p": 1.0,
    "ada_target": None,
    "ada_kimg": 100.0,
    "checkpoint_every": 500,
    "select_by": "last",
    "select_every": 500,
    "select_evaluator_steps": 500,
    "holdout_fraction": 0.2,
    "report": "standard",
    "g_channels": 32,
    "d_channels": 32,
    # vcagan's options (issue 10): every other method refuses values other than these
    "max_classes": 16,
    "lambda_creg": 5.0,
    "lambda_cls": 1.0,
    "prior_decay": 0.999,
    "prior_warmup": 0,
    "balanced_warmup": 0,
    "creg_images": "real",
    "min_class_probability": 0.01,
}
# The options that differ between methods, as each method fills them when left out.
NEW_DEFAULT_CGAN = {
    "method": "cgan",
    "adv_loss": "hinge",
    "d_conditioning": "projection",
    "spectral_norm": True,
    "n_critic": 2,
    "beta1": 0.0,
    "beta2": 0.9,
    "gp_weight": 0.0,
    "aux_weight": 0.0,
    "mode_seeking": 0.5,
    "ada_target": 0.6,
}
ACGAN = {
    "method": "acgan",
    "adv_loss": "bce",
    "d_conditioning": None,
    "spectral_norm": False,
    "n_critic": 1,
    "beta1": 0.5,
    "beta2": 0.999,
    "gp_weight": 0.0,
    "aux_weight": 0.2,
}


def test_default_is_the_projection_cgan_with_hinge_loss_and_spectral_norm():
    default = TrainConfig().model_dump()
    assert default == OLD_DEFAULT | NEW_DEFAULT_CGAN
    assert TrainConfig(method="cgan") == TrainConfig()
    assert TrainConfig().adversarial_loss == "hinge"
    # the JSON schema (the API's docs) shows the default method's values
    schema = TrainConfig.model_json_schema()["properties"]
    assert {name: schema[name].get("default") for name in NEW_DEFAULT_CGAN} == NEW_DEFAULT_CGAN


def test_named_methods_keep_their_own_defaults():
    assert TrainConfig(method="wacgan-gp").model_dump() == OLD_DEFAULT
    assert TrainConfig(method="acgan").model_dump() == OLD_DEFAULT | ACGAN


def test_explicit_options_win_over_the_methods_defaults():
    config = TrainConfig(method="cgan", adv_loss="bce", spectral_norm=False, n_critic=1)
    assert (config.adv_loss, config.spectral_norm, config.n_critic) == ("bce", False, 1)
    assert (config.beta1, config.beta2, config.d_conditioning) == (0.0, 0.9, "projection")
    wacgan = TrainConfig(method="wacgan-gp", spectral_norm=True, gp_weight=1.0)
    assert (wacgan.spectral_norm, wacgan.gp_weight, wacgan.aux_weight) == (True, 1.0, 0.2)


def test_stored_configs_validate_again_unchanged():
    configs = [TrainConfig(), TrainConfig(method="wacgan-gp"), TrainConfig(method="acgan")]
    configs += [
        TrainConfig(method="acgan", adv_loss="hinge"),
        TrainConfig(**OPTION_RUNS["cgan-projection-bce"]),
    ]
    for config in configs:
        assert TrainConfig.model_validate(config.model_dump()) == config
        assert TrainConfig.model_validate_json(config.model_dump_json()) == config
    assert all(field.description for field in TrainConfig.model_fields.values())
