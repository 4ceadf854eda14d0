"""GAN objectives with an auxiliary classifier: WAC-GAN-GP and AC-GAN."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from models.networks import Discriminator
from training.augment import diff_augment

Stats = dict[str, torch.Tensor]


@dataclass(frozen=True)
class GanLoss:
    """Critic and generator losses of one method; the critic sees every image DiffAugmented."""

    method: str  # "wacgan-gp" (Wasserstein) or "acgan" (non-saturating BCE)
    gp_weight: float  # gradient penalty on real/fake interpolates, 0 = off
    aux_weight: float  # weight of the auxiliary classifier cross-entropy
    augment: Sequence[str]  # DiffAugment ops

    def critic(
        self,
        critic: Discriminator,
        real: torch.Tensor,
        real_labels: torch.Tensor,
        fake: torch.Tensor,
        fake_labels: torch.Tensor,
    ) -> tuple[torch.Tensor, Stats]:
        """Loss to minimise in a critic step, and detached stats to log."""
        real = diff_augment(real, self.augment)
        fake = diff_augment(fake.detach(), self.augment)  # no generator gradients here
        # Separate calls: the critic's minibatch-stddev must not mix real and fake samples.
        adv_real, logits_real = critic(real)  # (B,), (B, K)
        adv_fake, logits_fake = critic(fake)
        aux = F.cross_entropy(logits_real, real_labels)
        if self.method == "wacgan-gp":
            adv_loss = adv_fake.mean() - adv_real.mean()
            stats = {"wdist": -adv_loss.detach()}
        else:  # Odena et al. also train the classifier on fakes
            adv_loss = F.softplus(-adv_real).mean() + F.softplus(adv_fake).mean()
            aux = aux + F.cross_entropy(logits_fake, fake_labels)
            stats = {}
        loss = adv_loss + self.aux_weight * aux
        if self.gp_weight > 0:
            penalty, grad_norm = gradient_penalty(critic, real, fake)
            loss = loss + self.gp_weight * penalty
            stats |= {"gp": penalty.detach(), "grad_norm": grad_norm}
        return loss, stats | {"d_loss": loss.detach(), "d_aux": aux.detach()}

    def generator(
        self, critic: Discriminator, fake: torch.Tensor, fake_labels: torch.Tensor
    ) -> tuple[torch.Tensor, Stats]:
        """Loss to minimise in a generator step, and detached stats to log."""
        adv, logits = critic(diff_augment(fake, self.augment))  # (B,), (B, K)
        adv_loss = -adv.mean() if self.method == "wacgan-gp" else F.softplus(-adv).mean()
        aux = F.cross_entropy(logits, fake_labels)
        loss = adv_loss + self.aux_weight * aux
        return loss, {"g_loss": loss.detach(), "g_aux": aux.detach()}


def gradient_penalty(
    critic: Discriminator, real: torch.Tensor, fake: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """WGAN-GP penalty E[(|grad D(x_hat)| - 1)^2] on random real/fake interpolates.

    Returns:
        (penalty, mean gradient norm): the norm is a cheap Lipschitz estimate of the critic.
    """
    eps = torch.rand(real.shape[0], 1, 1, 1, device=real.device)  # (B, 1, 1, 1)
    x_hat = torch.lerp(fake.detach(), real.detach(), eps).requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(x_hat)[0].sum(), x_hat, create_graph=True)
    norm = grad.flatten(1).norm(dim=1)  # (B,)
    return (norm - 1).square().mean(), norm.detach().mean()
