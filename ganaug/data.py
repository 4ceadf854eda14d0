"""Train your own classifier on a ganaug archive, mixed the way its recipe says (PyTorch).

    data = AugmentedArchive("augmented.zip")
    batches = RecipeBatchSampler(data, 64, data.recipe, seed=0, epochs=30)
    for images, targets, synthetic in DataLoader(data, batch_sampler=batches):
        loss = recipe_loss(model(images), targets, synthetic, data.recipe)

torch is a dependency of ganaug; the `data` extra names it for those who want only this.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Literal, Protocol

import numpy as np
from PIL import Image

from models.artifact import ARCHIVE_LABELS_FILE, MANIFEST_FILE, Recipe

try:
    import torch
    import torch.nn.functional as F
    from torch.utils.data import Dataset, Sampler
except ImportError as exc:  # pragma: no cover - torch is a core dependency today
    raise ImportError("ganaug.data needs PyTorch: pip install 'ganaug[data]'") from exc

Labels = Literal["soft", "hard"]


class AugmentedArchive(Dataset):
    """The images of an archive (`GET /v1/models/{id}/archive`) with their labels.csv rows.

    Item i is (image float32 (C, H, W) in [0, 1], target float32 (K,), is_synthetic bool):
    the target is the row's p_<class> columns (soft labels for synthetic rows, one-hot for
    real ones) with labels="soft", the one-hot class the image was drawn for with "hard".
    """

    def __init__(self, path: str | Path, labels: Labels | None = None, transform=None):
        """Args:
        path: the archive zip (images, labels.csv, manifest.json).
        labels: soft or hard targets; by default the archive's recipe says (soft without one).
        transform: applied to each image tensor (e.g. a torchvision transform).
        """
        self.path, self.transform = Path(path), transform
        with zipfile.ZipFile(self.path) as archive:
            self.manifest = json.loads(archive.read(MANIFEST_FILE))
            members = set(archive.namelist())
            text = archive.read(ARCHIVE_LABELS_FILE).decode()
        header, *rows = list(csv.reader(io.StringIO(text)))
        self.classes: list[str] = [c["name"] for c in self.manifest["classes"]]
        expected = ["file", "class", "kind", *(f"p_{name}" for name in self.classes)]
        if header != expected:
            raise ValueError(f"{ARCHIVE_LABELS_FILE} header {header} is not {expected}")
        recipe = self.manifest.get("recipe")
        self.recipe: Recipe | None = Recipe.model_validate(recipe) if recipe else None
        self.labels: Labels = labels or (self.recipe.labels if self.recipe else "soft")
        self.files: list[str] = [row[0] for row in rows]
        missing = [name for name in self.files if name not in members]
        if missing:
            raise ValueError(f"{ARCHIVE_LABELS_FILE} names files the archive lacks: {missing[:3]}")
        index = {name: i for i, name in enumerate(self.classes)}
        self.class_indices = np.array([index[row[1]] for row in rows], np.int64)
        self.is_synthetic = np.array([row[2] == "synthetic" for row in rows], bool)
        probs = np.array([row[3:] for row in rows], np.float32).reshape(len(rows), -1)
        hard = np.eye(len(self.classes), dtype=np.float32)[self.class_indices]
        self.targets = probs if self.labels == "soft" else hard
        self._zip: tuple[int, zipfile.ZipFile] | None = None

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, bool]:
        with Image.open(io.BytesIO(self._archive().read(self.files[i]))) as png:
            pixels = np.asarray(png)
        pixels = pixels[..., None] if pixels.ndim == 2 else pixels  # (H, W, C)
        image = torch.from_numpy(pixels.transpose(2, 0, 1).astype(np.float32) / 255)
        if self.transform is not None:
            image = self.transform(image)
        return image, torch.from_numpy(self.targets[i]), bool(self.is_synthetic[i])

    def _archive(self) -> zipfile.ZipFile:
        """This process's open zip (DataLoader workers each open their own)."""
        if self._zip is None or self._zip[0] != os.getpid():
            self._zip = (os.getpid(), zipfile.ZipFile(self.path))
        return self._zip[1]

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_zip": None}


class HowToMix(Protocol):
    """The fields of a Recipe that the sampler and the loss read (a Recipe, or the quality
    report's trial settings: the report measures mixes with this code)."""

    @property
    def synthetic_batch_fraction(self) -> float | None: ...

    @property
    def synthetic_loss_weight(self) -> float: ...

    @property
    def real_only_final_steps(self) -> float: ...


