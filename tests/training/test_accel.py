"""The training step's hardware choices (training/accel.py), checked on a CPU: which method
gets what on CUDA, that CPU training takes none of them, that bf16 autocast leaves the
penalty in fp32, and that the step leaves its losses on the device between reports."""

import pytest
import torch

from models.networks import Discriminator
from training.accel import Acceleration, full_precision
from training.augment import ADA_INTERVAL
from training.config import TrainConfig
from training.loop import Trainer, TrainingSet
from training.losses import gradient_penalty
from training.stats import REPORT_EVERY_STEPS, Reporter

CUDA = torch.device("cuda")  # a device object only: nothing here runs on it
TINY = dict(batch_size=8, z_dim=8, g_channels=8, d_channels=8, seed=0)


@pytest.fixture(scope="module")
def data() -> TrainingSet:
    gen = torch.Generator().manual_seed(0)
    images = torch.rand(64, 1, 16, 16, generator=gen) * 2 - 1
    labels = torch.randint(3, (64,), generator=gen)
    return TrainingSet(images.contiguous(memory_format=torch.channels_last), labels, list("abc"))


def test_cpu_training_uses_none_of_the_cuda_choices():
    for method in ("cgan", "wacgan-gp", "acgan", "vcagan"):
        chosen = Acceleration.choose(TrainConfig(method=method), torch.device("cpu"), compile=True)
        assert chosen == Acceleration()


@pytest.mark.parametrize(
    "options, expected",
    [
        # the default: hinge + spectral norm, no double backward: everything
        ({}, dict(autocast_generator=True, autocast_critic=True, compile_critic=True)),
        # the gradient penalty's double backward: an fp32 penalty, an uncompiled critic
        (
            {"method": "wacgan-gp"},
            dict(autocast_generator=True, autocast_critic=True, compile_critic=False),
        ),
        ({"method": "acgan"}, dict(autocast_generator=True, autocast_critic=True)),
        # R1 differentiates the critic loss's own forward: that step stays fp32 whole
        (
            {"method": "acgan", "r1_weight": 1.0},
            dict(autocast_generator=True, autocast_critic=False, compile_critic=False),
        ),
        # vcagan's own step: fused Adam only
        (
            {"method": "vcagan"},
            dict(autocast_generator=False, autocast_critic=False, compile_generator=False),
        ),
    ],
)
def test_cuda_choices_per_method(options, expected):
    chosen = Acceleration.choose(TrainConfig(**options), CUDA, compile=True)
    assert chosen.fused_adam
    for name, value in expected.items():
        assert getattr(chosen, name) == value, name
    labelled = options.get("method") != "vcagan"
    assert chosen.compile_generator == labelled
    plain = Acceleration.choose(TrainConfig(**options), CUDA)  # compile is opt-in
    assert not plain.compile_generator and not plain.compile_critic


def test_nothing_compiles_while_the_condition_weight_ramps():
    ramp = TrainConfig(transition_start=10, transition_end=100)
    chosen = Acceleration.choose(ramp, CUDA, compile=True)
    assert not chosen.compile_generator and not chosen.compile_critic and chosen.autocast_critic


