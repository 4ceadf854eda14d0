"""The stratified held-out split: images the GAN never sees, kept to judge its samples (numpy)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SPLIT_FILE = "split.json"


@dataclass(frozen=True)
class Split:
    holdout_fraction: float
    seed: int
    train: np.ndarray  # int64 indices into the dataset, sorted
    holdout: np.ndarray

    def save(self, model_dir: Path) -> None:
        data = {
            "holdout_fraction": self.holdout_fraction,
            "seed": self.seed,
            "train": self.train.tolist(),
            "holdout": self.holdout.tolist(),
        }
        (model_dir / SPLIT_FILE).write_text(json.dumps(data))

    @classmethod
    def load(cls, model_dir: Path) -> Split:
        data = json.loads((model_dir / SPLIT_FILE).read_text())
        return cls(
            holdout_fraction=data["holdout_fraction"],
            seed=data["seed"],
            train=np.asarray(data["train"], dtype=np.int64),
            holdout=np.asarray(data["holdout"], dtype=np.int64),
        )


def stratified_split(labels: np.ndarray, holdout_fraction: float, seed: int) -> Split:
    """Hold out `holdout_fraction` of every class (rounded), always leaving one to train on.

    A class with a single image keeps it for training; 0 disables the held-out set.
    """
    if not 0 <= holdout_fraction < 1:
        raise ValueError(f"holdout_fraction must be in [0, 1), got {holdout_fraction}")
    rng = np.random.default_rng(seed)
    train, holdout = [], []
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        held = min(int(round(len(members) * holdout_fraction)), len(members) - 1)
        holdout.append(members[:held])
        train.append(members[held:])
    return Split(
        holdout_fraction=holdout_fraction,
        seed=seed,
        train=np.sort(np.concatenate(train)).astype(np.int64),
        holdout=np.sort(np.concatenate(holdout)).astype(np.int64),
    )
