"""DiffAugment (Zhao et al. 2020): differentiable augmentations applied to the images the
critic sees, real and fake, in both critic and generator steps, so the critic cannot memorise
a small training set while the generator still learns the un-augmented distribution.

Each image is augmented with probability p (1 by default); ADA (Karras et al. 2020) tunes p
from the critic's overfitting signal, see `AdaptiveAugment`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

TRANSLATION_RATIO = 0.125  # shift up to 1/8 of the image size
CUTOUT_RATIO = 0.5  # erase a square of half the image size
ADA_INTERVAL = 4  # critic updates between two adjustments of p (stylegan2-ada's ada_interval)


def diff_augment(x: torch.Tensor, ops: Sequence[str], p: float = 1.0) -> torch.Tensor:
    """Apply the named ops ("color", "translation", "cutout") to a (B, C, H, W) batch.

    Ops run in that fixed order whatever the order of `ops`; each image draws its own random
    parameters; gradients flow back to x. With p < 1 each image is replaced by its augmented
    version with probability p and kept as it is otherwise (p = 1 draws no extra random
    numbers, p = 0 none at all).
    """
    if not ops or p <= 0:
        return x
    augmented = x
    for op, transforms in _OPS.items():
        if op in ops:
            for transform in transforms:
                augmented = transform(augmented)
    if p >= 1:
        return augmented
    chosen = torch.rand(x.shape[0], 1, 1, 1, device=x.device) < p  # (B, 1, 1, 1)
    return torch.where(chosen, augmented, x)


def ada_adjust(p: float, rt: float, target: float, images: int, kimg: float) -> float:
    """ADA's update of p: one step of `images / (kimg * 1000)` towards more augmentation when
    the critic's r_t = E[sign(D(real))] is above `target` (overfitting), towards less when
    below, clamped to [0, 1] (stylegan2-ada's training_loop.py clamps at 0 only)."""
    step = images / (kimg * 1000)
    direction = (rt > target) - (rt < target)
    return min(max(p + direction * step, 0.0), 1.0)


@dataclass
class AdaptiveAugment:
    """The augmentation probability p, tuned by ADA's heuristic when `target` is set.

    The loop feeds it the mean sign of the critic's scores on (augmented) real images after
    every critic update; every `ADA_INTERVAL` updates, r_t is the mean sign over the images
    since the last adjustment and p moves by `ada_adjust`. Without a target p stays fixed.
    """

    p: float  # probability that an image the critic sees is augmented
    target: float | None  # r_t target; None = p stays fixed
    kimg: float  # thousands of real images over which p can move by 1
    _sign_sum: torch.Tensor | float = field(default=0.0, repr=False)  # since last adjustment
    _images: int = field(default=0, repr=False)
    _updates: int = field(default=0, repr=False)

    def observe(self, mean_sign: torch.Tensor, images: int) -> None:
        """Record one critic update: E[sign(D(real))] over its `images` real images."""
        if self.target is None:
            return
        self._sign_sum = self._sign_sum + mean_sign.detach() * images
        self._images += images
        self._updates += 1
        if self._updates % ADA_INTERVAL == 0:
            rt = float(self._sign_sum) / self._images  # one device sync per interval
            self.p = ada_adjust(self.p, rt, self.target, self._images, self.kimg)
            self._sign_sum, self._images = 0.0, 0

    def state_dict(self) -> dict[str, Any]:
        """p and the interval's running sums, for the checkpoint (read back by a resume)."""
        return {
            "p": self.p,
            "sign_sum": float(self._sign_sum),
            "images": self._images,
            "updates": self._updates,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.p, self._sign_sum = float(state["p"]), float(state["sign_sum"])
        self._images, self._updates = int(state["images"]), int(state["updates"])


def _brightness(x: torch.Tensor) -> torch.Tensor:
    shift = torch.rand(x.shape[0], 1, 1, 1, device=x.device) - 0.5  # (B, 1, 1, 1)
    return x + shift


def _saturation(x: torch.Tensor) -> torch.Tensor:
    gray = x.mean(dim=1, keepdim=True)  # (B, 1, H, W); grayscale input is left as is
    scale = torch.rand(x.shape[0], 1, 1, 1, device=x.device) * 2
    return (x - gray) * scale + gray


def _contrast(x: torch.Tensor) -> torch.Tensor:
    mean = x.mean(dim=(1, 2, 3), keepdim=True)  # (B, 1, 1, 1)
    scale = torch.rand(x.shape[0], 1, 1, 1, device=x.device) + 0.5
    return (x - mean) * scale + mean


def _translation(x: torch.Tensor) -> torch.Tensor:
    b, _, h, w = x.shape
    max_dy, max_dx = int(h * TRANSLATION_RATIO + 0.5), int(w * TRANSLATION_RATIO + 0.5)
    dy = torch.randint(-max_dy, max_dy + 1, (b, 1, 1), device=x.device)
    dx = torch.randint(-max_dx, max_dx + 1, (b, 1, 1), device=x.device)
    # Index into a 1-pixel zero border: sources shifted off the image read that border.
    rows = (torch.arange(h, device=x.device)[None, :, None] + dy + 1).clamp(0, h + 1)  # (B,H,1)
    cols = (torch.arange(w, device=x.device)[None, None, :] + dx + 1).clamp(0, w + 1)  # (B,1,W)
    batch = torch.arange(b, device=x.device)[:, None, None]  # (B, 1, 1)
    padded = F.pad(x, (1, 1, 1, 1)).permute(0, 2, 3, 1)  # (B, H+2, W+2, C)
    return padded[batch, rows, cols].permute(0, 3, 1, 2)  # (B, C, H, W)


def _cutout(x: torch.Tensor) -> torch.Tensor:
    b, _, h, w = x.shape
    cut_h, cut_w = int(h * CUTOUT_RATIO + 0.5), int(w * CUTOUT_RATIO + 0.5)
    top = torch.randint(0, h + (1 - cut_h % 2), (b, 1, 1), device=x.device) - cut_h // 2
    left = torch.randint(0, w + (1 - cut_w % 2), (b, 1, 1), device=x.device) - cut_w // 2
    rows = (torch.arange(cut_h, device=x.device)[None, :, None] + top).clamp(0, h - 1)
    cols = (torch.arange(cut_w, device=x.device)[None, None, :] + left).clamp(0, w - 1)
    batch = torch.arange(b, device=x.device)[:, None, None]
    mask = torch.ones(b, h, w, dtype=x.dtype, device=x.device)
    mask[batch, rows, cols] = 0
    return x * mask.unsqueeze(1)  # (B, C, H, W)


_OPS: dict[str, list[Callable[[torch.Tensor], torch.Tensor]]] = {
    "color": [_brightness, _saturation, _contrast],
    "translation": [_translation],
    "cutout": [_cutout],
}
