"""Checkpoint selection (shared/RESEARCH.md, lever 6): export the generator whose samples
best recall the held-out images, judged during training, instead of the last one (torch).
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Generic, TypeVar

import numpy as np
import torch

from models.artifact import Selection
from models.images import to_uint8_nhwc
from training.classifier import ClassifierBudget, extract_features, train_classifier
from training.config import TrainConfig
from training.dataset import StoredDataset
from training.metrics import PRDC_K, prdc
from training.split import Split

if TYPE_CHECKING:
    from models.networks import Generator
    from training.loop import Trainer

GENERATE_BATCH = 256  # samples per generator forward while evaluating

State = TypeVar("State")


@dataclass
class BestSoFar(Generic[State]):
    """The selection rule: keep the state of the highest score so far, the later on ties."""

    step: int | None = None
    score: float = -math.inf
    state: State | None = None
    history: list[tuple[int, float]] = field(default_factory=list)

    def offer(self, step: int, score: float, state_fn: Callable[[], State]) -> bool:
        """Record step's score; take state_fn() (called only then) if it is the best so far."""
        self.history.append((step, score))
        if score < self.score:
            return False
        self.step, self.score, self.state = step, score, state_fn()
        return True


def state_copy(net: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A detached copy of net's weights and buffers (its state_dict)."""
    return {name: value.detach().clone() for name, value in net.state_dict().items()}


class RecallSelector:
    """Judges the exported generator every `select_every` steps by PRDC recall of the
    held-out images against its samples, and keeps the best generator's state.

    Evaluations draw their latents from a generator of their own, seeded alike every time,
    so they compare like with like and leave the training's random numbers untouched.
    """

    def __init__(
        self, dataset: StoredDataset, split: Split, config: TrainConfig, device: torch.device
    ):
        start = time.perf_counter()
        if config.seed is None:
            raise ValueError("RecallSelector needs the run's seed (run() fills it in)")
        self.config, self.device, self.seed = config, device, config.seed
        x_train, y_train = np.asarray(dataset.x[split.train]), dataset.y[split.train]
        self.evaluator = train_classifier(
            x_train,
            y_train,
            num_classes=len(dataset.classes),
            budget=ClassifierBudget(steps=config.select_evaluator_steps),
            seed=self.seed,
            device=str(device),
        )
        self.heldout = extract_features(self.evaluator, np.asarray(dataset.x[split.holdout]))
        # as many samples per class as the train split has, as the benchmark compares them
        counts = np.bincount(y_train, minlength=len(dataset.classes))
        self.labels = torch.from_numpy(np.repeat(np.arange(len(counts)), counts)).to(device)
        self.k = min(PRDC_K, len(self.heldout) - 1, len(self.labels) - 1)  # as the report
        if self.k < 1:
            raise ValueError(
                f"select_by recall needs at least 2 held-out images, got {len(self.heldout)}: "
                "raise holdout_fraction or use select_by last"
            )
        self.best: BestSoFar[dict[str, torch.Tensor]] = BestSoFar()
        self.evaluator_s = time.perf_counter() - start
        self.evaluation_s = 0.0

    def evaluate(self, trainer: Trainer) -> float:
        """The recall of the trainer's exported generator now; keeps its state if best."""
        start = time.perf_counter()
        rng = torch.Generator(self.device).manual_seed(self.seed)
        net = copy.deepcopy(trainer.export_generator)
        trainer.standing_stats(net, rng)  # judge it as it would be exported
        features = self._sample_features(net, rng)
        recall = prdc(self.heldout, features, k=self.k)["recall"]
        self.best.offer(trainer.steps_done, recall, lambda: state_copy(trainer.export_generator))
        self.evaluation_s += time.perf_counter() - start
        return recall

    def _sample_features(self, net: Generator, rng: torch.Generator) -> np.ndarray:
        """Evaluator features (N, 128) of untruncated samples, self.labels' classes."""
        z = torch.randn(len(self.labels), self.config.z_dim, device=self.device, generator=rng)
        with torch.no_grad():
            images = torch.cat(
                [
                    net(z[i : i + GENERATE_BATCH], self.labels[i : i + GENERATE_BATCH])
                    for i in range(0, len(z), GENERATE_BATCH)
                ]
            )  # (N, C, S, S)
        return extract_features(self.evaluator, to_uint8_nhwc(images.float().cpu().numpy()))

    def restore_best(self, trainer: Trainer) -> None:
        """Load the best generator's state into the trainer's exported generator."""
        assert self.best.state is not None, "the last step is always evaluated"
        trainer.export_generator.load_state_dict(self.best.state)

    def record(self) -> Selection:
        """What the manifest says about the selection."""
        assert self.best.step is not None
        return Selection(
            by="recall",
            step=self.best.step,
            recall=self.best.score,
            evaluations=self.best.history,
            evaluator_s=round(self.evaluator_s, 2),
            evaluation_s=round(self.evaluation_s, 2),
        )