class MixedRows(Protocol):
    """What RecipeBatchSampler reads of a dataset: its length and which rows are synthetic
    (AugmentedArchive, or rows of the caller's own, as the quality report's trials)."""

    is_synthetic: np.ndarray  # bool (N,)

    def __len__(self) -> int: ...


class RecipeBatchSampler(Sampler[list[int]]):
    """Batches of dataset indices with the recipe's synthetic share in each.

    Every batch holds round(synthetic_batch_fraction x batch_size) synthetic rows and real
    rows for the rest, except the last real_only_final_steps of the batches, which are
    real only. An epoch is one pass over the real rows; synthetic rows cycle in shuffled
    passes of their own. With no recipe (or a fraction of None) the share is the archive's.
    """

    def __init__(
        self,
        dataset: MixedRows,
        batch_size: int,
        recipe: HowToMix | None,
        seed: int,
        *,
        epochs: int = 1,
        steps: int | None = None,
    ):
        """Args:
        epochs: passes over the real rows the sampler spans (its length).
        steps: the number of batches instead, for a training budget counted in steps.
        """
        if batch_size < 1 or epochs < 1 or (steps is not None and steps < 1):
            raise ValueError(
                f"need batch_size, epochs and steps >= 1, got {batch_size}, {epochs}, {steps}"
            )
        self.real = np.flatnonzero(~dataset.is_synthetic)
        self.synthetic = np.flatnonzero(dataset.is_synthetic)
        fraction = recipe.synthetic_batch_fraction if recipe else None
        if fraction is None:
            fraction = len(self.synthetic) / max(len(dataset), 1)
        self.per_batch = round(fraction * batch_size) if len(self.synthetic) else 0
        if self.per_batch < batch_size and not len(self.real):
            raise ValueError("the recipe needs real rows and the archive has none")
        self.batch_size, self.seed, self.epoch = batch_size, seed, 0
        real_per_batch = batch_size - self.per_batch
        pool = len(self.real) if real_per_batch else len(self.synthetic)
        self.total = steps or epochs * math.ceil(pool / (real_per_batch or batch_size))
        final = recipe.real_only_final_steps if recipe else 0.0
        self.real_only_from = self.total - (round(final * self.total) if len(self.real) else 0)

    def __len__(self) -> int:
        return self.total

    def set_epoch(self, epoch: int) -> None:
        """For loops that iterate the sampler once per epoch (as DistributedSampler): each
        epoch then gets its own order. With `epochs` the sampler already spans the whole
        training, real-only tail at its end: iterate it once."""
        self.epoch = epoch

    def __iter__(self) -> Iterator[list[int]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        real, synthetic = _cycle(self.real, rng), _cycle(self.synthetic, rng)
        for step in range(self.total):
            mixed = self.per_batch if step < self.real_only_from else 0
            rows = [next(real) for _ in range(self.batch_size - mixed)]
            rows += [next(synthetic) for _ in range(mixed)]
            yield rows


def _cycle(indices: np.ndarray, rng: np.random.Generator) -> Iterator[int]:
    """Shuffled passes over indices, end to end (nothing when there are none)."""
    while len(indices):
        yield from (int(i) for i in rng.permutation(indices))


def recipe_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    is_synthetic: torch.Tensor,
    recipe: HowToMix | None,
) -> torch.Tensor:
    """Mean over the batch of each row's cross-entropy against its target, synthetic rows
    weighted by recipe.synthetic_loss_weight (no recipe: every row at weight 1).

    The targets are used as given: soft or hard is the dataset's choice (AugmentedArchive's
    `labels`, by default the recipe's), so a hard synthetic target is the class the image was
    drawn for, never the soft labeller's guess.

    Args:
        logits: (B, K) the classifier's outputs.
        targets: (B, K) probabilities (AugmentedArchive's targets).
        is_synthetic: (B,) bool.
    """
    per_row = -(targets * F.log_softmax(logits, dim=1)).sum(dim=1)  # (B,)
    weight = recipe.synthetic_loss_weight if recipe is not None else 1.0
    weights = torch.where(is_synthetic.to(logits.device), weight, 1.0)  # (B,)
    return (per_row * weights).mean()
