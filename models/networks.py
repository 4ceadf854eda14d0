"""Class-conditional generator and critic (AC-GAN head) whose depth follows the image size."""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

MIN_SIZE, MAX_SIZE = 8, 128
MAX_WIDTH_MULT = 8  # widest layer = base width * 8, so 128 px nets stay trainable on a CPU


def upsample_count(size: int) -> int:
    """Fewest 2x upsamplings k such that ceil(size / 2**k) <= 7 (it is then >= 4)."""
    if not MIN_SIZE <= size <= MAX_SIZE:
        raise ValueError(f"image size must be in {MIN_SIZE}..{MAX_SIZE}, got {size}")
    k = 0
    while math.ceil(size / 2**k) > 7:
        k += 1
    return k


class ConditionalBatchNorm2d(nn.Module):
    """Batch norm whose scale and shift are linear in a conditioning vector (BigGAN).

    The vector holds the class embedding and the latent, so z steers every layer rather than
    only the first, which keeps samples of one class from collapsing onto one image.
    """

    def __init__(self, num_features: int, cond_dim: int):
        super().__init__()
        self.norm = nn.BatchNorm2d(num_features, affine=False)
        self.gain = nn.Linear(cond_dim, num_features)
        self.bias = nn.Linear(cond_dim, num_features)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        gain = 1 + self.gain(cond)[:, :, None, None]  # (B, C, 1, 1)
        bias = self.bias(cond)[:, :, None, None]  # (B, C, 1, 1)
        return self.norm(x) * gain + bias  # (B, C, H, W)


class UpBlock(nn.Module):
    """2x transposed-conv upsampling, conditional batch norm, ReLU."""

    def __init__(self, in_channels: int, out_channels: int, cond_dim: int):
        super().__init__()
        self.conv = nn.ConvTranspose2d(
            in_channels, out_channels, 4, stride=2, padding=1, bias=False
        )
        self.norm = ConditionalBatchNorm2d(out_channels, cond_dim)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        return F.relu(self.norm(self.conv(x), cond))  # (B, C_out, 2H, 2W)


class Generator(nn.Module):
    """Maps (latent, class) to an image in [-1, 1], NCHW, of the configured size."""

    def __init__(
        self,
        *,
        z_dim: int,  # latent size
        num_classes: int,  # number of class labels
        image_size: int,  # output height = width, 8..128
        channels: int,  # output channels, 1 or 3
        width: int = 32,  # channels of the last (full-resolution) block; doubles per level up
        embed_dim: int = 32,  # class embedding concatenated to the latent
    ):
        super().__init__()
        self.kwargs = dict(
            z_dim=z_dim,
            num_classes=num_classes,
            image_size=image_size,
            channels=channels,
            width=width,
            embed_dim=embed_dim,
        )
        levels = upsample_count(image_size)
        self.base = math.ceil(image_size / 2**levels)
        widths = [width * min(2 ** (levels - i), MAX_WIDTH_MULT) for i in range(levels + 1)]
        self.image_size = image_size
        self.embed = nn.Embedding(num_classes, embed_dim)
        cond_dim = z_dim + embed_dim
        self.fc = nn.Linear(cond_dim, widths[0] * self.base**2, bias=False)
        self.fc_norm = ConditionalBatchNorm2d(widths[0], cond_dim)
        self.blocks = nn.ModuleList(
            UpBlock(widths[i], widths[i + 1], cond_dim) for i in range(levels)
        )
        self.to_image = nn.Conv2d(widths[-1], channels, 3, padding=1)

    def config(self) -> dict[str, Any]:
        """Constructor kwargs: `Generator(**g.config())` rebuilds the architecture."""
        return dict(self.kwargs)

    def forward(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        cond = torch.cat([z, self.embed(labels)], dim=1)  # (B, z_dim + E)
        h = self.fc(cond).unflatten(1, (-1, self.base, self.base))  # (B, C0, b, b)
        h = F.relu(self.fc_norm(h, cond))
        for block in self.blocks:
            h = block(h, cond)  # (B, C_i, b * 2^i, b * 2^i)
        x = torch.tanh(self.to_image(h))  # (B, C, b * 2^k, b * 2^k)
        return center_crop(x, self.image_size)  # (B, C, S, S)


def center_crop(x: torch.Tensor, size: int) -> torch.Tensor:
    """Crop the middle size x size window of an NCHW batch."""
    top = (x.shape[-2] - size) // 2
    left = (x.shape[-1] - size) // 2
    return x[:, :, top : top + size, left : left + size]


class Discriminator(nn.Module):
    """Strided convs + LeakyReLU, no batch norm (gradient penalty); AC-GAN class head."""

    def __init__(
        self,
        *,
        num_classes: int,  # size of the auxiliary classifier output
        image_size: int,  # input height = width, 8..128
        channels: int,  # input channels, 1 or 3
        width: int = 32,  # channels of the first conv; doubles per downsampling
        mbstd_group: int = 4,  # minibatch-stddev group size (0 = off)
    ):
        super().__init__()
        self.kwargs = dict(
            num_classes=num_classes,
            image_size=image_size,
            channels=channels,
            width=width,
            mbstd_group=mbstd_group,
        )
        self.mbstd_group = mbstd_group
        layers: list[nn.Module] = []
        size, in_ch = image_size, channels
        for i in range(upsample_count(image_size)):
            out_ch = width * min(2**i, MAX_WIDTH_MULT)
            layers += [nn.Conv2d(in_ch, out_ch, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
            size, in_ch = size // 2, out_ch
        self.features = nn.Sequential(*layers)
        in_ch += 1 if mbstd_group else 0
        self.adv_head = nn.Linear(in_ch * size * size, 1)
        self.class_head = nn.Linear(in_ch * size * size, num_classes)

    def config(self) -> dict[str, Any]:
        """Constructor kwargs: `Discriminator(**d.config())` rebuilds the architecture."""
        return dict(self.kwargs)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.features(x)  # (B, C_k, s, s)
        if self.mbstd_group:
            h = minibatch_stddev(h, self.mbstd_group)  # (B, C_k + 1, s, s)
        h = h.flatten(1)  # (B, (C_k + 1) * s * s)
        return self.adv_head(h).squeeze(1), self.class_head(h)  # (B,), (B, K)


def minibatch_stddev(h: torch.Tensor, group_size: int) -> torch.Tensor:
    """Append the feature spread within groups of consecutive samples as one channel (ProGAN).

    A collapsed generator gives batches with little spread, which the critic can then see.
    """
    b, _, height, width = h.shape
    group = math.gcd(b, group_size)
    var = h.unflatten(0, (-1, group)).var(dim=1, unbiased=False)  # (B/g, C, s, s)
    std = (var + 1e-8).sqrt().mean(dim=(1, 2, 3))  # (B/g,)
    std = std.repeat_interleave(group)[:, None, None, None]  # (B, 1, 1, 1)
    return torch.cat([h, std.expand(b, 1, height, width)], dim=1)
