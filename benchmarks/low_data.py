"""Low-data benchmark: does ganaug's synthetic data add to classic augmentation? (issue 8 §4)

Fashion-MNIST, class-balanced training subsets, the official 10,000-image test set, the
small CNN of shared/RESEARCH.md. Paired: within a (size, seed) unit every SmallCNN column
trains on the same subset from the same initial weights (classifier seed = seed), and the
table reports each column's paired difference to classic. Resumable: every finished
column is appended to benchmarks/results/low_data.jsonl at once and skipped when the
script runs again with the same knobs; the markdown table is rewritten from the JSONL after
every column. The GANs, their reports and archives come from a real `ganaug serve`
(embedded mode) driven over HTTP, in --work-dir, so a GAN survives an interrupted run.

    .venv/bin/python benchmarks/low_data.py --sizes 500 --seeds 0 1 2 3 4   # hours on 2 cores
    .venv/bin/python benchmarks/low_data.py --sizes 2500 --seeds 0 1 2
    .venv/bin/python benchmarks/low_data.py --sizes 60 --seeds 0 --gan-steps 20 \\
        --classifier-steps 30 --report fast --results-dir /tmp/lowdata --work-dir /tmp/w
"""

from __future__ import annotations

import argparse
import io
import json
import math
import signal
import sys
import time
import zipfile
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.fashion_mnist import CLASSES, balanced_subset, load  # noqa: E402
from benchmarks.low_data_service import Service, train_gan  # noqa: E402
from benchmarks.low_data_table import write_table  # noqa: E402
from ganaug.data import AugmentedArchive, HowToMix, RecipeBatchSampler, recipe_loss  # noqa: E402
from models.artifact import CLASSIFIER_FILE, SOFT_LABELS_FILE  # noqa: E402
from models.image_classifier import ImageClassifier  # noqa: E402
from models.images import to_unit_nchw  # noqa: E402
from models.networks import CriticClassifier, Discriminator  # noqa: E402
from training.classifier import (  # noqa: E402
    ClassifierBudget,
    SmallCNN,
    accuracy,
    batch_order,
    train_classifier,
    train_on_batches,
)
from training.config import TrainConfig  # noqa: E402
from training.report_mixing import default_mixing  # noqa: E402
from training.report_record import Mixing  # noqa: E402
from training.report_setup import REPORT_BUDGETS, ReportBudget  # noqa: E402

