"""Latent sampling with the truncation trick (numpy only, so the API can sample without torch)."""

from __future__ import annotations

from typing import Literal

import numpy as np

TruncationMode = Literal["clamp", "resample"]

# Resampling keeps a component with probability ~0.8 t for small t, so its cost grows as 1/t:
# below this threshold use clamp. MAX_RESAMPLE_ROUNDS bounds the redraws all the same.
MIN_RESAMPLE_TRUNCATION = 0.05
MAX_RESAMPLE_ROUNDS = 1000


def truncate_latents(
    z: np.ndarray,
    tau: float | None,
    mode: TruncationMode = "clamp",
    *,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """Pull latent components into [-tau, tau]; a smaller tau trades variety for fidelity.

    Args:
        z: standard-normal latents, any shape.
        tau: threshold > 0, or None for no truncation (z is returned unchanged).
        mode: "clamp" gives sign(z) * min(|z|, tau) (WAC-GAN-GPT); "resample" redraws
            every component with |z| > tau until it lands inside (BigGAN); it needs
            tau >= MIN_RESAMPLE_TRUNCATION.
        rng: source of the redraws; required for mode="resample".

    Raises:
        ValueError: a bad tau or mode; resampling still outside after MAX_RESAMPLE_ROUNDS.
    """
    check_truncation(tau, mode)
    if tau is None:
        return z
    if mode == "clamp":
        return np.clip(z, -tau, tau).astype(z.dtype, copy=False)
    if rng is None:
        raise ValueError("mode='resample' needs an rng")
    z = z.copy()
    outside = np.abs(z) > tau
    for _ in range(MAX_RESAMPLE_ROUNDS):
        if not outside.any():
            return z
        z[outside] = rng.standard_normal(int(outside.sum()), dtype=np.float32)
        outside = np.abs(z) > tau
    raise ValueError(f"resampling left components outside {tau} after many rounds")


def check_truncation(tau: float | None, mode: str) -> None:
    """Raise ValueError, saying what to change, unless (tau, mode) can be drawn."""
    if mode not in ("clamp", "resample"):
        raise ValueError(f"unknown truncation mode {mode!r}; expected 'clamp' or 'resample'")
    if tau is None:
        return
    if not tau > 0:
        raise ValueError(f"truncation must be > 0, got {tau}")
    if mode == "resample" and tau < MIN_RESAMPLE_TRUNCATION:
        raise ValueError(
            f"resample needs truncation >= {MIN_RESAMPLE_TRUNCATION} (got {tau}): "
            "redrawing costs ~1/t; use mode clamp for smaller thresholds"
        )


def sample_latents(
    rng: np.random.Generator,
    n: int,
    z_dim: int,
    *,
    truncation: float | None = None,
    mode: TruncationMode = "clamp",
) -> np.ndarray:
    """Draw n standard-normal latents, optionally truncated; float32 (n, z_dim).

    The same rng state always gives the same latents.
    """
    z = rng.standard_normal((n, z_dim), dtype=np.float32)
    return truncate_latents(z, truncation, mode, rng=rng)
