"""The training loop: WAC-GAN-GP / AC-GAN / cGAN on a stored dataset, writing a model directory."""

from __future__ import annotations

import copy
import io
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from models.artifact import CHECKPOINT_FILE, STATS_FILE, Selection, atomic_write_bytes
from models.networks import Discriminator, Generator
from training.accel import Acceleration
from training.augment import AdaptiveAugment
from training.config import UNSUPERVISED_METHODS, TrainConfig
from training.dataset import StoredDataset
from training.errors import TrainingAborted, TrainingInterrupted
from training.eta import estimate_report_seconds
from training.losses import GanLoss, Stats
from training.model_dir import training_device, write_model
from training.results import Progress, TrainResult
from training.selection import BestSoFar, RecallSelector
from training.split import stratified_split
from training.stats import Reporter

STANDING_STATS_BATCHES = 8
CHECKPOINT_FORMAT = "ganaug.checkpoint/2"  # /2 added what resuming needs: RNG, fake batch

log = logging.getLogger("ganaug.training")


@dataclass(frozen=True)
class TrainingSet:
    """The whole dataset on the training device: small sets fit, so no loader is needed."""

    images: torch.Tensor  # (N, C, S, S) float in [-1, 1]
    labels: torch.Tensor  # (N,) int64; zeros for an unlabelled set (vcagan reads none)
    classes: list[str]

    @classmethod
    def load(
        cls, dataset: StoredDataset, device: torch.device, indices: np.ndarray | None = None
    ) -> TrainingSet:
        """The stored dataset, or only its rows `indices` (the training split)."""
        x, y = dataset.x, dataset.y if dataset.labelled else np.zeros(len(dataset), np.int64)
        if indices is not None:
            x, y = x[indices], y[indices]
        images = torch.from_numpy(np.array(x)).to(device)  # copy out of the memory map
        images = images.permute(0, 3, 1, 2).float().div(127.5).sub(1)  # (N, C, S, S)
        labels = torch.from_numpy(y.astype(np.int64)).to(device)
        return cls(images.contiguous(memory_format=torch.channels_last), labels, dataset.classes)

    def sample(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.randint(len(self.labels), (n,), device=self.labels.device)
        return self.images[idx], self.labels[idx]


class Trainer:
    """Networks, optimisers and one training step; owns no files."""

    def __init__(
        self,
        config: TrainConfig,
        data: TrainingSet,
        device: torch.device,
        acceleration: Acceleration | None = None,  # None: Acceleration.choose's defaults
    ):
        self.config, self.data, self.device = config, data, device
        size, channels = data.images.shape[-1], data.images.shape[1]
        num_classes = len(data.classes)
        self.generator = Generator(
            z_dim=config.z_dim,
            num_classes=num_classes,
            image_size=size,
            channels=channels,
            width=config.g_channels,
            conditioning=config.g_conditioning,
        )
        self.critic = Discriminator(
            num_classes=num_classes,
            image_size=size,
            channels=channels,
            width=config.d_channels,
            conditioning=config.d_conditioning or "aux",
            spectral_norm=config.spectral_norm,
            dropout=config.d_dropout,
            twin_head=config.aux_twin,
        )
        self._place_and_optimise(acceleration)
        self.loss = GanLoss(
            adversarial=config.adversarial_loss,
            gp_weight=config.gp_weight,
            aux_weight=config.aux_weight,
            augment=config.diffaugment_ops,
            # TAC-GAN's class head models the real images' classes: fakes go to the twin head
            aux_on_fakes=config.method == "acgan" and not config.aux_twin,
            label_smoothing=config.label_smoothing,
            r1_weight=config.r1_weight,
            mode_seeking=config.mode_seeking,
            aux_twin=config.aux_twin,
            ada_signal=config.ada_target is not None,
            aux_augment=config.aux_diffaugment,
        )
        self.augment = AdaptiveAugment(config.augment_p, config.ada_target, config.ada_kimg)
        self.steps_done = 0
        self._fake: tuple[torch.Tensor, torch.Tensor] | None = None

    def _place_and_optimise(self, acceleration: Acceleration | None) -> None:
        """Put the built networks on the device, and make the EMA copy, the optimisers and
        the forwards the step calls (compiled or the networks themselves)."""
        config = self.config
        accel = acceleration or Acceleration.choose(config, self.device)
        # channels_last lets oneDNN (CPU) and cuDNN (tensor cores) use their fast conv kernels
        for net in (self.generator, self.critic):
            net.to(self.device, memory_format=torch.channels_last)
        self.ema = copy.deepcopy(self.generator).eval() if config.ema_decay > 0 else None
        betas = (config.beta1, config.beta2)
        # fused=None is Adam's own default (foreach on CUDA, the plain loop on CPU)
        fused = True if accel.fused_adam else None
        self.opt_g = torch.optim.Adam(
            self.generator.parameters(), config.lr_g, betas=betas, fused=fused
        )
        self.opt_d = torch.optim.Adam(
            self.critic.parameters(), config.lr_d, betas=betas, fused=fused
        )
        self.accel = accel
        self.train_generator = accel.compiled(self.generator, accel.compile_generator)
        self.train_critic = accel.compiled(self.critic, accel.compile_critic)

    def latents(
        self, n: int, rng: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Standard-normal latents and uniform class labels, on the training device, from
        `rng` (default: the global generator that training draws from)."""
        z = torch.randn(n, self.config.z_dim, device=self.device, generator=rng)
        labels = torch.randint(len(self.data.classes), (n,), device=self.device, generator=rng)
        return z, labels

    def paired_latents(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Latents whose second n // 2 rows repeat the first n // 2 rows' labels (mode
        seeking's pairs); an odd batch's last row keeps its own label and pairs with none."""
        z, labels = self.latents(n)
        half = n // 2
        return z, torch.cat([labels[:half], labels[:half], labels[2 * half :]])

    def step(self) -> Stats:
        """n_critic critic updates, one generator update, one EMA update."""
        batch = self.config.batch_size
        weight = self.config.condition_weight(self.steps_done)
        augment_p = self.augment.p  # the p of this step; ADA may move it for the next one
        real_signs = []
        for _ in range(self.config.n_critic):
            real, real_labels = self.data.sample(batch)
            with self.accel.critic_precision(self.device):
                if self._fake is None:
                    with torch.no_grad():
                        z, fake_labels = self.latents(batch)
                        self._fake = (self.train_generator(z, fake_labels, weight), fake_labels)
                loss, d_stats = self.loss.critic(
                    self.train_critic,
                    real,
                    real_labels,
                    *self._fake,
                    condition_weight=weight,
                    augment_p=augment_p,
                    aux_fakes=self._truncated_fakes(batch, weight),
                )
            self.opt_d.zero_grad(set_to_none=True)
            loss.backward()
            self.opt_d.step()
            self._clip_critic_weights()
            self._fake = None
            if "ada_rt" in d_stats:
                real_signs.append(d_stats["ada_rt"])
                self.augment.observe(d_stats["ada_rt"], batch)
        z, fake_labels = (
            self.paired_latents(batch) if self.loss.mode_seeking else self.latents(batch)
        )
        self.critic.requires_grad_(False)  # skip critic weight gradients in the generator step
        with self.accel.generator_precision(self.device):
            fake = self.train_generator(z, fake_labels, weight)
            loss, g_stats = self.loss.generator(
                self.train_critic, fake, fake_labels, z, weight, augment_p
            )
        self.opt_g.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_g.step()
        self.critic.requires_grad_(True)
        # The next critic step reuses this batch (one update stale): saves a generator forward.
        # Kept in fp32 (bf16 under autocast), as a critic step without autocast needs it.
        self._fake = (fake.detach().float(), fake_labels)
        self.steps_done += 1
        self._update_ema()
        stats = d_stats | g_stats | {"condition_weight": torch.tensor(weight)}
        if real_signs:  # ADA: this step's p and r_t over its critic updates
            stats |= {
                "augment_p": torch.tensor(augment_p),
                "ada_rt": torch.stack(real_signs).mean(),
            }
        return stats

    def _truncated_fakes(
        self, n: int, condition_weight: float
    ) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Fakes for the class head from latents clamped to sign(z) * min(|z|, t)
        (WAC-GAN-GPT), when `aux_fake_truncation` is set; None otherwise."""
        t = self.config.aux_fake_truncation
        if t is None:
            return None
        with torch.no_grad():
            z, labels = self.latents(n)
            return self.train_generator(z.clamp(-t, t), labels, condition_weight), labels

    def _clip_critic_weights(self) -> None:
        """WGAN weight clipping (Arjovsky et al. 2017) of every critic parameter, when on."""
        if self.config.weight_clip is None:
            return
        with torch.no_grad():
            for p in self.critic.parameters():
                p.clamp_(-self.config.weight_clip, self.config.weight_clip)

    def measurements(self) -> dict[str, float]:
        """Point measurements logged at every report (not averaged over steps)."""
        return {"lipschitz": self.critic.lipschitz_bound()}

    def _update_ema(self) -> None:
        if self.ema is None:
            return
        # Ramp the decay up so short runs and early checkpoints are not stuck near the init.
        decay = min(self.config.ema_decay, (1 + self.steps_done) / (10 + self.steps_done))
        with torch.no_grad():
            for p_ema, p in zip(self.ema.parameters(), self.generator.parameters(), strict=True):
                p_ema.lerp_(p, 1 - decay)
            for b_ema, b in zip(self.ema.buffers(), self.generator.buffers(), strict=True):
                b_ema.copy_(b)

    @property
    def export_generator(self) -> Generator:
        """The generator to ship: the EMA one when EMA is on."""
        return self.ema if self.ema is not None else self.generator

    def standing_stats(
        self, net: Generator | None = None, rng: torch.Generator | None = None
    ) -> None:
        """Re-estimate a generator's batch-norm statistics from its own outputs (default:
        the exported generator's, from latents of the global generator).

        Running statistics were tracked by the raw generator; EMA weights produce different
        activations (BigGAN's "standing statistics").
        """
        net = net if net is not None else self.export_generator
        norms = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
        for norm in norms:
            norm.reset_running_stats()
            norm.momentum = None  # cumulative average over the batches below
        net.train()
        with torch.no_grad():
            for _ in range(STANDING_STATS_BATCHES):
                net(*self.latents(max(self.config.batch_size, 64), rng))
        for norm in norms:
            norm.momentum = 0.1
        net.eval()

    def checkpoint(self) -> dict:
        """Everything needed to rebuild the networks and resume training."""
        return {
            "format": CHECKPOINT_FORMAT,
            "step": self.steps_done,
            "config": self.config.model_dump(),
            "classes": self.data.classes,
            "generator_kwargs": self.generator.config(),
            "critic_kwargs": self.critic.config(),
            "generator": self.generator.state_dict(),
            "critic": self.critic.state_dict(),
            "generator_ema": self.ema.state_dict() if self.ema is not None else None,
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "augment": self.augment.state_dict(),
            # what makes a resumed run continue as if it had never stopped
            "rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if self.device.type == "cuda" else None,
            "fake": self._fake,
        }

    def load_checkpoint(self, checkpoint: dict) -> None:
        """Continue from `checkpoint` (see `checkpoint`): weights, optimisers, ADA, RNG."""
        self.generator.load_state_dict(checkpoint["generator"])
        self.critic.load_state_dict(checkpoint["critic"])
        if self.ema is not None:
            self.ema.load_state_dict(checkpoint["generator_ema"])
        self.opt_g.load_state_dict(checkpoint["opt_g"])
        self.opt_d.load_state_dict(checkpoint["opt_d"])
        self.augment.load_state_dict(checkpoint["augment"])
        self.steps_done = checkpoint["step"]
        fake = checkpoint["fake"]
        self._fake = None if fake is None else (fake[0].to(self.device), fake[1].to(self.device))
        torch.set_rng_state(checkpoint["rng"])
        if checkpoint["cuda_rng"] is not None and self.device.type == "cuda":
            torch.cuda.set_rng_state_all(checkpoint["cuda_rng"])


def run(
    config: TrainConfig,
    *,
    dataset_dir: Path,
    out_dir: Path,
    model_id: str,
    progress_fn: Callable[[Progress], None] | None = None,
    abort_fn: Callable[[], bool] | None = None,
    interrupt_fn: Callable[[], bool] | None = None,
    device: str | None = None,
    checkpoint_interval_s: float | None = None,
    compile_forwards: bool = False,
) -> TrainResult:
    """Train on dataset_dir and write generator.onnx, manifest.json, checkpoint.pt,
    samples.png and stats.jsonl into out_dir.

    A checkpoint.pt that an earlier run of the same config left in out_dir is resumed: the
    steps continue from its step with its weights, optimisers, ADA state and random state
    (the result equals an uninterrupted run's), and stats.jsonl keeps its lines up to there.
    Checkpoints are saved every `config.checkpoint_every` steps and, with
    `checkpoint_interval_s`, at least that often. On CUDA the step uses bf16 autocast and
    fused Adam, and `compile_forwards` torch.compiles the forwards where they can be
    (`Acceleration.choose`); on a CPU none of these apply.

    Raises:
        TrainingAborted: abort_fn returned True (checked before every step); nothing saved.
        TrainingInterrupted: interrupt_fn returned True (checked likewise) and a checkpoint
            was saved: a later run resumes from it.
    """
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    trained_on = training_device(dev)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    resume = load_resumable_checkpoint(out_dir, config)
    if resume is not None:
        seed = resume["config"]["seed"]
    else:
        seed = config.seed if config.seed is not None else secrets.randbelow(2**31)
    config = config.model_copy(update={"seed": seed})
    torch.manual_seed(seed)
    # Held-out images are never shown to the GAN: the quality report judges samples on them.
    dataset = StoredDataset.load(dataset_dir)
    virtual = config.method in UNSUPERVISED_METHODS  # labels are neither needed nor read
    if not (virtual or dataset.labelled):
        raise ValueError(f"{config.method} needs a labelled dataset; train vcagan on this one")
    labels = np.zeros(len(dataset), np.int64) if virtual else dataset.y  # one group: unstratified
    split = stratified_split(labels, config.holdout_fraction, seed)
    split.save(out_dir)
    data = TrainingSet.load(dataset, dev, split.train)
    acceleration = Acceleration.choose(config, dev, compile=compile_forwards)
    if virtual:  # imported here: training.vcagan builds on this module's Trainer
        from training.vcagan import VirtualLabelTrainer

        trainer: Trainer = VirtualLabelTrainer(config, data, dev, acceleration)
    else:
        trainer = Trainer(config, data, dev, acceleration)
    # the evaluator trains before the clock starts, so the ETA counts training steps only;
    # the report that follows is estimated once here, and each progress carries it
    report_s = None
    if config.report != "none":
        _, channels, size, _ = data.images.shape
        report_s = estimate_report_seconds(
            config.report, channels=channels, size=size, num_classes=len(data.classes), device=dev
        )
    selector = RecallSelector(dataset, split, config, dev) if config.select_by == "recall" else None
    if resume is not None:
        trainer.load_checkpoint(resume)
        if selector is not None:
            selector.best = BestSoFar(**resume["selector"])
        log.info("model %s resumes at step %d of %d", model_id, trainer.steps_done, config.steps)
    reporter = Reporter(
        config.steps,
        out_dir / STATS_FILE,
        progress_fn,
        trainer.measurements,
        resume_step=None if resume is None else trainer.steps_done,
        elapsed_s=0.0 if resume is None else resume["elapsed_s"],
        report_s=report_s,
        device=trained_on,
    )

    def checkpoint(**extra: object) -> None:
        reporter.sync()  # the stats lines a resume keeps are on disk before the checkpoint
        selected = None if selector is None else asdict(selector.best)
        save_checkpoint(trainer, out_dir, elapsed_s=reporter.elapsed_s, selector=selected, **extra)

    try:
        if resume is None or not resume["final"]:
            last_saved = time.monotonic()
            for step in range(trainer.steps_done + 1, config.steps + 1):
                if abort_fn is not None and abort_fn():
                    raise TrainingAborted(
                        f"training aborted after {step - 1} of {config.steps} steps"
                    )
                if interrupt_fn is not None and interrupt_fn():
                    reporter.flush(step - 1)
                    checkpoint(final=False)
                    raise TrainingInterrupted(f"training interrupted at step {step - 1}")
                stats = trainer.step()
                points = (
                    {"select_recall": selector.evaluate(trainer)}
                    if selector is not None and config.selection_due(step)
                    else None
                )
                due = step % config.checkpoint_every == 0 or (
                    checkpoint_interval_s is not None
                    and time.monotonic() - last_saved >= checkpoint_interval_s
                )
                # a checkpoint step gets its own stats line, the last one a resume keeps
                reporter.add(step, stats, points, force=due)
                if due and step < config.steps:
                    checkpoint(final=False)
                    last_saved = time.monotonic()
            if selector is not None:
                selector.restore_best(trainer)
            trainer.standing_stats()
            selection = selector.record() if selector is not None else None
            final_losses = reporter.last_losses
            checkpoint(
                final=True,
                final_losses=final_losses,
                selection=None if selection is None else selection.model_dump(),
            )
        else:  # the last run stopped while exporting: export again
            final_losses = resume["final_losses"]
            selection = None if resume["selection"] is None else Selection(**resume["selection"])
    finally:
        reporter.close()
    write_model(trainer, out_dir, model_id, final_losses, selection, dataset)
    return TrainResult(
        steps_completed=trainer.steps_done,
        final_losses=final_losses,
        elapsed_s=reporter.elapsed_s,
        device=str(dev),
        trained_on=trained_on,
        seed=seed,
        report_s=report_s,
    )


def load_resumable_checkpoint(out_dir: Path, config: TrainConfig) -> dict | None:
    """The checkpoint in out_dir when it can resume `config` (its seed filled in when config
    has none), else None: training starts over."""
    path = out_dir / CHECKPOINT_FILE
    if not path.exists():
        return None
    try:
        checkpoint = torch.load(path, map_location="cpu")  # weights_only: no pickled code
    except Exception as exc:  # a checkpoint is replaced atomically; this one is not ours
        log.warning("not resuming from %s: %s", path, exc)
        return None
    if checkpoint.get("format") != CHECKPOINT_FORMAT:
        return None
    saved = TrainConfig.model_validate(checkpoint["config"])
    wanted = config if config.seed is not None else config.model_copy(update={"seed": saved.seed})
    if saved != wanted:
        log.warning("not resuming from %s: it was trained with other options", path)
        return None
    return checkpoint


def save_checkpoint(trainer: Trainer, out_dir: Path, **extra: object) -> None:
    """checkpoint.pt (atomic replace): the trainer's state and the run's `extra` records."""
    buf = io.BytesIO()
    torch.save(trainer.checkpoint() | extra, buf)
    atomic_write_bytes(out_dir / CHECKPOINT_FILE, buf.getvalue())
