"""The stratified held-out split: images the GAN never sees, kept to judge its samples (numpy)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from models.artifact import ArtifactFile

SPLIT_FILE = "split.json"


@dataclass(frozen=True)
class Split(ArtifactFile):
    """Which rows of the dataset trained the GAN and which were held out (split.json)."""

    file_name: ClassVar[str] = SPLIT_FILE
    holdout_fraction: float
    seed: int
    train: np.ndarray  # int64 indices into the dataset, sorted
    holdout: np.ndarray

    def to_bytes(self) -> bytes:
        data = {
            "holdout_fraction": self.holdout_fraction,
            "seed": self.seed,
            "train": self.train.tolist(),
            "holdout": self.holdout.tolist(),
        }
        return json.dumps(data).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> Split:
        fields = json.loads(data)
        return cls(
            holdout_fraction=fields["holdout_fraction"],
            seed=fields["seed"],
            train=np.asarray(fields["train"], dtype=np.int64),
            holdout=np.asarray(fields["holdout"], dtype=np.int64),
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
