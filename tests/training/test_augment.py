import pytest
import torch

from training.augment import diff_augment


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
