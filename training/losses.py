"""GAN objectives: WAC-GAN-GP, AC-GAN (optionally TAC-GAN) and the label-conditioned cGAN,
with their penalties."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

from models.networks import Discriminator
from training.accel import full_precision
from training.augment import diff_augment

Stats = dict[str, torch.Tensor]
MODE_SEEKING_EPS = 1e-5  # MSGAN's
AdversarialLoss = Literal["wasserstein", "bce", "hinge"]


@dataclass(frozen=True)
class GanLoss:
    """Critic and generator losses of one method; the critic sees every image DiffAugmented."""

    adversarial: AdversarialLoss  # wasserstein, non-saturating bce, or hinge
    gp_weight: float  # gradient penalty on real/fake interpolates, 0 = off
    aux_weight: float  # weight of the auxiliary classifier cross-entropy (aux critics)
    augment: Sequence[str]  # DiffAugment ops
    aux_on_fakes: bool = False  # AC-GAN (Odena et al.) also trains the classifier on fakes
    label_smoothing: float = 0.0  # bce only: real images' target is 1 - label_smoothing
    r1_weight: float = 0.0  # R1 penalty r1_weight / 2 * E|grad D(real)|^2, 0 = off
    mode_seeking: float = 0.0  # weight of the MSGAN term on paired same-class fakes, 0 = off
    aux_twin: bool = False  # TAC-GAN: the critic's twin head learns the fakes' classes
    ada_signal: bool = False  # also return ADA's r_t = E[sign(D(real))] as stats["ada_rt"]
    aux_augment: bool = True  # the class head learns from DiffAugmented images (else as given)

    def critic(
        self,
        critic: Discriminator,
        real: torch.Tensor,
        real_labels: torch.Tensor,
        fake: torch.Tensor,
        fake_labels: torch.Tensor,
        condition_weight: float = 1.0,
        augment_p: float = 1.0,
        aux_fakes: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, Stats]:
        """Loss to minimise in a critic step, and detached stats to log.

        `condition_weight` (transitional conditioning) scales the label's part: the critic's
        label input and the auxiliary classifier's loss. `augment_p` is the probability
        that each image is DiffAugmented. `aux_fakes` (images, labels) are fakes whose
        class-head cross-entropy trains the critic instead of `fake`'s (WAC-GAN-GPT's
        truncated fakes): added for wacgan-gp, in place of the `aux_on_fakes` term for acgan.
        """
        plain_real = real
        real = diff_augment(real, self.augment, augment_p)
        fake = diff_augment(fake.detach(), self.augment, augment_p)  # no generator gradients
        if self.r1_weight > 0:
            real = real.detach().requires_grad_(True)
        # Separate calls: the critic's minibatch-stddev must not mix real and fake samples.
        adv_real, logits_real = fp32(*critic(real, real_labels, condition_weight))  # (B,), (B, K)
        twin_fake = None  # TAC-GAN: the twin head's logits on the fakes
        if self.aux_twin:
            adv_fake, logits_fake, twin_fake = fp32(
                *critic(fake, fake_labels, condition_weight, twin=True)
            )
        else:
            adv_fake, logits_fake = fp32(*critic(fake, fake_labels, condition_weight))
        stats: Stats = {}
        if self.ada_signal:
            stats["ada_rt"] = adv_real.detach().sign().mean()
        aux_stats: Stats = {}
        if self.adversarial == "wasserstein":
            loss = adv_fake.mean() - adv_real.mean()
            stats["wdist"] = -loss.detach()
        elif self.adversarial == "bce":
            loss = F.softplus(-adv_real).mean() + F.softplus(adv_fake).mean()
            if self.label_smoothing:  # BCE(x, 1 - s) = softplus(-x) + s * x
                loss = loss + self.label_smoothing * adv_real.mean()
        else:
            loss = F.relu(1 - adv_real).mean() + F.relu(1 + adv_fake).mean()
        if logits_real is not None:
            if not self.aux_augment:  # the class head reads the real images as they are
                logits_real = fp32(*critic(plain_real, real_labels, condition_weight))[1]
            aux = F.cross_entropy(logits_real, real_labels)
            if aux_fakes is not None:
                truncated = self._class_head_loss(critic, *aux_fakes, condition_weight, augment_p)
                aux = aux + truncated
                aux_stats["d_aux_truncated"] = truncated.detach()
            elif self.aux_on_fakes:
                aux = aux + F.cross_entropy(logits_fake, fake_labels)
            aux_stats["d_aux"] = aux.detach()
            if twin_fake is not None:
                twin = F.cross_entropy(twin_fake, fake_labels)
                aux = aux + twin
                aux_stats["d_twin"] = twin.detach()
            loss = loss + condition_weight * self.aux_weight * aux
        if self.gp_weight > 0:
            with full_precision(real.device):  # the double backward is not bf16-stable
                penalty, grad_norm = gradient_penalty(
                    critic, real.float(), fake.float(), real_labels, condition_weight
                )
            loss = loss + self.gp_weight * penalty
            stats |= {"gp": penalty.detach(), "grad_norm": grad_norm}
        if self.r1_weight > 0:
            penalty = r1_penalty(adv_real, real)
            loss = loss + self.r1_weight / 2 * penalty
            stats["r1"] = penalty.detach()
        return loss, stats | {"d_loss": loss.detach()} | aux_stats

    def _class_head_loss(
        self,
        critic: Discriminator,
        images: torch.Tensor,
        labels: torch.Tensor,
        condition_weight: float,
        augment_p: float,
    ) -> torch.Tensor:
        """Cross-entropy of the critic's class head on fakes of its own batch, DiffAugmented
        unless `aux_augment` is off."""
        images = images.detach()
        if self.aux_augment:
            images = diff_augment(images, self.augment, augment_p)
        _, logits = fp32(*critic(images, labels, condition_weight))  # (B,), (B, K)
        if logits is None:
            raise ValueError("class-head fakes need a critic with a class head (aux)")
        return F.cross_entropy(logits, labels)

    def generator(
        self,
        critic: Discriminator,
        fake: torch.Tensor,
        fake_labels: torch.Tensor,
        latents: torch.Tensor | None = None,
        condition_weight: float = 1.0,
        augment_p: float = 1.0,
    ) -> tuple[torch.Tensor, Stats]:
        """Loss to minimise in a generator step, and detached stats to log.

        With mode seeking on, `latents` are the fakes' latents and the batch's second half
        repeats the first half's labels (see `mode_seeking_penalty`). With `aux_twin` the
        auxiliary term is CE(class head) - CE(twin head) (TAC-GAN).
        """
        augmented = diff_augment(fake, self.augment, augment_p)
        twin_logits = None
        if self.aux_twin:
            adv, logits, twin_logits = fp32(
                *critic(augmented, fake_labels, condition_weight, twin=True)
            )
        else:
            adv, logits = fp32(*critic(augmented, fake_labels, condition_weight))  # (B,), (B, K)
        # non-saturating for bce; hinge generators maximise the raw score like Wasserstein
        loss = F.softplus(-adv).mean() if self.adversarial == "bce" else -adv.mean()
        stats: Stats = {}
        if logits is not None:
            aux = F.cross_entropy(logits, fake_labels)
            stats["g_aux"] = aux.detach()
            if twin_logits is not None:
                twin = F.cross_entropy(twin_logits, fake_labels)
                aux = aux - twin
                stats["g_twin"] = twin.detach()
            loss = loss + condition_weight * self.aux_weight * aux
        if self.mode_seeking > 0:
            if latents is None:
                raise ValueError("mode seeking needs the fakes' latents")
            pairs = 2 * (len(fake) // 2)  # an odd batch's last image pairs with none
            penalty = mode_seeking_penalty(fake[:pairs].float(), latents[:pairs])
            loss = loss + self.mode_seeking * penalty
            stats["mode_seeking"] = penalty.detach()
        return loss, {"g_loss": loss.detach()} | stats


def fp32(*outputs: torch.Tensor | None) -> tuple:
    """A critic's outputs as float32 (bf16 under autocast; the loss reduces them in fp32);
    `.float()` returns an fp32 tensor itself, so fp32 training is unchanged."""
    return tuple(None if t is None else t.float() for t in outputs)


def gradient_penalty(
    critic: Discriminator,
    real: torch.Tensor,
    fake: torch.Tensor,
    labels: torch.Tensor,
    condition_weight: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """WGAN-GP penalty E[(|grad D(x_hat)| - 1)^2] on random real/fake interpolates.

    A label-conditioned critic scores each interpolate with the real image's label.

    Returns:
        (penalty, mean gradient norm): the norm is a cheap Lipschitz estimate of the critic.
    """
    eps = torch.rand(real.shape[0], 1, 1, 1, device=real.device)  # (B, 1, 1, 1)
    x_hat = torch.lerp(fake.detach(), real.detach(), eps).requires_grad_(True)
    score = critic(x_hat, labels, condition_weight)[0]  # (B,)
    (grad,) = torch.autograd.grad(score.sum(), x_hat, create_graph=True)
    norm = grad.flatten(1).norm(dim=1)  # (B,)
    return (norm - 1).square().mean(), norm.detach().mean()


def r1_penalty(adv_real: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """E|grad_x D(x)|^2 on the (augmented) real images x (Mescheder et al. 2018)."""
    (grad,) = torch.autograd.grad(adv_real.sum(), real, create_graph=True)
    return grad.flatten(1).square().sum(dim=1).mean()


def mode_seeking_penalty(images: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
    """MSGAN's term (Mao et al. 2019): 1 / (mean |G(z1) - G(z2)| / mean |z1 - z2| + eps).

    The batch is two halves with the same labels row by row, so each pair is one class
    drawn from two latents. A generator that ignores its latent makes the image distance,
    and so the ratio, small: the penalty grows as it collapses.

    Args:
        images: (2P, C, H, W) generated from `latents` (2P, z_dim).
    """
    if len(images) < 2 or len(images) % 2:
        raise ValueError(f"mode seeking needs an even batch of pairs, got {len(images)}")
    x1, x2 = images.chunk(2)
    z1, z2 = latents.chunk(2)
    ratio = (x1 - x2).abs().mean() / (z1 - z2).abs().mean()
    return 1 / (ratio + MODE_SEEKING_EPS)
