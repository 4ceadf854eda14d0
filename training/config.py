"""Training options and the records the loop reports (pydantic + dataclasses, no torch)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator, model_validator

DIFFAUGMENT_OPS = ("translation", "cutout", "color")

# Defaults that differ from the WAC-GAN-GP ones below: Odena et al.'s AC-GAN trains its
# discriminator once per generator step with Adam betas (0.5, 0.999) and no penalty.
METHOD_DEFAULTS: dict[str, dict[str, Any]] = {
    "acgan": {"n_critic": 1, "gp_weight": 0.0, "beta1": 0.5, "beta2": 0.999},
}


class TrainConfig(BaseModel, extra="forbid"):
    """Options of one GAN training run; defaults train a 28 px, 10-class set in ~10 CPU min."""

    method: Literal["wacgan-gp", "acgan"] = Field(
        "wacgan-gp",
        description="wacgan-gp: Wasserstein critic + gradient penalty + auxiliary "
        "classifier; acgan: non-saturating BCE + auxiliary classifier (Odena et al. 2017)",
    )
    steps: int = Field(3000, ge=1, le=200_000, description="generator updates")
    batch_size: int = Field(64, ge=1, le=1024, description="images per critic/generator step")
    seed: int | None = Field(
        None, ge=0, le=2**31 - 1, description="seeds all randomness; None picks one and records it"
    )
    z_dim: int = Field(64, ge=2, le=512, description="latent size")
    lr_g: float = Field(2e-4, gt=0, le=1, description="generator Adam learning rate")
    lr_d: float = Field(2e-4, gt=0, le=1, description="critic Adam learning rate")
    beta1: float = Field(0.0, ge=0, lt=1, description="Adam beta1 (both networks)")
    beta2: float = Field(0.9, ge=0, lt=1, description="Adam beta2 (both networks)")
    n_critic: int = Field(2, ge=1, le=10, description="critic steps per generator step")
    gp_weight: float = Field(10.0, ge=0, description="gradient penalty weight (0 = off)")
    aux_weight: float = Field(
        0.2, ge=0, description="auxiliary classifier loss weight; high values collapse classes"
    )
    ema_decay: float = Field(
        0.999, ge=0, lt=1, description="EMA of generator weights used for export (0 = off)"
    )
    diffaugment: str = Field(
        "translation,cutout",
        description="comma list of DiffAugment ops applied to real and "
        f"fake images the critic sees, from {', '.join(DIFFAUGMENT_OPS)}; empty = off",
    )
    checkpoint_every: int = Field(500, ge=1, description="steps between checkpoints")
    holdout_fraction: float = Field(
        0.2,
        ge=0,
        le=0.5,
        description="stratified share of each class never shown to the GAN, kept to judge "
        "its samples in the quality report (0 = none: report parts that need it are skipped)",
    )
    report: Literal["none", "fast", "standard"] = Field(
        "standard",
        description="quality report after training: standard (minutes on a CPU), fast "
        "(seconds, coarse), none",
    )
    g_channels: int = Field(32, ge=8, le=512, description="generator width at full resolution")
    d_channels: int = Field(32, ge=8, le=512, description="critic width of its first conv")

    @model_validator(mode="before")
    @classmethod
    def _method_defaults(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("method") in METHOD_DEFAULTS:
            return {**METHOD_DEFAULTS[data["method"]], **data}
        return data

    @field_validator("diffaugment")
    @classmethod
    def _known_ops(cls, value: str) -> str:
        ops = [op.strip() for op in value.split(",") if op.strip()]
        unknown = sorted(set(ops) - set(DIFFAUGMENT_OPS))
        if unknown:
            raise ValueError(f"unknown DiffAugment ops {unknown}; choose from {DIFFAUGMENT_OPS}")
        return ",".join(dict.fromkeys(ops))

    @property
    def diffaugment_ops(self) -> list[str]:
        return self.diffaugment.split(",") if self.diffaugment else []


@dataclass(frozen=True)
class Progress:
    """A progress report: losses are means over the steps since the previous report."""

    step: int
    total_steps: int
    losses: dict[str, float]
    elapsed_s: float
    eta_s: float


@dataclass(frozen=True)
class TrainResult:
    steps_completed: int
    final_losses: dict[str, float]
    elapsed_s: float
    device: str
    seed: int
