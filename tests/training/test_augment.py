import pytest
import torch

from training.augment import (
    ADA_INTERVAL,
    AdaptiveAugment,
    _cutout,
    _translation,
    ada_adjust,
    diff_augment,
)


def test_no_ops_is_identity():
    x = torch.randn(4, 3, 16, 16)
    assert torch.equal(diff_augment(x, []), x)


@pytest.mark.parametrize(
    "ops", [["translation"], ["cutout"], ["color"], ["translation", "cutout", "color"]]
)
def test_ops_keep_shape_and_pass_gradients(ops):
    torch.manual_seed(0)
    x = torch.rand(8, 3, 12, 12, requires_grad=True)
    y = diff_augment(x, ops)
    assert y.shape == x.shape and not torch.equal(y, x)
    y.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_translation_shifts_whole_images():
    torch.manual_seed(0)
    x = torch.zeros(256, 1, 16, 16)
    x[:, :, 7:9, 7:9] = 1.0  # a bright 2x2 dot in the middle
    y = diff_augment(x, ["translation"])
    assert torch.equal(y.sum(dim=(1, 2, 3)), x.sum(dim=(1, 2, 3))), "the dot stays whole"
    moved = (y != x).flatten(1).any(dim=1)
    assert 0 < moved.sum() < 256, "each image draws its own shift, zero included"


def test_cutout_erases_a_square_per_image():
    torch.manual_seed(0)
    y = diff_augment(torch.ones(16, 1, 16, 16), ["cutout"])
    erased = (y == 0).flatten(1).sum(dim=1)
    assert (erased > 0).all() and (erased <= 8 * 8).all()


def test_p_zero_leaves_images_untouched():
    x = torch.rand(8, 1, 12, 12)
    assert torch.equal(diff_augment(x, ["translation", "cutout", "color"], p=0.0), x)


def test_p_one_is_the_augmentation_of_every_image():
    x = torch.rand(8, 3, 12, 12)
    torch.manual_seed(0)
    by_hand = _cutout(_translation(x))  # the ops in their fixed order, nothing else drawn
    torch.manual_seed(0)
    assert torch.equal(diff_augment(x, ["cutout", "translation"], p=1.0), by_hand)
    torch.manual_seed(0)
    assert torch.equal(diff_augment(x, ["cutout", "translation"]), by_hand), "p=1 by default"


def test_intermediate_p_augments_that_share_of_images_and_passes_gradients():
    torch.manual_seed(0)
    x = torch.ones(4000, 1, 8, 8, requires_grad=True)
    y = diff_augment(x, ["cutout"], p=0.3)  # cutout erases pixels in every image it touches
    augmented = (y != 1).flatten(1).any(dim=1)
    assert augmented.float().mean().item() == pytest.approx(0.3, abs=0.03)  # ~4 s.e.
    assert torch.equal(y[~augmented], x[~augmented]), "the others are left as they are"
    y.sum().backward()
    assert (x.grad.flatten(1).sum(dim=1) > 0).all(), "gradients reach every image"


@pytest.mark.parametrize(
    "p, rt, expected",
    [
        (0.5, 0.9, 0.6),  # overconfident on reals: augment more
        (0.5, 0.2, 0.4),  # not overfitting: augment less
        (0.5, 0.6, 0.5),  # on target: stay
        (0.95, 1.0, 1.0),  # clamped to [0, 1]
        (0.05, -1.0, 0.0),
    ],
)
def test_ada_adjust_moves_p_towards_the_target_signal(p, rt, expected):
    # 4 critic updates of 25 real images with kimg 1: p moves by 100 / 1000 = 0.1
    assert ada_adjust(p, rt, target=0.6, images=100, kimg=1.0) == pytest.approx(expected)


def test_adaptive_augment_adjusts_every_interval_from_the_mean_sign():
    ada = AdaptiveAugment(p=0.5, target=0.6, kimg=1.0)
    for update in range(ADA_INTERVAL - 1):
        ada.observe(torch.tensor(1.0 if update % 2 else 0.5), images=25)
        assert ada.p == 0.5, "p only moves once per interval"
    ada.observe(torch.tensor(1.0), images=25)  # r_t = (0.5 + 1 + 0.5 + 1) / 4 = 0.75 > 0.6
    assert ada.p == pytest.approx(0.6)
    for _ in range(ADA_INTERVAL):
        ada.observe(torch.tensor(-0.2), images=25)
    assert ada.p == pytest.approx(0.5)
    fixed = AdaptiveAugment(p=0.5, target=None, kimg=1.0)
    for _ in range(2 * ADA_INTERVAL):
        fixed.observe(torch.tensor(1.0), images=25)
    assert fixed.p == 0.5, "without a target p stays fixed"


def test_adaptive_augment_state_round_trips_mid_interval():
    ada = AdaptiveAugment(p=0.5, target=0.6, kimg=1.0)
    for _ in range(ADA_INTERVAL + 2):
        ada.observe(torch.tensor(1.0), images=25)
    resumed = AdaptiveAugment(p=1.0, target=0.6, kimg=1.0)
    resumed.load_state_dict(ada.state_dict())
    for run in (ada, resumed):
        for _ in range(2):
            run.observe(torch.tensor(1.0), images=25)
    assert resumed.p == ada.p == pytest.approx(0.7)
