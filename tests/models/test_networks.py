import pytest
import torch

from models.networks import ConditionalBatchNorm2d, Discriminator, Generator, upsample_count


@pytest.mark.parametrize("size", [8, 16, 27, 28, 100, 128])
@pytest.mark.parametrize("channels", [1, 3])
def test_shapes_for_any_size(size, channels):
    g = Generator(z_dim=8, num_classes=4, image_size=size, channels=channels, width=8)
    d = Discriminator(num_classes=4, image_size=size, channels=channels, width=8)
    labels = torch.tensor([0, 3])
    x = g(torch.randn(2, 8), labels)
    assert x.shape == (2, channels, size, size)
    assert x.min() >= -1 and x.max() <= 1
    adv, logits = d(x)
    assert adv.shape == (2,) and logits.shape == (2, 4)


@pytest.mark.parametrize("size", [8, 9, 15, 27, 28, 64, 100, 127, 128])
def test_base_resolution_between_4_and_7(size):
    k = upsample_count(size)
    base = -(-size // 2**k)
    assert 4 <= base <= 7 and base * 2**k >= size


@pytest.mark.parametrize("size", [7, 129])
def test_sizes_outside_range_rejected(size):
    with pytest.raises(ValueError, match="8..128"):
        Generator(z_dim=8, num_classes=2, image_size=size, channels=1)


def test_config_rebuilds_same_architecture():
    g = Generator(z_dim=16, num_classes=3, image_size=27, channels=3, width=8)
    d = Discriminator(num_classes=3, image_size=27, channels=3, width=8)
    Generator(**g.config()).load_state_dict(g.state_dict())
    Discriminator(**d.config()).load_state_dict(d.state_dict())


def test_generator_output_depends_on_class():
    torch.manual_seed(0)
    g = Generator(z_dim=8, num_classes=3, image_size=16, channels=1, width=8).eval()
    with torch.no_grad():
        for p in g.parameters():  # non-trivial class embeddings and norm gains
            p.normal_(0, 0.5)
        z = torch.randn(1, 8).repeat(3, 1)
        x = g(z, torch.arange(3))
    assert (x[0] - x[1]).abs().max() > 1e-3 and (x[1] - x[2]).abs().max() > 1e-3


def test_critic_has_no_batch_norm():
    d = Discriminator(num_classes=3, image_size=32, channels=3)
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in d.modules())


@pytest.mark.parametrize("size", [8, 27, 128])
@pytest.mark.parametrize("conditioning", ["projection", "concat"])
def test_label_conditioned_critics(size, conditioning):
    d = Discriminator(
        num_classes=4, image_size=size, channels=3, width=8, conditioning=conditioning
    )
    x = torch.randn(4, 3, size, size)
    adv, logits = d(x, torch.tensor([0, 1, 2, 3]))
    assert adv.shape == (4,) and logits is None
    other, _ = d(x, torch.tensor([1, 2, 3, 0]))
    assert (adv - other).abs().max() > 0, "the score depends on the label"
    with pytest.raises(ValueError, match="needs the class labels"):
        d(x)


def test_critic_dropout_only_in_training_mode():
    torch.manual_seed(0)
    d = Discriminator(num_classes=3, image_size=16, channels=1, width=8, dropout=0.5)
    x = torch.randn(4, 1, 16, 16)
    assert not torch.equal(d(x)[0], d(x)[0])
    d.eval()
    assert torch.equal(d(x)[0], d(x)[0])


def test_embed_generator_conditions_the_input_only():
    torch.manual_seed(0)
    g = Generator(
        z_dim=8, num_classes=3, image_size=16, channels=1, width=8, conditioning="embed"
    ).eval()
    assert not any(isinstance(m, ConditionalBatchNorm2d) for m in g.modules())
    with torch.no_grad():
        z = torch.randn(1, 8).repeat(3, 1)
        x = g(z, torch.arange(3))
    assert x.shape == (3, 1, 16, 16) and (x[0] - x[1]).abs().max() > 1e-4
    Generator(**g.config()).load_state_dict(g.state_dict())
