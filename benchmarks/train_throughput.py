"""Training throughput: the project's training step against a plain eager loop of the same
networks, interleaved round after round in one run (the machine is shared: a change of load
hits every variant alike), with the load average beside the figures.

    .venv/bin/python -m benchmarks.train_throughput [--device cpu|cuda] [--batches 64 512]
        [--methods cgan wacgan-gp] [--rounds 5] [--threads 1]

img/s = batch size x generator steps per second; one step is n_critic critic updates and
one generator update, in every variant. Each round times every variant for the same steps
(in ABBA order); the ratio printed is the median over rounds of each round's ratio to the
reference, the img/s the median over rounds. Variants:

    reference  a plain eager loop written out below: the same Generator and Discriminator,
               the same losses (hinge + mode seeking for cgan; Wasserstein + GP + class-head
               CE for wacgan-gp), DiffAugment at p = 1, EMA; fresh fakes for every critic
               update, NCHW, fp32, torch's default Adam
    loop       `Trainer.step` and the run's `Reporter` (stats, progress and the Lipschitz
               measurement every 10 steps), with `Acceleration.choose`'s defaults: on CPU
               none; on CUDA bf16 autocast, fused Adam (channels_last everywhere)
    compiled   (CUDA only) `loop` with torch.compile where it applies (compile_forwards)

Data are random 28x28 one-channel images of 10 classes, resident on the device.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

from models.networks import Discriminator, Generator
from training.accel import Acceleration
from training.augment import diff_augment
from training.config import TrainConfig
from training.loop import Trainer, TrainingSet
from training.stats import Reporter

SIZE, CLASSES, IMAGES = 28, 10, 2048


def load() -> str:
    return "load {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


def training_set(device: torch.device) -> TrainingSet:
    gen = torch.Generator().manual_seed(0)
    images = torch.rand(IMAGES, 1, SIZE, SIZE, generator=gen) * 2 - 1
    labels = torch.randint(CLASSES, (IMAGES,), generator=gen)
    return TrainingSet(
        images.to(device).contiguous(memory_format=torch.channels_last),
        labels.to(device),
        [f"c{i}" for i in range(CLASSES)],
    )


class ReferenceLoop:
    """The plain eager loop: what one writes from the papers, without the project's
    optimisations (fake reuse, channels_last, autocast, fused Adam)."""

    def __init__(self, config: TrainConfig, data: TrainingSet, device: torch.device):
        self.config, self.data, self.device = config, data, device
        self.gen = Generator(
            z_dim=config.z_dim, num_classes=CLASSES, image_size=SIZE, channels=1
        ).to(device)
        self.critic = Discriminator(
            num_classes=CLASSES,
            image_size=SIZE,
            channels=1,
            conditioning=config.d_conditioning or "aux",
            spectral_norm=config.spectral_norm,
        ).to(device)
        self.ema = Generator(z_dim=config.z_dim, num_classes=CLASSES, image_size=SIZE, channels=1)
        self.ema.to(device).load_state_dict(self.gen.state_dict())
        betas = (config.beta1, config.beta2)
        self.opt_g = torch.optim.Adam(self.gen.parameters(), config.lr_g, betas=betas)
        self.opt_d = torch.optim.Adam(self.critic.parameters(), config.lr_d, betas=betas)
        self.ops = config.diffaugment_ops

    def step(self) -> None:
        c, batch = self.config, self.config.batch_size
        for _ in range(c.n_critic):
            idx = torch.randint(len(self.data.labels), (batch,), device=self.device)
            real = self.data.images[idx].contiguous()
            labels = self.data.labels[idx]
            z = torch.randn(batch, c.z_dim, device=self.device)
            fake_labels = torch.randint(CLASSES, (batch,), device=self.device)
            with torch.no_grad():
                fake = self.gen(z, fake_labels)
            real_aug, fake_aug = diff_augment(real, self.ops), diff_augment(fake, self.ops)
            d_real, logits_real = self.critic(real_aug, labels)
            d_fake, _ = self.critic(fake_aug, fake_labels)
            if c.method == "cgan":  # hinge
                loss = F.relu(1 - d_real).mean() + F.relu(1 + d_fake).mean()
            else:  # Wasserstein + GP on interpolates + class-head CE on reals
                loss = d_fake.mean() - d_real.mean()
                loss = loss + c.aux_weight * F.cross_entropy(logits_real, labels)
                eps = torch.rand(batch, 1, 1, 1, device=self.device)
                x_hat = (eps * real_aug + (1 - eps) * fake_aug).detach().requires_grad_(True)
                (grad,) = torch.autograd.grad(
                    self.critic(x_hat, labels)[0].sum(), x_hat, create_graph=True
                )
                loss = loss + c.gp_weight * (grad.flatten(1).norm(dim=1) - 1).square().mean()
            self.opt_d.zero_grad()
            loss.backward()
            self.opt_d.step()
        z = torch.randn(batch, c.z_dim, device=self.device)
        fake_labels = torch.randint(CLASSES, (batch,), device=self.device)
        if c.mode_seeking:  # pairs: the second half repeats the first half's labels
            half = batch // 2
            fake_labels = torch.cat([fake_labels[:half], fake_labels[:half]])
        fake = self.gen(z, fake_labels)
        d_fake, logits = self.critic(diff_augment(fake, self.ops), fake_labels)
        loss = -d_fake.mean()
        if c.method == "wacgan-gp":
            loss = loss + c.aux_weight * F.cross_entropy(logits, fake_labels)
        if c.mode_seeking:
            x1, x2 = fake.chunk(2)
            z1, z2 = z.chunk(2)
            ratio = (x1 - x2).abs().mean() / (z1 - z2).abs().mean()
            loss = loss + c.mode_seeking / (ratio + 1e-5)
        self.opt_g.zero_grad()
        loss.backward()
        self.opt_g.step()
        with torch.no_grad():
            for p_ema, p in zip(self.ema.parameters(), self.gen.parameters(), strict=True):
                p_ema.lerp_(p, 1 - c.ema_decay)


class ProjectLoop:
    """`Trainer.step` with the run's Reporter, as `training.loop.run` drives them."""

    def __init__(self, trainer: Trainer, stats_path: Path):
        self.trainer = trainer
        self.reporter = Reporter(10**9, stats_path, None, trainer.measurements)
        self.steps = 0

    def step(self) -> None:
        self.steps += 1
        self.reporter.add(self.steps, self.trainer.step())


