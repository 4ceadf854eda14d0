"""VCAGAN (Jeongik Cho, "Training self-supervised class-conditional GAN with virtual
labels"): a class-conditional GAN trained without labels, whose classifier clusters the data
as it trains (torch).

Networks: a critic D with one adversarial score per virtual class (CAGAN: the score of x for
class c is D(x)·c), a classifier Q on D's hidden layers, and a generator G(z, c) of a one-hot
virtual class c. Algorithm 1 of the paper, with f_d / f_g the non-saturating (bce) or hinge
losses:

    critic:    f_d(D(x)·onehot(argmax Q(x)), D(G(z, c))·c) + λ_cls CE(c, Q(G(z, c)))
               + λ_creg E_x |∇_x Q(x)·onehot(argmax Q(x))|² + λ_r1 / 2 E_x |∇_x D(x)·ĉ(x)|²
    generator: f_g(D(G(z, c))·c)                  (adversarial only: no classification loss)
    P(C) ← decay P(C) + (1 - decay) E_x softmax(Q(x)) on each real batch; fakes draw c ~ P(C)

With `balanced_warmup` N > 0 (the author's later CGPGAN code, not the paper) the first N
critic steps pick each real image's class from its probabilities centred over the batch,
argmax(softmax(Q(x)) - E_batch softmax(Q(x))), which spreads the batch over the classes, and
P(C) stays uniform meanwhile (the centred probabilities average to 1/d_c). With
`creg_images` fake (the same code) the classifier penalty is taken on the fakes instead,
E_z,c |∇_x (1 - softmax(Q(x))·c)²|² at x = G(z, c).

Q(x) is the classifier's logits. Virtual classes with P(C) >= min_class_probability are the
discovered classes (`discovered_classes`). `PointTrainer` trains MLPs on low-dimensional
points (the paper's 2-D mixture); `VirtualLabelTrainer` trains the image networks of
`training.loop` and `write_virtual_model` exports them with the discovered classes.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from models.artifact import ASSIGNMENTS_FILE, Clusters, atomic_write_bytes
from models.images import to_unit_nchw
from models.networks import Discriminator, Generator, PointCritic, PointGenerator
from training.accel import Acceleration
from training.augment import AdaptiveAugment
from training.config import TrainConfig
from training.dataset import StoredDataset
from training.loop import Trainer, TrainingSet

Stats = dict[str, torch.Tensor]
CLUSTER_NAME = "cluster_{:02d}"
ASSIGN_BATCH = 256  # images per classifier forward when assigning the dataset


@dataclass(frozen=True)
class VirtualLabelLoss:
    """The critic's and the generator's losses of Algorithm 1 for a critic that returns
    (adversarial scores (B, d_c), class logits (B, d_c))."""

    adversarial: Literal["bce", "hinge"]
    lambda_cls: float  # CE(c, Q(G(z, c))): Q learns the fakes' virtual classes
    lambda_creg: float  # classifier gradient penalty: larger = smoother Q = fewer clusters
    r1_weight: float  # R1 on real images, r1_weight / 2 * E|grad D(x)·ĉ|^2
    creg_images: Literal["real", "fake"] = "real"  # where the classifier penalty is taken

    def critic(
        self,
        critic: nn.Module,
        real: torch.Tensor,
        fake: torch.Tensor,
        fake_classes: torch.Tensor,
        *,
        balanced: bool = False,
    ) -> tuple[torch.Tensor, Stats, torch.Tensor]:
        """(loss to minimise, detached stats, Q's mean probabilities on `real` (d_c,)).
        `balanced`: pick the real images' classes by `real_image_classes`' centred argmax."""
        creg_fake = self.lambda_creg > 0 and self.creg_images == "fake"
        penalised_real = self.r1_weight > 0 or (self.lambda_creg > 0 and not creg_fake)
        real = real.detach().requires_grad_(penalised_real)
        adv_real, logits_real = critic(real)  # (B, d_c), (B, d_c)
        real_classes = real_image_classes(logits_real.detach(), balanced)  # (B, 1)
        score_real = adv_real.gather(1, real_classes).squeeze(1)  # (B,)
        fake = fake.detach().requires_grad_(creg_fake)
        adv_fake, logits_fake = critic(fake)  # (B, d_c), (B, d_c)
        score_fake = adv_fake.gather(1, fake_classes[:, None]).squeeze(1)  # (B,)
        if self.adversarial == "bce":
            adversarial = F.softplus(-score_real).mean() + F.softplus(score_fake).mean()
        else:
            adversarial = F.relu(1 - score_real).mean() + F.relu(1 + score_fake).mean()
        classification = F.cross_entropy(logits_fake, fake_classes)
        loss = adversarial + self.lambda_cls * classification
        stats: Stats = {
            "d_adv": adversarial.detach(),
            "d_cls": classification.detach(),
            # how many virtual classes the real batch was spread over (1: all in one)
            "real_classes": F.one_hot(real_classes[:, 0], adv_real.shape[1]).amax(0).sum().float(),
        }
        if self.lambda_creg > 0:
            if creg_fake:  # the author's CGPGAN: the gradient of (1 - softmax(Q(G(z, c)))·c)^2
                fake_prob = logits_fake.softmax(dim=1).gather(1, fake_classes[:, None])  # (B, 1)
                creg = squared_gradient_norm((1 - fake_prob).square().squeeze(1), fake)
            else:  # the paper's Algorithm 1: the gradient of Q(x)·ĉ on real images
                top_logit = logits_real.gather(1, real_classes).squeeze(1)  # (B,)
                creg = squared_gradient_norm(top_logit, real)
            loss = loss + self.lambda_creg * creg
            stats["creg"] = creg.detach()
        if self.r1_weight > 0:
            r1 = squared_gradient_norm(score_real, real)
            loss = loss + self.r1_weight / 2 * r1
            stats["r1"] = r1.detach()
        real_probs = logits_real.detach().softmax(dim=1).mean(dim=0)  # (d_c,)
        return loss, stats | {"d_loss": loss.detach()}, real_probs

    def generator(
        self, critic: nn.Module, fake: torch.Tensor, fake_classes: torch.Tensor
    ) -> tuple[torch.Tensor, Stats]:
        """f_g(D(G(z, c))·c): non-saturating for bce, the raw score for hinge."""
        adv_fake, _ = critic(fake)  # (B, d_c)
        score = adv_fake.gather(1, fake_classes[:, None]).squeeze(1)  # (B,)
        loss = F.softplus(-score).mean() if self.adversarial == "bce" else -score.mean()
        return loss, {"g_loss": loss.detach()}

    @classmethod
    def of(cls, config: TrainConfig) -> VirtualLabelLoss:
        adversarial = config.adversarial_loss
        if adversarial == "wasserstein":
            raise ValueError("vcagan takes a bce or hinge adversarial loss")
        return cls(
            adversarial,
            config.lambda_cls,
            config.lambda_creg,
            config.r1_weight,
            config.creg_images,
        )


def real_image_classes(logits: torch.Tensor, balanced: bool = False) -> torch.Tensor:
    """Each real image's virtual class for the adversarial term, (B, 1) from logits (B, d_c).

    Plain (Algorithm 1): argmax Q(x). Balanced (the author's CGPGAN warm-up): the argmax of
    softmax(Q(x)) minus its batch mean, so an image goes to the class it favours more than
    the batch does; when Q starts out preferring one class for every image, the batch is
    still spread over the classes. (The author adds 1/d_c back, which moves no argmax.)
    """
    if not balanced:
        return logits.argmax(dim=1, keepdim=True)
    probs = logits.softmax(dim=1)  # (B, d_c)
    return (probs - probs.mean(dim=0, keepdim=True)).argmax(dim=1, keepdim=True)


def squared_gradient_norm(outputs: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
    """E_i |d outputs_i / d inputs_i|^2 over the batch, differentiable (for penalties)."""
    (grad,) = torch.autograd.grad(outputs.sum(), inputs, create_graph=True)
    return grad.flatten(1).square().sum(dim=1).mean()


class CategoricalPrior:
    """P(C): an exponential moving average of the classifier's probabilities on real images,
    uniform at the start; fake classes are drawn from it. With `warmup` > 0 it stays uniform
    for that many updates first (beyond the paper), so Q learns from fakes of every class
    before the prior can favour the classes Q happens to prefer early. With
    `balanced_warmup` > 0 it also stays uniform that long, and `balancing` tells the critic
    step to assign the real images by centred probabilities meanwhile (the author's CGPGAN:
    P(C) averages the centred probabilities then, whose mean is uniform)."""

    def __init__(
        self,
        num_classes: int,
        decay: float,
        device: torch.device | str = "cpu",
        warmup: int = 0,
        balanced_warmup: int = 0,
    ):
        self.decay, self.warmup, self.balanced_warmup = decay, warmup, balanced_warmup
        self.updates = 0
        self.probs = torch.full((num_classes,), 1 / num_classes, device=device)  # (d_c,)

    @property
    def balancing(self) -> bool:
        """Whether the next critic step is in the balanced warm-up."""
        return self.updates < self.balanced_warmup

    def update(self, batch_probs: torch.Tensor) -> None:
        self.updates += 1
        if self.updates > max(self.warmup, self.balanced_warmup):
            self.probs.lerp_(batch_probs.to(self.probs.dtype), 1 - self.decay)

    @classmethod
    def of(cls, config: TrainConfig, device: torch.device | str = "cpu") -> CategoricalPrior:
        return cls(
            config.max_classes,
            config.prior_decay,
            device,
            warmup=config.prior_warmup,
            balanced_warmup=config.balanced_warmup,
        )

    def sample(self, n: int, rng: torch.Generator | None = None) -> torch.Tensor:
        return torch.multinomial(self.probs, n, replacement=True, generator=rng)  # (n,)

    def entropy(self) -> float:
        """H(P(C)) in nats."""
        p = self.probs.clamp_min(1e-12)
        return float(-(p * p.log()).sum())

    def state_dict(self) -> dict:
        return {"decay": self.decay, "probs": self.probs.cpu().tolist(), "updates": self.updates}

    def load_state_dict(self, state: dict) -> None:
        self.probs.copy_(torch.tensor(state["probs"], dtype=self.probs.dtype))
        self.updates = state.get("updates", 0)  # checkpoints before prior_warmup lack it


def entropy(probs: list[float] | np.ndarray) -> float:
    """H(p) in nats of a probability vector (zeros count nothing)."""
    return float(-sum(p * math.log(p) for p in np.asarray(probs, np.float64).tolist() if p > 0))


def discovered_classes(prior: list[float], min_probability: float) -> list[int]:
    """The virtual classes kept: P(C) >= min_probability, the most probable first (ties: the
    lower index). They become cluster_00, cluster_01, ... in this order."""
    kept = [c for c, p in enumerate(prior) if p >= min_probability]
    return sorted(kept, key=lambda c: (-prior[c], c))


def cluster_names(count: int) -> list[str]:
    return [CLUSTER_NAME.format(i) for i in range(count)]


def virtual_label_step(
    generator: nn.Module,
    critic: nn.Module,
    opt_g: torch.optim.Optimizer,
    opt_d: torch.optim.Optimizer,
    loss: VirtualLabelLoss,
    prior: CategoricalPrior,
    sample_real: Callable[[int], torch.Tensor],
    *,
    z_dim: int,
    batch_size: int,
    n_critic: int,
) -> tuple[Stats, torch.Tensor]:
    """n_critic critic updates (each moving P(C)), then one generator update; returns the
    stats and the last generator batch's (z, c) so callers can keep an EMA in step."""
    device = prior.probs.device
    d_stats: Stats = {}
    for _ in range(n_critic):
        real = sample_real(batch_size)
        with torch.no_grad():
            classes = prior.sample(batch_size)
            fake = generator(torch.randn(batch_size, z_dim, device=device), classes)
        d_loss, d_stats, real_probs = loss.critic(
            critic, real, fake, classes, balanced=prior.balancing
        )
        opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        opt_d.step()
        prior.update(real_probs)
    classes = prior.sample(batch_size)
    fake = generator(torch.randn(batch_size, z_dim, device=device), classes)
    critic.requires_grad_(False)  # no critic weight gradients in the generator step
    g_loss, g_stats = loss.generator(critic, fake, classes)
    opt_g.zero_grad(set_to_none=True)
    g_loss.backward()
    opt_g.step()
    critic.requires_grad_(True)
    return d_stats | g_stats, classes


class PointTrainer:
    """VCAGAN on points (N, dim) with MLP networks: the paper's 2-D experiment."""

    def __init__(self, config: TrainConfig, points: np.ndarray, width: int = 128):
        if config.method != "vcagan":
            raise ValueError(f"PointTrainer trains vcagan, not {config.method}")
        seed = config.seed if config.seed is not None else 0
        torch.manual_seed(seed)
        self.config = config
        self.points = torch.as_tensor(points, dtype=torch.float32)  # (N, dim)
        dim, classes = self.points.shape[1], config.max_classes
        self.generator = PointGenerator(
            z_dim=config.z_dim, num_classes=classes, dim=dim, width=width
        )
        self.critic = PointCritic(num_classes=classes, dim=dim, width=width, adv_outputs=classes)
        betas = (config.beta1, config.beta2)
        self.opt_g = torch.optim.Adam(self.generator.parameters(), config.lr_g, betas=betas)
        self.opt_d = torch.optim.Adam(self.critic.parameters(), config.lr_d, betas=betas)
        self.loss = VirtualLabelLoss.of(config)
        self.prior = CategoricalPrior.of(config)

    def _sample_real(self, n: int) -> torch.Tensor:
        return self.points[torch.randint(len(self.points), (n,))]

    def train(self, steps: int | None = None) -> Stats:
        """Train `steps` generator updates (default: the config's); the last step's stats."""
        stats: Stats = {}
        for _ in range(steps or self.config.steps):
            stats, _ = virtual_label_step(
                self.generator,
                self.critic,
                self.opt_g,
                self.opt_d,
                self.loss,
                self.prior,
                self._sample_real,
                z_dim=self.config.z_dim,
                batch_size=self.config.batch_size,
                n_critic=self.config.n_critic,
            )
        return stats

    @property
    def kept(self) -> list[int]:
        """The discovered virtual classes, most probable first."""
        return discovered_classes(self.prior.probs.tolist(), self.config.min_class_probability)

    def sample(self, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """n points with classes drawn from P(C): (points (n, dim), virtual classes (n,))."""
        rng = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            classes = self.prior.sample(n, rng)
            z = torch.randn(n, self.config.z_dim, generator=rng)
            return self.generator(z, classes).numpy(), classes.numpy()

    def classify(self, points: np.ndarray) -> np.ndarray:
        """Q's virtual class of each point (argmax over all d_c classes)."""
        with torch.no_grad():
            _, logits = self.critic(torch.as_tensor(points, dtype=torch.float32))
        return logits.argmax(dim=1).numpy()


class VirtualLabelTrainer(Trainer):
    """VCAGAN on a stored image set with the project's conv generator and critic (the
    critic's class head is Q; no minibatch-stddev channel, so Q classifies each image on
    its own). The loop drives it as it drives `Trainer`; labels are never read."""

    def __init__(
        self,
        config: TrainConfig,
        data: TrainingSet,
        device: torch.device,
        acceleration: Acceleration | None = None,  # only fused Adam applies to its own step
    ):
        self.config, self.data, self.device = config, data, device
        size, channels = data.images.shape[-1], data.images.shape[1]
        classes = config.max_classes
        self.generator = Generator(
            z_dim=config.z_dim,
            num_classes=classes,
            image_size=size,
            channels=channels,
            width=config.g_channels,
            conditioning=config.g_conditioning,
        )
        self.critic = Discriminator(
            num_classes=classes,
            image_size=size,
            channels=channels,
            width=config.d_channels,
            mbstd_group=0,
            conditioning="aux",
            spectral_norm=config.spectral_norm,
            dropout=config.d_dropout,
            adv_outputs=classes,
        )
        self._place_and_optimise(acceleration)
        self.virtual_loss = VirtualLabelLoss.of(config)
        self.prior = CategoricalPrior.of(config, device)
        self.augment = AdaptiveAugment(1.0, None, config.ada_kimg)  # unused; in checkpoints
        self._fake = None  # Trainer's cached fake batch: vcagan draws fresh fakes every step
        self.steps_done = 0

    def latents(
        self, n: int, rng: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Standard-normal latents and virtual classes drawn from P(C)."""
        z = torch.randn(n, self.config.z_dim, device=self.device, generator=rng)
        return z, self.prior.sample(n, rng)

    def step(self) -> Stats:
        stats, _ = virtual_label_step(
            self.generator,
            self.critic,
            self.opt_g,
            self.opt_d,
            self.virtual_loss,
            self.prior,
            lambda n: self.data.sample(n)[0],
            z_dim=self.config.z_dim,
            batch_size=self.config.batch_size,
            n_critic=self.config.n_critic,
        )
        self.steps_done += 1
        self._update_ema()
        return stats

    def measurements(self) -> dict[str, float]:
        kept = discovered_classes(self.prior.probs.tolist(), self.config.min_class_probability)
        return super().measurements() | {
            "clusters": float(len(kept)),
            "prior_entropy": self.prior.entropy(),
        }

    def checkpoint(self) -> dict:
        return super().checkpoint() | {"prior": self.prior.state_dict()}

    def load_checkpoint(self, checkpoint: dict) -> None:
        super().load_checkpoint(checkpoint)
        self.prior.load_state_dict(checkpoint["prior"])

    def discovered(self) -> list[int]:
        """The virtual classes kept, most probable first."""
        return discovered_classes(self.prior.probs.tolist(), self.config.min_class_probability)

    def assign(self, images: np.ndarray, kept: list[int]) -> np.ndarray:
        """Each uint8 NHWC image's index into `kept`: Q's most probable kept class."""
        critic = self.critic.eval()
        out = []
        with torch.no_grad():
            for start in range(0, len(images), ASSIGN_BATCH):
                batch = to_unit_nchw(np.asarray(images[start : start + ASSIGN_BATCH]))
                _, logits = critic(torch.from_numpy(batch).to(self.device))  # (B, d_c)
                out.append(logits[:, kept].argmax(dim=1).cpu().numpy())
        critic.train()
        return np.concatenate(out).astype(np.int64)


def write_virtual_model(
    trainer: VirtualLabelTrainer, dataset: StoredDataset, out_dir: Path
) -> tuple[list[str], list[int], Clusters]:
    """Write clusters.npy (every dataset image's discovered class) and describe the
    discovered classes: (names, their virtual classes, the manifest's clusters)."""
    prior = trainer.prior.probs.cpu().tolist()
    kept = trainer.discovered()
    if not kept:  # P(C) sums to 1, so the most probable class passes unless d_c is huge
        kept = [int(np.argmax(prior))]
    assignments = trainer.assign(dataset.x, kept)
    buf = io.BytesIO()
    np.save(buf, assignments)
    atomic_write_bytes(out_dir / ASSIGNMENTS_FILE, buf.getvalue())
    clusters = Clusters(
        virtual_classes=kept,
        probabilities=[prior[c] for c in kept],
        prior=prior,
        entropy=entropy(prior),
        min_class_probability=trainer.config.min_class_probability,
        counts=np.bincount(assignments, minlength=len(kept)).tolist(),
    )
    return cluster_names(len(kept)), kept, clusters