RESULTS_DIR = Path(__file__).resolve().parent / "results"
WORK_DIR = Path(__file__).resolve().parent / "out" / "low_data"
COLUMNS = {  # name: what it trains (the table's legend)
    "plain": "SmallCNN on the real images only",
    "classic": "SmallCNN on the real images with random ±2 px shifts",
    "hard": "classic + the synthetic images of `archive?recipe=recommended` as a plain "
    "ImageFolder: hard labels, shuffled with the real rows at weight 1",
    "recipe": "classic + the same archive through `ganaug.data` (AugmentedArchive, "
    "RecipeBatchSampler, recipe_loss): the recipe's batch share, loss weight, labels and "
    "real-only end",
    "distil": "control, no GAN: classic + teacher rows (each real image again, labelled by the "
    "same report's soft_labels.onnx), mixed through `ganaug.data` as the recipe column mixes "
    "its synthetic rows (batch share, loss weight, real-only end) with soft labels; the "
    "literature's ratio-1 defaults when the recipe adds nothing",
    "fixed": "classic + `archive?per_class=RATIO x real` from the same GAN, hard labels "
    "(only with --fixed-recipe)",
    "critic": "the class head of a critic trained as a GAN (classifier.onnx; --critic-config)",
    "trunk": "the critic's architecture, class head only, trained alone on the real images "
    "with ±2 px shifts (SmallCNN's loop and budget)",
}
AUGMENT_GAN = {"hard", "recipe", "distil", "fixed"}  # need the augmenting GAN and its report
# Columns that never see the augmenting GAN, and the knobs their scores depend on: a score
# from another knob set that agrees on these is copied, not retrained (same subset, seed and
# classifier; the row records where it came from).
GAN_FREE = {
    "plain": ("classifier_steps", "device"),
    "classic": ("classifier_steps", "device"),
    "trunk": ("classifier_steps", "device", "critic_config"),
}
BATCH = 64


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class Ledger:
    """The JSONL of finished work: score rows per (size, seed, column), gan rows per GAN."""

    def __init__(self, path: Path, knobs: dict):
        self.path, self.knobs = path, knobs
        self.rows = self.on_disk()

    def on_disk(self) -> list[dict]:
        """Every row in the file now, those of other runs sharing it included (several
        low_data.py processes may append to one JSONL side by side)."""
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]

    def find(self, kind: str, **keys) -> dict | None:
        keys |= {"kind": kind, "knobs": self.knobs}
        return next((r for r in self.rows if all(r.get(k) == v for k, v in keys.items())), None)

    def find_gan_free(self, column: str, **keys) -> dict | None:
        """A score row of a column that never sees the augmenting GAN, from any knob set that
        agrees on the knobs its score depends on (GAN_FREE); None for other columns."""
        if column not in GAN_FREE:
            return None
        same = {k: self.knobs.get(k) for k in GAN_FREE[column]}
        keys |= {"kind": "score", "column": column}
        return next(
            (
                r
                for r in self.rows
                if all(r.get(k) == v for k, v in keys.items())
                and all(r["knobs"].get(k) == v for k, v in same.items())
            ),
            None,
        )

    def add(self, row: dict) -> dict:
        row = {"kind": row.pop("kind"), **row, "knobs": self.knobs, "at": now()}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as f:
            f.write(json.dumps(row) + "\n")
        self.rows.append(row)
        return row