def timed_steps(step: Callable[[], None], steps: int, device: torch.device) -> float:
    """Seconds for `steps` steps, the device drained before and after."""
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def variants(
    config: TrainConfig, data: TrainingSet, device: torch.device, work: Path
) -> dict[str, Callable[[], None]]:
    torch.manual_seed(0)
    out = {"reference": ReferenceLoop(config, data, device).step}
    out["loop"] = ProjectLoop(Trainer(config, data, device), work / "loop.jsonl").step
    if device.type == "cuda":
        accel = Acceleration.choose(config, device, compile=True)
        trainer = Trainer(config, data, device, accel)
        out["compiled"] = ProjectLoop(trainer, work / "compiled.jsonl").step
    return out


def measure(method: str, batch: int, device: torch.device, args, work: Path) -> None:
    config = TrainConfig(method=method, batch_size=batch, seed=0, report="none")
    data = training_set(device)
    cuda = device.type == "cuda"
    steps = args.steps or (max(16, 16384 // batch) if cuda else max(1, 256 // batch))
    runs = variants(config, data, device, work)
    for step in runs.values():  # warm-up: allocator, cuDNN autotune, compilation
        timed_steps(step, args.warmup, device)
    rates: dict[str, list[float]] = {name: [] for name in runs}
    loads = []
    for round_ in range(args.rounds):
        loads.append(os.getloadavg()[0])
        order = list(runs) if round_ % 2 == 0 else list(reversed(runs))  # ABBA: drift cancels
        for name in order:
            rates[name].append(batch * steps / timed_steps(runs[name], steps, device))
    for name, values in rates.items():
        # the ratio of each round's pair, then their median: robust to the load changing
        ratios = [v / r for v, r in zip(values, rates["reference"], strict=True)]
        print(
            f"{device.type:4} {method:9} batch {batch:3}  {name:9} "
            f"{statistics.median(values):8.1f} img/s  x{statistics.median(ratios):.2f} "
            f"of reference (rounds: {' '.join(f'{x:.2f}' for x in ratios)})"
        )
    spread = f"{min(loads):.2f}-{max(loads):.2f}"
    print(f"     {steps} steps per round, {args.rounds} rounds, 1-min load {spread}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batches", type=int, nargs="+", default=[64, 512])
    parser.add_argument("--methods", nargs="+", default=["cgan", "wacgan-gp"])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--steps", type=int, default=0, help="steps per round (0: by batch)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"torch {torch.__version__}, {name}, {args.threads} CPU thread(s), {load()}")
    with tempfile.TemporaryDirectory() as work:
        for batch in args.batches:
            for method in args.methods:
                measure(method, batch, device, args, Path(work))
    print(load())


if __name__ == "__main__":
    main()
