"""DiffAugment (Zhao et al. 2020): differentiable augmentations applied to every image the
critic sees, real and fake, in both critic and generator steps, so the critic cannot memorise
a small training set while the generator still learns the un-augmented distribution."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

TRANSLATION_RATIO = 0.125  # shift up to 1/8 of the image size
CUTOUT_RATIO = 0.5  # erase a square of half the image size


def diff_augment(x: torch.Tensor, ops: Sequence[str]) -> torch.Tensor:
    """Apply the named ops ("color", "translation", "cutout") to a (B, C, H, W) batch.

    Ops run in that fixed order whatever the order of `ops`; each image draws its own random
    parameters; gradients flow back to x.
    """
    for op, transforms in _OPS.items():
        if op in ops:
            for transform in transforms:
                x = transform(x)
    return x


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