class Unit:
    """One (size, seed): its subset, and the GANs and archives its columns need, made once."""

    def __init__(self, size: int, seed: int, args: argparse.Namespace, ledger: Ledger, ctx):
        self.size, self.seed, self.args, self.ledger, self.ctx = size, seed, args, ledger, ctx
        x_all, y_all = ctx.train
        self.x, self.y = balanced_subset(x_all, y_all, size // len(CLASSES), seed)
        self.budget = ClassifierBudget(steps=args.classifier_steps, batch_size=BATCH)
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")

    def gan(self, role: str) -> dict:
        """The gan row of this unit's GAN for `role` (augment or critic): reused if its model
        still exists in --work-dir, else trained now."""
        row = self.ledger.find("gan", size=self.size, seed=self.seed, role=role)
        service = self.ctx.service()
        if row and service.has_model(row["model_id"]):
            return row
        print(f"[{self.size}] seed {self.seed}: training the {role} GAN", flush=True)
        start = time.monotonic()
        model = train_gan(service, self.x, self.y, CLASSES, self.gan_config(role))
        row = {"kind": "gan", "size": self.size, "seed": self.seed, "role": role}
        row |= {"model_id": model["id"], "seconds": round(time.monotonic() - start)}
        if role == "augment":
            path = self.archive_path(model["id"], {"recipe": "recommended"})
            row["recipe"] = AugmentedArchive(path).manifest.get("recipe")
        return self.ledger.add(row)

    def gan_config(self, role: str) -> dict:
        knobs = self.ledger.knobs
        base = {"seed": self.seed, "steps": knobs["gan_steps"]}
        if role == "augment":
            return base | {"report": knobs["report"]} | knobs["gan_config"]
        return base | {"report": "none", "holdout_fraction": 0.0} | knobs["critic_config"]

    def archive_path(self, model_id: str, params: dict) -> Path:
        """The model's archive (real + synthetic, seed = the unit's) in --work-dir."""
        name = "_".join(f"{k}-{v}" for k, v in sorted(params.items()))
        path = self.args.work_dir / "archives" / f"{model_id}_{name}_seed-{self.seed}.zip"
        if not path.exists():
            query = {"include_real": "true", "seed": self.seed, **params}
            self.ctx.service().download(f"/v1/models/{model_id}/archive", query, path)
        return path

    def model_file(self, role: str, name: str) -> Path:
        return self.args.work_dir / "data" / "models" / self.gan(role)["model_id"] / name

    # One method per column: the test accuracy and what the row should record besides.

    def plain(self) -> tuple[float, dict]:
        return self.small_cnn(classic_augment=False), {}

    def classic(self) -> tuple[float, dict]:
        return self.small_cnn(classic_augment=True), {}

    def hard(self) -> tuple[float, dict]:
        return self.hard_labels(
            self.archive_path(self.gan("augment")["model_id"], {"recipe": "recommended"})
        )

    def fixed(self) -> tuple[float, dict]:
        ratio, _, truncation = self.args.fixed_recipe.partition(":")
        params = {"per_class": round(float(ratio) * len(self.y) / len(CLASSES))}
        params |= {"truncation": truncation} if truncation not in ("", "none") else {}
        return self.hard_labels(self.archive_path(self.gan("augment")["model_id"], params))

    def hard_labels(self, path: Path) -> tuple[float, dict]:
        xs, ys = synthetic_rows(path)
        if not len(ys):
            return self.reuse_classic()
        extra = {"synthetic_images": len(ys)}
        return self.small_cnn(classic_augment=True, synthetic=(xs, ys)), extra

    def recipe(self) -> tuple[float, dict]:
        data = AugmentedArchive(
            self.archive_path(self.gan("augment")["model_id"], {"recipe": "recommended"})
        )
        if not data.is_synthetic.any():
            return self.reuse_classic()

        def rows(indices: list[int]) -> tuple[torch.Tensor, ...]:
            images, targets, synthetic = next(
                iter(DataLoader(data, batch_size=len(indices), sampler=indices))
            )
            return images * 2 - 1, targets, synthetic  # [0, 1] -> the net's [-1, 1]

        score, steps = self.mixed(data, data.recipe, rows)
        return score, {"synthetic_images": int(data.is_synthetic.sum()), "steps": steps}

    def distil(self) -> tuple[float, dict]:
        teacher = ImageClassifier(
            self.model_file("augment", SOFT_LABELS_FILE), providers=["CPUExecutionProvider"]
        )
        rows = TeacherRows(self.x, self.y, teacher.probs(self.x))
        mixing, source = self.control_mixing()
        score, steps = self.mixed(rows, mixing, rows.batch)
        return score, {"mixing": {**mixing.record(), "from": source}, "steps": steps}

    def control_mixing(self) -> tuple[Mixing, str]:
        """The control mixes its teacher rows as the recipe column mixes synthetic ones (the
        searched mixing of the augmenting GAN's recipe), with soft labels, which is what
        distillation is; the literature's ratio-1 defaults when the recipe adds nothing."""
        recipe = self.gan("augment").get("recipe") or {}
        if not recipe.get("ratio") or not recipe.get("synthetic_batch_fraction"):
            return default_mixing(1.0), "defaults (the recipe adds no synthetic rows)"
        searched = "searched" if recipe.get("mixing_searched") else "unsearched"
        mixing = Mixing(
            synthetic_batch_fraction=recipe["synthetic_batch_fraction"],
            synthetic_loss_weight=recipe["synthetic_loss_weight"],
            labels="soft",
            real_only_final_steps=recipe["real_only_final_steps"],
        )
        return mixing, f"the recipe's {searched} mixing, soft labels"

    def critic(self) -> tuple[float, dict]:
        head = ImageClassifier(
            self.model_file("critic", CLASSIFIER_FILE), providers=["CPUExecutionProvider"]
        )
        x_test, y_test = self.ctx.test
        return float(np.mean(head.probs(x_test).argmax(axis=1) == y_test)), {
            "model_id": self.gan("critic")["model_id"]
        }

    def trunk(self) -> tuple[float, dict]:
        config = TrainConfig.model_validate(self.gan_config("critic"))
        net, kwargs = train_trunk_alone(self.x, self.y, config, self.budget, self.seed, self.device)
        return trunk_accuracy(net, self.x, *self.ctx.test), {"architecture": kwargs}

    def small_cnn(self, **kwargs) -> float:
        model = train_classifier(
            self.x,
            self.y,
            num_classes=len(CLASSES),
            budget=self.budget,
            seed=self.seed,
            device=str(self.device),
            **kwargs,
        )
        return accuracy(model, *self.ctx.test)

    def mixed(self, data, recipe: HowToMix | None, rows) -> tuple[float, int]:
        """A SmallCNN on `ganaug.data`'s batches (RecipeBatchSampler's rows, recipe_loss):
        its test accuracy and its step count."""
        per_epoch = len(RecipeBatchSampler(data, BATCH, recipe, self.seed))
        epochs = math.ceil(self.args.classifier_steps / per_epoch)
        sampler = RecipeBatchSampler(data, BATCH, recipe, self.seed, epochs=epochs)
        dev = self.device

        def batches(_generator: torch.Generator):
            for indices in sampler:
                images, targets, synthetic = rows(indices)
                loss = partial(
                    recipe_loss, targets=targets.to(dev), is_synthetic=synthetic, recipe=recipe
                )
                yield images.to(dev), loss

        model = train_on_batches(
            batches,
            lambda: SmallCNN(len(CLASSES), self.x.shape[3], self.x.shape[1]),
            seed=self.seed,
            lr=self.budget.lr,
            device=dev,
        )
        return accuracy(model, *self.ctx.test), len(sampler)

    def reuse_classic(self) -> tuple[float, dict]:
        """No synthetic rows: the column is classic by definition; its score is classic's."""
        row = self.ledger.find("score", size=self.size, seed=self.seed, column="classic")
        score = row["accuracy"] if row else self.classic()[0]
        return score, {"reused": "classic", "synthetic_images": 0}


class TeacherRows:
    """The distillation control's rows for RecipeBatchSampler: the real images one-hot, then
    each real image again as a 'synthetic' row with the teacher's probabilities."""

    def __init__(self, x: np.ndarray, y: np.ndarray, probs: np.ndarray):
        images = torch.from_numpy(to_unit_nchw(x))
        self.images = torch.cat([images, images])
        one_hot = np.eye(probs.shape[1], dtype=np.float32)[y]
        self.targets = torch.from_numpy(np.concatenate([one_hot, probs.astype(np.float32)]))
        self.is_synthetic = np.repeat([False, True], len(x))

    def __len__(self) -> int:
        return len(self.is_synthetic)

    def batch(self, indices: list[int]) -> tuple[torch.Tensor, ...]:
        rows = torch.as_tensor(indices)
        return self.images[rows], self.targets[rows], torch.from_numpy(self.is_synthetic[indices])


class TrunkAlone(nn.Module):
    """A critic as a plain classifier: trunk -> class head logits (B, K); the adversarial
    head is never used. The minibatch-stddev channel sees training batches as in a GAN."""

    def __init__(self, critic: Discriminator):
        super().__init__()
        self.critic = critic

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.critic.class_head(self.critic.trunk(x))  # (B, K)


def train_trunk_alone(
    x: np.ndarray,
    y: np.ndarray,
    config: TrainConfig,
    budget: ClassifierBudget,
    seed: int,
    device: torch.device,
) -> tuple[TrunkAlone, dict]:
    """The critic architecture of `config`, class head only, trained alone on (x, y) with
    SmallCNN's loop (±2 px shifts, Adam at the budget's rate); and its constructor kwargs."""
    kwargs = dict(num_classes=len(CLASSES), image_size=x.shape[1], channels=x.shape[3])
    kwargs |= dict(
        width=config.d_channels, spectral_norm=config.spectral_norm, dropout=config.d_dropout
    )
    images = torch.from_numpy(to_unit_nchw(x)).to(device)
    labels = torch.from_numpy(y.astype(np.int64)).to(device)

    def batches(generator: torch.Generator):
        for rows in batch_order(len(labels), budget, generator).to(device):
            yield images[rows], partial(nn.functional.cross_entropy, target=labels[rows])

    net = train_on_batches(
        batches,
        lambda: TrunkAlone(Discriminator(**kwargs)),
        seed=seed,
        lr=budget.lr,
        device=device,
    )
    return net, kwargs


def trunk_accuracy(net: TrunkAlone, x_train: np.ndarray, x: np.ndarray, y: np.ndarray) -> float:
    """Test accuracy of a trunk trained alone, each image classified on its own: the
    minibatch-stddev channel is the constant of its training images (as classifier.onnx)."""
    critic = net.critic
    device = next(critic.parameters()).device
    images = torch.from_numpy(to_unit_nchw(x_train)).to(device)
    classifier = CriticClassifier(critic, critic.real_group_std(images, BATCH)).eval()
    with torch.no_grad():
        probs = torch.cat(
            [
                classifier(torch.from_numpy(to_unit_nchw(x[i : i + 512])).to(device))
                for i in range(0, len(x), 512)
            ]
        )
    return float((probs.argmax(1).cpu().numpy() == y).mean())


def synthetic_rows(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """The synthetic images of an archive zip and the classes they were drawn for."""
    images, labels = [], []
    with zipfile.ZipFile(path) as archive:
        manifest = json.loads(archive.read("manifest.json"))
        folder_index = {c["folder"]: c["index"] for c in manifest["classes"]}
        for name in archive.namelist():
            if "/synthetic_" in name:
                pixels = np.asarray(Image.open(io.BytesIO(archive.read(name))))
                images.append(pixels[:, :, None] if pixels.ndim == 2 else pixels)
                labels.append(folder_index[name.split("/")[0]])
    x = np.stack(images) if images else np.empty((0, 28, 28, 1), np.uint8)
    return x, np.asarray(labels, dtype=np.int64)


class Context:
    """What every unit shares: the data, and our `ganaug serve`, started when first needed."""

    def __init__(self, args: argparse.Namespace):
        self.args, self.train, self.test = args, load("train"), load("t10k")
        self._service: Service | None = None

    def service(self) -> Service:
        if self._service is None:
            (self.args.work_dir / "data").mkdir(parents=True, exist_ok=True)
            self._service = Service(self.args.work_dir / "data", port=self.args.port)
        return self._service

    def close(self) -> None:
        if self._service is not None:
            self._service.stop()


def run_unit(unit: Unit, columns: list[str], ledger: Ledger, args: argparse.Namespace) -> None:
    for column in columns:
        if ledger.find("score", size=unit.size, seed=unit.seed, column=column):
            continue
        earlier = ledger.find_gan_free(column, size=unit.size, seed=unit.seed)
        if earlier:
            copied = {k: v for k, v in earlier.items() if k not in ("knobs", "at")}
            ledger.add(copied | {"copied_from": earlier["at"]})
            print(f"[{unit.size}] seed {unit.seed} {column}: copied from {earlier['at']}")
            continue
        start = time.monotonic()
        score, extra = getattr(unit, column)()
        row = {"kind": "score", "size": unit.size, "seed": unit.seed, "column": column}
        row |= {"accuracy": score, "seconds": round(time.monotonic() - start), **extra}
        ledger.add(row)
        print(f"[{unit.size}] seed {unit.seed} {column}: {100 * score:.2f} %", flush=True)
        write_table(ledger, args, COLUMNS)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[500, 2500])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument(
        "--columns",
        nargs="+",
        default=[c for c in COLUMNS if c != "fixed"],
        choices=list(COLUMNS),
        help="subset of the columns, run in this order",
    )
    parser.add_argument("--gan-steps", type=int, default=3000, help="generator updates per GAN")
    parser.add_argument("--classifier-steps", type=int, default=3000)
    parser.add_argument(
        "--report",
        choices=["fast", "standard"],
        default="standard",
        help="quality report of the augmenting GAN (it chooses the recipe)",
    )
    parser.add_argument(
        "--gan-config",
        default='{"method": "cgan", "adv_loss": "hinge", "spectral_norm": true, "n_critic": 2, '
        '"beta1": 0.0, "beta2": 0.9}',
        help="JSON training options of the augmenting GAN (hard, recipe, distil, fixed)",
    )
    parser.add_argument(
        "--critic-config",
        default='{"method": "wacgan-gp", "aux_fake_truncation": 1.0}',
        help="JSON training options of the critic column's GAN (a method with a class head); "
        "trained per seed besides the augmenting GAN, on all the unit's images (no report, "
        "no held-out split): it doubles the GAN time",
    )
    parser.add_argument("--fixed-recipe", help="RATIO[:TRUNCATION] of the fixed column, e.g. 2")
    parser.add_argument("--port", type=int, default=8765, help="port of the private ganaug serve")
    parser.add_argument(
        "--results-dir",
        type=Path,
        default=RESULTS_DIR,
        help="where low_data.jsonl and low_data.md live",
    )
    parser.add_argument(
        "--work-dir",
        type=Path,
        default=WORK_DIR,
        help="the service's data directory and archives (kept for resuming)",
    )
    args = parser.parse_args()
    if "fixed" in args.columns and not args.fixed_recipe:
        parser.error("the fixed column needs --fixed-recipe")
    return args


def knobs_of(args: argparse.Namespace) -> dict:
    """Everything that changes a score: rows with other knobs are neither reused nor mixed."""
    report = REPORT_BUDGETS[args.report]
    return {
        "gan_steps": args.gan_steps,
        "classifier_steps": args.classifier_steps,
        "report": args.report,
        "gan_config": json.loads(args.gan_config),
        "critic_config": json.loads(args.critic_config),
        "fixed_recipe": args.fixed_recipe,
        "device": "cuda" if torch.cuda.is_available() else "cpu",
        # the report's recommendation: its search, else the benchmark's recipe (rows from
        # before it, when the search alone decided, lack this key and are kept apart)
        "recommendation": "search, else benchmark recipe",
        # the archive's soft labeller: trained on every image since 2026-11-29 (rows before
        # lack this key: their teacher saw the 80 % train split only); 6 members since
        # 2026-11-30 (the --report preset's soft_label_members; 3 before)
        "soft_labeller": f"all images, {report.soft_label_members} members",
        # the benchmark recipes the report falls back on, by the largest class they apply to
        # (rows before 2026-11-30 lack this key: share 0.5 up to 50 per class, none above)
        "benchmark_recipes": recipes_knob(report),
    }


def recipes_knob(budget: ReportBudget) -> str:
    """The budget's benchmark recipes as caps and synthetic shares, e.g. "<= 50 per class:
    10x, share 0.5; <= 250 per class: 10x, share 0.25" ("none" for the fast preset)."""
    recipes = sorted(budget.benchmark_recipes, key=lambda r: r.max_train_per_class)
    return (
        "; ".join(
            f"<= {r.max_train_per_class} per class: {r.ratio:g}x, "
            f"share {r.mixing.synthetic_batch_fraction:g}"
            for r in recipes
        )
        or "none"
    )


def main() -> None:
    args = parse_args()
    ledger = Ledger(args.results_dir / "low_data.jsonl", knobs_of(args))
    # SIGTERM unwinds like Ctrl-C, so the `finally` below stops our ganaug serve.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    ctx = Context(args)
    try:
        for size in args.sizes:
            for seed in args.seeds:
                run_unit(Unit(size, seed, args, ledger, ctx), args.columns, ledger, args)
    finally:
        ctx.close()
    write_table(ledger, args, COLUMNS)


if __name__ == "__main__":
    main()
