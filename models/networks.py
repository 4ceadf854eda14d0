"""Class-conditional generator and critic whose depth follows the image size.

The critic is conditioned through an auxiliary classifier head (AC-GAN), a projection of a
class embedding on its features (Miyato & Koyama 2018) or one-hot class maps concatenated to
its input (cGAN).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial
from typing import Any, Literal, overload

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import _SpectralNorm

MIN_SIZE, MAX_SIZE = 8, 128
MAX_WIDTH_MULT = 8  # widest layer = base width * 8, so 128 px nets stay trainable on a CPU

GeneratorConditioning = Literal["cbn", "embed"]
CriticConditioning = Literal["aux", "projection", "concat"]


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


class UnconditionalBatchNorm2d(nn.BatchNorm2d):
    """Plain batch norm that takes (and ignores) the conditioning vector, like its sibling."""

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return super().forward(x)


class UpBlock(nn.Module):
    """2x transposed-conv upsampling, (conditional) batch norm, ReLU."""

    def __init__(self, in_channels: int, out_channels: int, make_norm: Callable[[int], nn.Module]):
        super().__init__()
        self.conv = nn.ConvTranspose2d(
            in_channels, out_channels, 4, stride=2, padding=1, bias=False
        )
        self.norm = make_norm(out_channels)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        return F.relu(self.norm(self.conv(x), cond))  # (B, C_out, 2H, 2W)


class Generator(nn.Module):
    """Maps (latent, class) to an image in [-1, 1], NCHW, of the configured size.

    `conditioning="cbn"`: every batch norm's gain and bias are linear in [z, embed(class)];
    `"embed"`: [z, embed(class)] enters the first layer only and the norms are plain.
    """

    def __init__(
        self,
        *,
        z_dim: int,  # latent size
        num_classes: int,  # number of class labels
        image_size: int,  # output height = width, 8..128
        channels: int,  # output channels, 1 or 3
        width: int = 32,  # channels of the last (full-resolution) block; doubles per level up
        embed_dim: int = 32,  # class embedding concatenated to the latent
        conditioning: GeneratorConditioning = "cbn",  # where [z, class] steers the net
    ):
        super().__init__()
        self.kwargs = dict(
            z_dim=z_dim,
            num_classes=num_classes,
            image_size=image_size,
            channels=channels,
            width=width,
            embed_dim=embed_dim,
            conditioning=conditioning,
        )
        levels = upsample_count(image_size)
        self.base = math.ceil(image_size / 2**levels)
        widths = [width * min(2 ** (levels - i), MAX_WIDTH_MULT) for i in range(levels + 1)]
        self.image_size = image_size
        self.embed = nn.Embedding(num_classes, embed_dim)
        cond_dim = z_dim + embed_dim
        if conditioning == "cbn":
            make_norm: Callable[[int], nn.Module] = partial(
                ConditionalBatchNorm2d, cond_dim=cond_dim
            )
        elif conditioning == "embed":
            make_norm = UnconditionalBatchNorm2d
        else:
            raise ValueError(f"generator conditioning must be cbn or embed, got {conditioning!r}")
        self.fc = nn.Linear(cond_dim, widths[0] * self.base**2, bias=False)
        self.fc_norm = make_norm(widths[0])
        self.blocks = nn.ModuleList(
            UpBlock(widths[i], widths[i + 1], make_norm) for i in range(levels)
        )
        self.to_image = nn.Conv2d(widths[-1], channels, 3, padding=1)

    def config(self) -> dict[str, Any]:
        """Constructor kwargs: `Generator(**g.config())` rebuilds the architecture."""
        return dict(self.kwargs)

    def forward(
        self, z: torch.Tensor, labels: torch.Tensor, condition_weight: float = 1.0
    ) -> torch.Tensor:
        """Images (B, C, S, S) in [-1, 1]; `condition_weight` scales the class embedding
        (transitional conditioning: 0 = unconditional, 1 = fully conditional, as exported)."""
        cond = torch.cat([z, condition_weight * self.embed(labels)], dim=1)  # (B, z_dim + E)
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
    """Strided convs + LeakyReLU, no batch norm (gradient penalties are per sample).

    `conditioning` says how the class enters: `aux` = an auxiliary classifier head next to
    the adversarial score (AC-GAN; labels are not an input), `projection` = score +
    <embed(y), h> on the flattened features h (Miyato & Koyama 2018), `concat` = one-hot class
    maps as extra input channels (cGAN). An `aux` critic may carry a twin class head trained
    on fakes (TAC-GAN, Gong et al. 2019); `forward` returns its logits only when asked.
    """

    def __init__(
        self,
        *,
        num_classes: int,  # number of class labels
        image_size: int,  # input height = width, 8..128
        channels: int,  # input channels, 1 or 3
        width: int = 32,  # channels of the first conv; doubles per downsampling
        mbstd_group: int = 4,  # minibatch-stddev group size (0 = off)
        conditioning: CriticConditioning = "aux",  # how the class enters, see above
        spectral_norm: bool = False,  # spectral normalisation of every conv/linear/embedding
        dropout: float = 0.0,  # dropout after every conv block (0 = none)
        twin_head: bool = False,  # TAC-GAN's second class head, for fakes (aux only)
        adv_outputs: int = 1,  # adversarial scores: 1, or one per virtual class (VCAGAN)
    ):
        super().__init__()
        if conditioning not in ("aux", "projection", "concat"):
            raise ValueError(
                f"critic conditioning must be aux, projection or concat, got {conditioning!r}"
            )
        if twin_head and conditioning != "aux":
            raise ValueError("a twin class head needs the aux critic's class head")
        self.kwargs = dict(
            num_classes=num_classes,
            image_size=image_size,
            channels=channels,
            width=width,
            mbstd_group=mbstd_group,
            conditioning=conditioning,
            spectral_norm=spectral_norm,
            dropout=dropout,
            twin_head=twin_head,
        )
        if adv_outputs != 1:  # only then, so older checkpoints' kwargs rebuild unchanged
            self.kwargs["adv_outputs"] = adv_outputs
        self.num_classes, self.conditioning = num_classes, conditioning
        self.mbstd_group = mbstd_group
        norm = with_spectral_norm if spectral_norm else _identity
        layers: list[nn.Module] = []
        size = image_size
        in_ch = channels + (num_classes if conditioning == "concat" else 0)
        for i in range(upsample_count(image_size)):
            out_ch = width * min(2**i, MAX_WIDTH_MULT)
            conv = norm(nn.Conv2d(in_ch, out_ch, 4, stride=2, padding=1))
            layers += [conv, nn.LeakyReLU(0.2)] + ([nn.Dropout(dropout)] if dropout else [])
            size, in_ch = size // 2, out_ch
        self.features = nn.Sequential(*layers)
        in_ch += 1 if mbstd_group else 0
        features = in_ch * size * size
        self.adv_head = norm(nn.Linear(features, adv_outputs))
        if conditioning == "aux":
            self.class_head = norm(nn.Linear(features, num_classes))
        elif conditioning == "projection":
            self.embed = nn.Embedding(num_classes, features)
            # the scale of the adversarial head's weights, not N(0, 1) per coordinate
            nn.init.uniform_(self.embed.weight, -(features**-0.5), features**-0.5)
            self.embed = norm(self.embed)
        # Made last, so the other layers draw the same initial weights with or without it.
        self.twin_head = norm(nn.Linear(features, num_classes)) if twin_head else None

    def config(self) -> dict[str, Any]:
        """Constructor kwargs: `Discriminator(**d.config())` rebuilds the architecture."""
        return dict(self.kwargs)

    @overload
    def forward(
        self,
        x: torch.Tensor,
        labels: torch.Tensor | None = ...,
        condition_weight: float = ...,
        *,
        twin: Literal[False] = ...,
    ) -> tuple[torch.Tensor, torch.Tensor | None]: ...

    @overload
    def forward(
        self,
        x: torch.Tensor,
        labels: torch.Tensor | None = ...,
        condition_weight: float = ...,
        *,
        twin: Literal[True],
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]: ...

    def forward(
        self,
        x: torch.Tensor,
        labels: torch.Tensor | None = None,
        condition_weight: float = 1.0,
        *,
        twin: bool = False,
    ) -> tuple[torch.Tensor, ...]:
        """(adversarial score (B,), class logits (B, K) or None when not `aux`).

        With `adv_outputs` > 1 the score is (B, adv_outputs): one per virtual class (VCAGAN).

        `labels` (B,) are needed by the `projection` and `concat` critics; `aux` ignores them.
        `condition_weight` scales how the label enters the score (the projection term, the
        one-hot maps): transitional conditioning ramps it from 0 (unconditional) to 1.
        `twin=True` appends the twin head's class logits (B, K) from the same features.
        """
        if self.conditioning != "aux" and labels is None:
            raise ValueError(f"a {self.conditioning} critic needs the class labels")
        if twin and self.twin_head is None:
            raise ValueError("this critic has no twin class head (twin_head=False)")
        if self.conditioning == "concat":
            maps = condition_weight * F.one_hot(labels, self.num_classes).to(x.dtype)  # (B, K)
            x = torch.cat([x, maps[:, :, None, None].expand(-1, -1, *x.shape[2:])], dim=1)
        h = self.trunk(x)  # (B, D)
        score = self.adv_head(h)  # (B, adv_outputs)
        score = score.squeeze(1) if score.shape[1] == 1 else score  # (B,) for one output
        if self.conditioning == "aux":
            logits = self.class_head(h)  # (B, K)
            return (score, logits, self.twin_head(h)) if twin else (score, logits)
        if self.conditioning == "projection":
            score = score + condition_weight * (self.embed(labels) * h).sum(dim=1)
        return score, None

    def trunk(self, x: torch.Tensor, group_std: float | None = None) -> torch.Tensor:
        """Flattened features (B, D) the heads read, D = (C_k + 1) * s * s with the
        minibatch-stddev channel.

        `group_std` replaces that channel's value, the spread of each image's group in the
        batch, by a constant, so each image's features depend on that image alone.
        """
        h = self.features(x)  # (B, C_k, s, s)
        if self.mbstd_group:
            if group_std is None:
                h = minibatch_stddev(h, self.mbstd_group)  # (B, C_k + 1, s, s)
            else:
                h = torch.cat([h, torch.full_like(h[:, :1], group_std)], dim=1)
        return h.flatten(1)  # (B, D)

    def real_group_std(self, images: torch.Tensor, batch_size: int) -> float | None:
        """The minibatch-stddev channel's mean over `images` (N, C, S, S) in shuffled full
        batches of the training batch size; None when the critic has no such channel. The
        images are taken as given: in training the critic saw them DiffAugmented, but the
        constant from augmented batches differs by <1 % and gives the same test accuracy
        (benchmarks/results/critic_probe.md), while a batch of one's ~0 costs ~1 point.
        Draws from its own seeded generator."""
        if not self.mbstd_group:
            return None
        order = torch.randperm(len(images), generator=torch.Generator().manual_seed(0))
        total, count = 0.0, 0
        with torch.no_grad():
            for start in range(0, max(len(images) - batch_size, 0) + 1, batch_size):
                batch = images[order[start : start + batch_size].to(images.device)]
                spread = group_stddev(self.features(batch), self.mbstd_group)  # (B/g,)
                total, count = total + float(spread.sum()), count + len(spread)
        return total / count

    def lipschitz_bound(self) -> float:
        """Product of the spectral norms of the layers from the image to the score.

        Convolutions count as their weight reshaped to (out, in * kh * kw), the norm spectral
        normalisation controls; a stride-2 4x4 conv's operator norm can exceed it by up to 2x
        (each input pixel lies in 4 patches), so the product tracks the critic's Lipschitz
        constant rather than bounding it strictly (LeakyReLU is 1-Lipschitz; dropout and the
        minibatch-stddev channel are left out). For a projection critic the head for class y
        is w + embed(y), so it counts as max_y |w + embed(y)|. Reads the weights in eval mode
        so spectral normalisation's power iteration does not advance.
        """
        was_training = self.training
        self.eval()
        try:
            with torch.no_grad():
                bound = 1.0
                for layer in self.features:
                    if isinstance(layer, nn.Conv2d):
                        bound *= largest_singular_value(layer.weight.flatten(1))
                head = self.adv_head.weight  # (1, D)
                if self.conditioning == "projection":
                    head = head + self.embed.weight  # (K, D): row y scores class y
                return bound * float(head.norm(dim=1).max())
        finally:
            self.train(was_training)


class PointGenerator(nn.Module):
    """An MLP generator of points (B, dim) from a latent and a class, for low-dimensional
    data such as VCAGAN's 2-D mixture; the class enters as a one-hot vector beside z."""

    def __init__(self, *, z_dim: int, num_classes: int, dim: int = 2, width: int = 128):
        super().__init__()
        self.kwargs = dict(z_dim=z_dim, num_classes=num_classes, dim=dim, width=width)
        self.num_classes = num_classes
        self.net = nn.Sequential(
            nn.Linear(z_dim + num_classes, width),
            nn.LeakyReLU(0.2),
            nn.Linear(width, width),
            nn.LeakyReLU(0.2),
            nn.Linear(width, width),
            nn.LeakyReLU(0.2),
            nn.Linear(width, dim),
        )

    def config(self) -> dict[str, Any]:
        return dict(self.kwargs)

    def forward(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        one_hot = F.one_hot(labels, self.num_classes).to(z.dtype)  # (B, K)
        return self.net(torch.cat([z, one_hot], dim=1))  # (B, dim)


class PointCritic(nn.Module):
    """An MLP critic of points (B, dim) with VCAGAN's two heads on shared hidden layers:
    `adv_outputs` adversarial scores and `num_classes` class logits (Q)."""

    def __init__(self, *, num_classes: int, dim: int = 2, width: int = 128, adv_outputs: int = 1):
        super().__init__()
        self.kwargs = dict(num_classes=num_classes, dim=dim, width=width, adv_outputs=adv_outputs)
        self.trunk = nn.Sequential(
            nn.Linear(dim, width),
            nn.LeakyReLU(0.2),
            nn.Linear(width, width),
            nn.LeakyReLU(0.2),
            nn.Linear(width, width),
            nn.LeakyReLU(0.2),
        )
        self.adv_head = nn.Linear(width, adv_outputs)
        self.class_head = nn.Linear(width, num_classes)

    def config(self) -> dict[str, Any]:
        return dict(self.kwargs)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.trunk(x)  # (B, width)
        return self.adv_head(h), self.class_head(h)  # (B, adv_outputs), (B, K)


class CriticClassifier(nn.Module):
    """An `aux` critic's trunk and class head as a classifier: images (B, C, S, S) in
    [-1, 1] -> softmax probabilities (B, K), each image classified on its own; with
    `columns`, a softmax over those classes only.

    The minibatch-stddev channel would make an image's probabilities depend on the other
    images of its group, so it is the constant `group_std` (`Discriminator.real_group_std`).
    """

    def __init__(
        self, critic: Discriminator, group_std: float | None, columns: list[int] | None = None
    ):
        super().__init__()
        if critic.conditioning != "aux":
            raise ValueError(f"a {critic.conditioning} critic has no class head")
        self.critic, self.group_std = critic, group_std
        self.columns = columns  # the logits kept, in order (VCAGAN's discovered classes)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        logits = self.critic.class_head(self.critic.trunk(image, self.group_std))  # (B, K)
        if self.columns is not None:
            logits = logits[:, self.columns]  # (B, K_kept)
        return torch.softmax(logits, dim=1)


def largest_singular_value(matrix: torch.Tensor) -> float:
    """Spectral norm of a 2-D tensor, exactly, from the smaller of its two Gram matrices.

    Several times faster than an SVD on a CPU at critic sizes (a (256, 4096) conv: ~10 ms vs
    ~60 ms), and it draws no random numbers, unlike power iteration, so training runs with
    the monitor stay identical to runs without it.
    """
    m = matrix.detach().double()
    gram = m @ m.T if m.shape[0] <= m.shape[1] else m.T @ m  # (min, min)
    return float(torch.linalg.eigvalsh(gram)[-1].clamp_min(0).sqrt())


def _identity(module: nn.Module) -> nn.Module:
    return module


class _FullPrecisionSpectralNorm(_SpectralNorm):
    """torch's spectral normalisation, computed outside any autocast. Under CUDA autocast
    its power iteration's matrix-vector products would run in bf16, and sigma's
    torch.vdot of the fp32 u with a bf16 product fails; the layer itself still autocasts."""

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        with torch.autocast(weight.device.type, enabled=False):
            return super().forward(weight)


def with_spectral_norm(module: nn.Module) -> nn.Module:
    """`torch.nn.utils.parametrizations.spectral_norm(module)` (one power iteration per
    forward; the same state-dict keys and initial draws), in full precision under autocast."""
    weight = module.weight
    parametrize.register_parametrization(
        module, "weight", _FullPrecisionSpectralNorm(weight, n_power_iterations=1, dim=0)
    )
    return module


def minibatch_stddev(h: torch.Tensor, group_size: int) -> torch.Tensor:
    """Append the feature spread within groups of consecutive samples as one channel (ProGAN).

    A collapsed generator gives batches with little spread, which the critic can then see.
    """
    b, _, height, width = h.shape
    group = math.gcd(b, group_size)
    std = group_stddev(h, group_size).repeat_interleave(group)[:, None, None, None]  # (B, 1, 1, 1)
    return torch.cat([h, std.expand(b, 1, height, width)], dim=1)


def group_stddev(h: torch.Tensor, group_size: int) -> torch.Tensor:
    """Mean feature standard deviation within each group of consecutive samples; (B/g,)."""
    group = math.gcd(h.shape[0], group_size)
    var = h.unflatten(0, (-1, group)).var(dim=1, unbiased=False)  # (B/g, C, s, s)
    return (var + 1e-8).sqrt().mean(dim=(1, 2, 3))  # (B/g,)
