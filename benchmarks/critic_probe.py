"""Why the critic's class head (classifier.onnx) trails its trunk trained alone (issue 8 §2).

Trains the critic GAN in-process (training.loop.Trainer on a Fashion-MNIST balanced subset,
no service), one variant per run, and reads the class head several ways on the official
test set, so a readout problem (the minibatch-stddev constant of classifier.onnx) separates
from a training problem (DiffAugment, loss weight, optimiser, truncated fakes):

- `onnx`: the product's classifier.onnx (training.loop.write_classifier) through ONNX Runtime;
- `batch64`: the torch head on test batches of 64 with their true minibatch stddev, as trained;
- `const_plain` / `const_aug`: each image alone, the stddev channel a constant measured on
  un-augmented / DiffAugmented real batches;
- `alone`: each image alone with the stddev a batch of one gives (~0).

The trunk column is benchmarks/low_data.py's: the same architecture trained alone (SmallCNN's
loop, ±2 px shifts, Adam 1e-3). Every finished variant is one JSONL row (a rerun skips it),
and critic_probe.md is rewritten from them.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/critic_probe.py --steps 1000 \\
        --variants baseline no-mbstd
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.fashion_mnist import CLASSES, balanced_subset, load  # noqa: E402
from benchmarks.low_data import TrunkAlone, train_trunk_alone, trunk_accuracy  # noqa: E402
from models.artifact import CLASSIFIER_FILE, ImageShape  # noqa: E402
from models.image_classifier import ImageClassifier  # noqa: E402
from models.images import to_unit_nchw  # noqa: E402
from models.networks import Discriminator, group_stddev  # noqa: E402
from training.augment import diff_augment  # noqa: E402
from training.classifier import (  # noqa: E402
    ClassifierBudget,
    batch_order,
    random_shift,
    shift_radius,
)
from training.config import TrainConfig  # noqa: E402
from training.loop import Trainer, TrainingSet, write_classifier  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "critic_probe.jsonl"
BASE = {"method": "wacgan-gp", "aux_fake_truncation": 1.0}  # low_data.py's critic column
BASE_DIFFAUGMENT = TrainConfig.model_validate(BASE).diffaugment_ops
# name: (training options over BASE, critic kwargs over the Trainer's, what it tests)
VARIANTS: dict[str, tuple[dict, dict, str]] = {
    "baseline": ({}, {}, "the benchmark's critic GAN"),
    "no-mbstd": ({}, {"mbstd_group": 0}, "critic without the minibatch-stddev channel"),
    "no-truncated-fakes": (
        {"aux_fake_truncation": None},
        {},
        "class head on real images only (plain WAC-GAN-GP)",
    ),
    "no-diffaugment": ({"diffaugment": ""}, {}, "no DiffAugment anywhere"),
    "aux-weight-1": ({"aux_weight": 1.0}, {}, "class loss weight 1 instead of 0.2"),
    "class-head-unaugmented": (
        {"aux_diffaugment": False},
        {},
        "class head on un-augmented images, adversarial score still DiffAugmented",
    ),
    "class-head-unaugmented-no-truncated-fakes": (
        {"aux_diffaugment": False, "aux_fake_truncation": None},
        {},
        "class head on un-augmented real images only",
    ),
    "aux-weight-1-no-truncated-fakes": (
        {"aux_weight": 1.0, "aux_fake_truncation": None},
        {},
        "class loss weight 1, real images only",
    ),
}
# The trunk alone with one of the GAN's training conditions at a time, no adversary:
# name: (augmentation, Adam lr, betas, updates)
TRUNK_VARIANTS: dict[str, tuple[str, float, tuple[float, float], int]] = {
    "trunk-shifts": ("shifts", 1e-3, (0.9, 0.999), 3000),
    "trunk-diffaugment": ("diffaugment", 1e-3, (0.9, 0.999), 3000),
    "trunk-gan-optimiser": ("shifts", 2e-4, (0.0, 0.9), 6000),
    "trunk-diffaugment-gan-optimiser": ("diffaugment", 2e-4, (0.0, 0.9), 6000),
}
EVAL_BATCH = 64


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def build_trainer(variant: str, x: np.ndarray, y: np.ndarray, steps: int, seed: int) -> Trainer:
    options, critic_kwargs, _ = VARIANTS[variant]
    config = TrainConfig.model_validate(
        BASE | options | {"steps": steps, "seed": seed, "report": "none", "holdout_fraction": 0}
    )
    torch.manual_seed(seed)
    images = torch.from_numpy(to_unit_nchw(x)).contiguous(memory_format=torch.channels_last)
    data = TrainingSet(images, torch.from_numpy(y.astype(np.int64)), CLASSES)
    trainer = Trainer(config, data, torch.device("cpu"))
    if critic_kwargs:  # rebuild the critic (and the optimisers) with the variant's kwargs
        trainer.critic = Discriminator(**(trainer.critic.config() | critic_kwargs))
        trainer._place_and_optimise()
    return trainer


@torch.no_grad()
def head_accuracy(critic: Discriminator, x: np.ndarray, y: np.ndarray, group_std) -> float:
    """Class-head accuracy; `group_std` None = true stddev of each batch of EVAL_BATCH."""
    was_training = critic.training
    critic.eval()
    try:
        correct = 0
        for i in range(0, len(x), EVAL_BATCH):
            batch = torch.from_numpy(to_unit_nchw(x[i : i + EVAL_BATCH]))
            logits = critic.class_head(critic.trunk(batch, group_std))
            correct += int((logits.argmax(1).numpy() == y[i : i + EVAL_BATCH]).sum())
        return correct / len(x)
    finally:
        critic.train(was_training)


@torch.no_grad()
def augmented_group_std(trainer: Trainer, repeats: int = 8) -> float | None:
    """The stddev channel's mean over DiffAugmented real batches, as the critic trained."""
    critic = trainer.critic
    if not critic.mbstd_group:
        return None
    spreads = []
    critic.eval()
    for _ in range(repeats * len(trainer.data.labels) // trainer.config.batch_size):
        real, _ = trainer.data.sample(trainer.config.batch_size)
        real = diff_augment(real, trainer.config.diffaugment_ops)
        spreads.append(group_stddev(critic.features(real), critic.mbstd_group))
    critic.train()
    return float(torch.cat(spreads).mean())


def readouts(trainer: Trainer, x_test: np.ndarray, y_test: np.ndarray) -> dict:
    critic = trainer.critic
    critic.eval()
    plain = critic.real_group_std(trainer.data.images, trainer.config.batch_size)
    critic.train()
    aug = augmented_group_std(trainer)
    with tempfile.TemporaryDirectory() as tmp:
        write_classifier(trainer, Path(tmp), ImageShape(height=28, width=28, channels=1))
        onnx_probs = ImageClassifier(Path(tmp) / CLASSIFIER_FILE, ["CPUExecutionProvider"])
        onnx = float(np.mean(onnx_probs.probs(x_test).argmax(1) == y_test))
    out = {"onnx": onnx, "batch64": head_accuracy(critic, x_test, y_test, None)}
    if critic.mbstd_group:
        out |= {
            "const_plain": head_accuracy(critic, x_test, y_test, plain),
            "const_aug": head_accuracy(critic, x_test, y_test, aug),
            "alone": head_accuracy(critic, x_test, y_test, 1e-4),
            "group_std_plain": plain,
            "group_std_aug": aug,
        }
    return out


def train_trunk_variant(variant: str, x: np.ndarray, y: np.ndarray, seed: int) -> TrunkAlone:
    """The critic's trunk and class head alone, with the augmentation and optimiser of
    TRUNK_VARIANTS[variant] (batch 64, cross-entropy)."""
    augmentation, lr, betas, updates = TRUNK_VARIANTS[variant]
    torch.manual_seed(seed)
    net = TrunkAlone(Discriminator(num_classes=len(CLASSES), image_size=28, channels=1)).train()
    optimizer = torch.optim.Adam(net.parameters(), lr=lr, betas=betas)
    images = torch.from_numpy(to_unit_nchw(x))
    labels = torch.from_numpy(y.astype(np.int64))
    generator = torch.Generator().manual_seed(seed)
    order = batch_order(len(labels), ClassifierBudget(steps=updates), generator)
    for rows in order:
        batch = images[rows]
        if augmentation == "shifts":
            batch = random_shift(batch, shift_radius(28), generator)
        else:
            batch = diff_augment(batch, BASE_DIFFAUGMENT)
        loss = F.cross_entropy(net(batch), labels[rows])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return net.eval()


def run_variant(variant: str, args, x, y, test) -> dict:
    trainer = build_trainer(variant, x, y, args.steps, args.seed)
    start, curve, early = time.monotonic(), [], {}
    for step in range(1, args.steps + 1):
        trainer.step()
        if step % args.eval_every == 0 or step == args.steps:
            acc = head_accuracy(trainer.critic, *test, None)
            curve.append([step, round(acc, 4)])
            print(f"  {variant} step {step}: batch64 {100 * acc:.2f} %", flush=True)
        if step in args.readouts_at and step < args.steps:
            early[step] = readouts(trainer, *test)
            print(f"  {variant} step {step}: {early[step]}", flush=True)
    minutes = (time.monotonic() - start) / 60
    # the trained critic, so a readout can be checked again without retraining
    critics = Path(__file__).resolve().parent / "out" / "critic_probe"
    critics.mkdir(parents=True, exist_ok=True)
    critic_file = critics / f"{variant}_size-{args.size}_seed-{args.seed}_steps-{args.steps}.pt"
    torch.save(
        {"critic_kwargs": trainer.critic.config(), "critic": trainer.critic.state_dict()},
        critic_file,
    )
    row = {"readouts": readouts(trainer, *test), "curve": curve, "minutes": round(minutes, 1)}
    return row | ({"readouts_at": early} if early else {})


FINDINGS = "\n## Findings"  # the hand-written part of the markdown, kept on rewrites
HEADER = """# Critic's class head vs its trunk alone (issue 8 §2)

Written by `benchmarks/critic_probe.py` from `critic_probe.jsonl`; the Findings section is
written by hand and kept. Fashion-MNIST, 500-image balanced subset, seed 0, the official
10,000-image test set, one thread on the shared 2-core CPU. GAN variants train
`{"method": "wacgan-gp", "aux_fake_truncation": 1.0}` (low_data.py's critic column) with one
change; their class head is read five ways (see the script's docstring). The trunk alone is
low_data.py's trunk column (3,000 steps, Adam 1e-3, ±2 px shifts), the same at every GAN length.
Minutes are wall time under varying load (up to four probes and the low_data benchmark
shared the two cores), so they compare only roughly.

"""


def write_table(rows: list[dict], path: Path) -> None:
    """critic_probe.md from every row of the JSONL: GAN variants, then trunk variants."""

    def pct(value: float | None) -> str:
        return "-" if value is None else f"{100 * value:.2f}"

    trunk = {(r["size"], r["seed"]): r["accuracy"] for r in rows if r["variant"] == "trunk"}
    lines = [
        "| variant | GAN steps | classifier.onnx | head, test batches of 64 | constant from "
        "DiffAugmented reals | batch of one (stddev 0) | trunk alone | minutes | what it tests |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        if row["variant"] not in VARIANTS:
            continue
        readouts = [(row["steps"], row["readouts"])]
        readouts += [(int(step), r) for step, r in row.get("readouts_at", {}).items()]
        for steps, r in sorted(readouts, key=lambda item: item[0]):
            cells = [row["variant"], str(steps), pct(r["onnx"]), pct(r["batch64"])]
            cells += [pct(r.get("const_aug")), pct(r.get("alone"))]
            cells += [pct(trunk.get((row["size"], row["seed"])))]
            cells += [
                str(row["minutes"]) if steps == row["steps"] else "",
                VARIANTS[row["variant"]][2],
            ]
            lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "Trunk alone (no adversary), one GAN training condition at a time:",
        "",
        "| variant | augmentation | Adam lr, betas | updates | test accuracy | minutes |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        if row["variant"] in TRUNK_VARIANTS:
            augmentation, lr, betas, updates = TRUNK_VARIANTS[row["variant"]]
            cells = [row["variant"], augmentation, f"{lr:g}, {betas}", str(updates)]
            cells += [pct(row["accuracy"]), str(row["minutes"])]
            lines.append("| " + " | ".join(cells) + " |")
    kept = path.read_text().partition(FINDINGS) if path.exists() else ("", "", "")
    path.write_text(HEADER + "\n".join(lines) + "\n" + kept[1] + kept[2])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--variants",
        nargs="+",
        default=list(VARIANTS),
        choices=list(VARIANTS) + list(TRUNK_VARIANTS),
    )
    parser.add_argument("--steps", type=int, default=1000, help="GAN steps (generator updates)")
    parser.add_argument("--size", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--eval-every", type=int, default=250)
    parser.add_argument(
        "--readouts-at", type=int, nargs="*", default=[], help="also read out at these steps"
    )
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args()
    torch.set_num_threads(1)
    x_all, y_all = load("train")
    x, y = balanced_subset(x_all, y_all, args.size // len(CLASSES), args.seed)
    test = load("t10k")
    keys = {"size": args.size, "seed": args.seed, "steps": args.steps}
    rows = (
        [json.loads(line) for line in args.results.read_text().splitlines()]
        if (args.results.exists())
        else []
    )

    def done(**k) -> bool:
        return any(all(r.get(a) == b for a, b in (keys | k).items()) for r in rows)

    def add(row: dict) -> None:
        row = keys | row | {"at": now()}
        args.results.parent.mkdir(parents=True, exist_ok=True)
        with args.results.open("a") as f:
            f.write(json.dumps(row) + "\n")
        rows.append(row)
        print(json.dumps(row), flush=True)
        write_table(rows, args.results.with_suffix(".md"))

    if not done(variant="trunk"):
        start = time.monotonic()
        config = TrainConfig.model_validate(BASE)
        net, _ = train_trunk_alone(x, y, config, ClassifierBudget(), args.seed, torch.device("cpu"))
        minutes = round((time.monotonic() - start) / 60, 1)
        add({"variant": "trunk", "accuracy": trunk_accuracy(net, x, *test), "minutes": minutes})
    for variant in args.variants:
        if done(variant=variant):
            continue
        if variant in TRUNK_VARIANTS:
            start = time.monotonic()
            net = train_trunk_variant(variant, x, y, args.seed)
            minutes = round((time.monotonic() - start) / 60, 1)
            accuracy = head_accuracy(net.critic, *test, None)
            add({"variant": variant, "accuracy": accuracy, "minutes": minutes})
        else:
            add({"variant": variant, **run_variant(variant, args, x, y, test)})


if __name__ == "__main__":
    main()