def test_full_precision_leaves_autocast_for_the_penalty():
    conv = torch.nn.Conv2d(1, 4, 3)
    x = torch.randn(2, 1, 8, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert conv(x).dtype == torch.bfloat16
        with full_precision(x.device):
            assert conv(x).dtype == torch.float32


def test_spectral_norm_stays_fp32_where_autocast_runs_matrix_vector_products_in_bf16(
    monkeypatch,
):
    """CUDA autocast runs torch.mv in bf16, CPU autocast does not: emulated here, torch's own
    spectral norm fails (sigma's vdot of fp32 and bf16) and the critic's does not."""
    mv = torch.mv

    def cuda_like_mv(matrix, vector):
        if torch.is_autocast_enabled("cpu"):
            return mv(matrix.bfloat16(), vector.bfloat16())
        return mv(matrix, vector)

    monkeypatch.setattr(torch, "mv", cuda_like_mv)
    plain = torch.nn.utils.parametrizations.spectral_norm(torch.nn.Linear(8, 4))
    with torch.autocast("cpu", dtype=torch.bfloat16), pytest.raises(RuntimeError, match="dtype"):
        plain(torch.randn(2, 8))
    torch.manual_seed(0)
    critic = Discriminator(
        num_classes=3,
        image_size=16,
        channels=1,
        width=8,
        conditioning="projection",
        spectral_norm=True,
    )
    x, labels = torch.randn(4, 1, 16, 16), torch.tensor([0, 1, 2, 0])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        score, _ = critic(x, labels)
        weight = critic.features[0].weight
    assert weight.dtype == torch.float32 and torch.isfinite(score).all()


@pytest.mark.parametrize("method", ["cgan", "wacgan-gp"])
def test_a_bf16_autocast_step_trains_with_an_fp32_penalty(data, method, monkeypatch):
    """CPU autocast stands in for CUDA's: the same step code, the same dtype rules."""
    accel = Acceleration(autocast_generator=True, autocast_critic=True)
    trainer = Trainer(TrainConfig(method=method, **TINY), data, torch.device("cpu"), accel)
    penalty_dtypes = []

    def recording_penalty(critic, real, fake, *args):
        penalty, norm = gradient_penalty(critic, real, fake, *args)
        penalty_dtypes.append((real.dtype, fake.dtype, penalty.dtype))
        return penalty, norm

    monkeypatch.setattr("training.losses.gradient_penalty", recording_penalty)
    before = [p.detach().clone() for p in trainer.generator.parameters()]
    stats = trainer.step()
    assert all(torch.isfinite(v) for v in stats.values())
    assert all(p.dtype == torch.float32 for p in trainer.critic.parameters())
    moved = [
        not torch.equal(a, b) for a, b in zip(before, trainer.generator.parameters(), strict=True)
    ]
    assert any(moved)
    assert trainer._fake[0].dtype == torch.float32  # a critic step without autocast reads it
    if method == "wacgan-gp":
        assert penalty_dtypes == [(torch.float32,) * 3] * trainer.config.n_critic
    else:
        assert penalty_dtypes == []


class _Reads:
    """Counts the host reads of tensor values (`.item()`, `float(t)`): device syncs on CUDA."""

    def __init__(self, monkeypatch):
        self.count = 0
        for name in ("item", "__float__", "tolist"):
            original = getattr(torch.Tensor, name)

            def counted(tensor, *args, _original=original):
                self.count += 1
                return _original(tensor, *args)

            monkeypatch.setattr(torch.Tensor, name, counted)


@pytest.mark.parametrize(
    "options", [{"method": "wacgan-gp"}, {"method": "cgan", "ada_target": None}]
)
def test_losses_are_read_only_at_reports(data, options, tmp_path, monkeypatch):
    # fused Adam as on CUDA: CPU's default Adam reads its (host) step counters each update
    accel = Acceleration(fused_adam=True)
    trainer = Trainer(TrainConfig(**TINY | options), data, torch.device("cpu"), accel)
    reports = []
    # reports by step count only: on a loaded machine a step can outlast REPORT_EVERY_S
    monkeypatch.setattr("training.stats.REPORT_EVERY_S", float("inf"))
    reporter = Reporter(100, tmp_path / "stats.jsonl", reports.append, trainer.measurements)
    reads = _Reads(monkeypatch)
    for step in range(1, REPORT_EVERY_STEPS):
        reporter.add(step, trainer.step())
    assert reads.count == 0 and reports == []
    reporter.add(REPORT_EVERY_STEPS, trainer.step())
    assert reads.count > 0 and [r.step for r in reports] == [REPORT_EVERY_STEPS]
    reporter.close()


def test_ada_reads_its_signal_once_per_interval(data, monkeypatch):
    accel = Acceleration(fused_adam=True)
    trainer = Trainer(TrainConfig(**TINY), data, torch.device("cpu"), accel)  # cgan: ADA on
    assert trainer.config.ada_target is not None
    reads = _Reads(monkeypatch)
    updates = 0
    for _ in range(4):
        trainer.step()
        updates += trainer.config.n_critic
    assert reads.count == updates // ADA_INTERVAL
