"""The small CNN that judges synthetic images: downstream classifier and evaluator (torch).

Images enter the network as float NCHW in [-1, 1] (`models.images.to_unit_nchw`), the
same range the generator emits, so the exported evaluator scores generator output as is.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from models.images import to_unit_nchw
from models.networks import MAX_SIZE, MIN_SIZE
from training.export import export_image_onnx

FEATURES = 128
MAX_GRID = 4  # final feature map is at most 4x4, so 128 px input keeps the FC layer small


class SmallCNN(nn.Module):
    """3 x (3x3 conv, ReLU, 2x2 max-pool) with 32/64/128 channels, FC 128, dropout 0.3, FC K."""

    def __init__(self, num_classes: int, channels: int, size: int):
        super().__init__()
        if not MIN_SIZE <= size <= MAX_SIZE:
            raise ValueError(f"image size must be in {MIN_SIZE}..{MAX_SIZE}, got {size}")
        self.kwargs = dict(num_classes=num_classes, channels=channels, size=size)
        blocks: list[nn.Module] = []
        in_ch = channels
        for out_ch in (32, 64, 128):
            blocks += [nn.Conv2d(in_ch, out_ch, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
            in_ch = out_ch
        grid = size // 8  # three floor-halvings; 3 at 28 px as in the reference CNN
        shrink = -(-grid // MAX_GRID)
        if shrink > 1:  # only above 39 px: average-pool down to at most MAX_GRID x MAX_GRID
            blocks.append(nn.AvgPool2d(shrink))
            grid //= shrink
        self.convs = nn.Sequential(*blocks)
        self.fc = nn.Linear(in_ch * grid * grid, FEATURES)
        self.dropout = nn.Dropout(0.3)
        self.head = nn.Linear(FEATURES, num_classes)

    def config(self) -> dict[str, int]:
        """Constructor kwargs: `SmallCNN(**m.config())` rebuilds the architecture."""
        return dict(self.kwargs)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate activations (B, 128), after the ReLU, of images in [-1, 1]."""
        h = self.convs(x).flatten(1)  # (B, 128 * g * g)
        return F.relu(self.fc(h))  # (B, 128)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(self.features(x)))  # (B, K) logits


@dataclass(frozen=True)
class ClassifierBudget:
    """Optimisation budget of one classifier run (the RESEARCH.md reference values)."""

    steps: int = 3000
    batch_size: int = 64
    lr: float = 1e-3


def shift_radius(size: int) -> int:
    """Largest classic-augmentation shift in pixels: 2 px at 28 px, scaled with size."""
    return max(2, round(2 * size / 28))


def random_shift(x: torch.Tensor, radius: int, generator: torch.Generator) -> torch.Tensor:
    """Shift each image of (B, C, H, W) by its own integer (dy, dx) in [-radius, radius].

    Uncovered pixels become black (-1), i.e. zero padding in uint8 pixel space.
    """
    b, _, h, w = x.shape
    padded = F.pad(x, (radius,) * 4, value=-1.0).permute(0, 2, 3, 1)  # (B, H+2r, W+2r, C)
    dy, dx = torch.randint(0, 2 * radius + 1, (2, b, 1), generator=generator).to(x.device)
    rows = dy + torch.arange(h, device=x.device)  # (B, H)
    cols = dx + torch.arange(w, device=x.device)  # (B, W)
    batch = torch.arange(b, device=x.device)[:, None, None]
    return padded[batch, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)  # (B, C, H, W)


def batch_order(n: int, budget: ClassifierBudget, generator: torch.Generator) -> torch.Tensor:
    """Row indices (steps, batch_size): shuffled epochs laid end to end."""
    needed = budget.steps * budget.batch_size
    epochs = [torch.randperm(n, generator=generator) for _ in range(-(-needed // n))]
    return torch.cat(epochs)[:needed].view(budget.steps, budget.batch_size)


def _training_rows(
    x: np.ndarray,
    y: np.ndarray,
    synthetic: tuple[np.ndarray, np.ndarray] | None,
    synthetic_weight: float,
    device: torch.device,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Real and synthetic rows stacked on the device: images, labels, per-row loss weights."""
    xs, ys = synthetic if synthetic is not None else (x[:0], y[:0])
    if xs.shape[1:] != x.shape[1:] or len(xs) != len(ys):
        raise ValueError(
            f"synthetic images {xs.shape} / labels {np.shape(ys)} do not match real {x.shape}"
        )
    images = torch.from_numpy(to_unit_nchw(np.concatenate([x, xs]))).to(device)
    labels = torch.from_numpy(np.concatenate([y, ys]).astype(np.int64)).to(device)
    weights = torch.ones(len(labels), device=device)
    weights[len(x) :] = synthetic_weight
    return images, labels, weights


def train_classifier(
    x: np.ndarray,
    y: np.ndarray,
    *,
    num_classes: int,
    budget: ClassifierBudget = ClassifierBudget(),
    seed: int,
    classic_augment: bool = True,
    synthetic: tuple[np.ndarray, np.ndarray] | None = None,
    synthetic_weight: float = 1.0,
    device: str | None = None,
) -> SmallCNN:
    """Train a SmallCNN with Adam on real (and optional synthetic) rows; same seed, same net.

    Args:
        x, y: uint8 (N, S, S, C) real images and int64 (N,) labels in 0..num_classes-1.
        classic_augment: shift every batch by random integers up to `shift_radius(S)` px.
        synthetic: extra (images, labels) rows, shuffled together with the real rows.
        synthetic_weight: factor on the loss of synthetic rows (the batch loss is the mean
            of weighted per-row losses).
        device: torch device; by default CUDA when available. Bit-for-bit repeatable on CPU.

    Returns:
        The trained model in eval mode, on `device`.
    """
    if x.ndim != 4 or x.shape[1] != x.shape[2] or len(x) != len(y) or len(x) == 0:
        raise ValueError(f"expected images (N, S, S, C) and labels (N,), got {x.shape}, {y.shape}")
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    images, labels, weights = _training_rows(x, y, synthetic, synthetic_weight, dev)
    if labels.min() < 0 or labels.max() >= num_classes:
        raise ValueError(f"labels must be in 0..{num_classes - 1}")

    def shuffled_rows(generator: torch.Generator) -> Iterator[Batch]:
        for rows in batch_order(len(labels), budget, generator).to(dev):
            yield images[rows], _weighted_cross_entropy(labels[rows], weights[rows])

    return train_on_batches(
        shuffled_rows,
        lambda: SmallCNN(num_classes, x.shape[3], x.shape[1]),
        seed=seed,
        lr=budget.lr,
        classic_augment=classic_augment,
        device=dev,
    )


Batch = tuple[torch.Tensor, Callable[[torch.Tensor], torch.Tensor]]
"""Images (B, C, S, S) in [-1, 1] on the training device, and the batch loss as a function
of the network's logits (B, K)."""


Net = TypeVar("Net", bound=nn.Module)


def train_on_batches(
    batches: Callable[[torch.Generator], Iterable[Batch]],
    network: Callable[[], Net],
    *,
    seed: int,
    lr: float = ClassifierBudget.lr,
    classic_augment: bool = True,
    device: str | torch.device | None = None,
) -> Net:
    """Train `network()` with Adam, one step per batch of `batches(generator)`: the loop of
    `train_classifier` for a batch source of the caller's (e.g. `ganaug.data`'s sampler).

    Args:
        batches: called once with the seeded CPU generator that also draws the shifts (a
            source may draw its own order from it); yields (images, loss of the logits).
        network: builds the net (logits out) under the seeded RNG: same seed, same weights.
        classic_augment: shift every batch by random integers up to `shift_radius(S)` px.
        device: where the net trains; by default CUDA when available.

    Returns:
        The trained network in eval mode, on `device`.
    """
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
        torch.manual_seed(seed)  # weights and dropout; the caller's RNG is restored after
        model = network().to(dev)
        generator = torch.Generator().manual_seed(seed)  # batch order and shifts, on CPU
        _fit(model, batches(generator), lr, classic_augment, generator)
    return model.eval()


def _weighted_cross_entropy(
    labels: torch.Tensor, weights: torch.Tensor
) -> Callable[[torch.Tensor], torch.Tensor]:
    """The loss of a batch of rows: mean of per-row cross-entropies times their weights."""

    def loss(logits: torch.Tensor) -> torch.Tensor:
        return (F.cross_entropy(logits, labels, reduction="none") * weights).mean()

    return loss


def _fit(
    model: nn.Module,
    batches: Iterable[Batch],
    lr: float,
    classic_augment: bool,
    generator: torch.Generator,
) -> None:
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for images, loss_of in batches:
        if classic_augment:
            images = random_shift(images, shift_radius(images.shape[-1]), generator)
        loss = loss_of(model(images))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()


@torch.no_grad()
def _run_batches(
    model: nn.Module,
    x: np.ndarray,
    batch_size: int,
    fn: Callable[[nn.Module, torch.Tensor], torch.Tensor],
) -> np.ndarray:
    """Apply fn(model, images in [-1, 1]) to uint8 NHWC x in batches; float32 numpy out."""
    model.eval()
    device = next(model.parameters()).device
    starts = range(0, len(x), batch_size) or [0]  # one empty batch gives a (0, D) result
    outputs = [
        fn(model, torch.from_numpy(to_unit_nchw(x[start : start + batch_size])).to(device))
        for start in starts
    ]
    return torch.cat(outputs).float().cpu().numpy()


def predict_proba(model: SmallCNN, x: np.ndarray, batch_size: int = 512) -> np.ndarray:
    """Class probabilities float32 (N, K) for uint8 (N, S, S, C) images."""
    return _run_batches(model, x, batch_size, lambda m, b: torch.softmax(m(b), dim=1))


def extract_features(model: SmallCNN, x: np.ndarray, batch_size: int = 512) -> np.ndarray:
    """Penultimate features float32 (N, 128) for uint8 (N, S, S, C) images."""
    return _run_batches(model, x, batch_size, lambda m, b: m.features(b))


def accuracy(model: SmallCNN, x: np.ndarray, y: np.ndarray) -> float:
    """Fraction of images whose most probable class is their label."""
    return float(np.mean(predict_proba(model, x).argmax(axis=1) == y))


class _Evaluator(nn.Module):
    """The exported graph: images in [-1, 1] -> (softmax probabilities, features)."""

    def __init__(self, model: SmallCNN):
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.model.features(image)  # (B, 128)
        return torch.softmax(self.model.head(features), dim=1), features  # (B, K), (B, 128)


def export_evaluator_onnx(model: SmallCNN, path: Path) -> None:
    """Write `model` as ONNX: input `image` float32 (B, C, H, W) in [-1, 1], dynamic batch;
    outputs `probs` (B, K) and `features` (B, 128). Raises RuntimeError if ONNX Runtime
    disagrees with torch.
    """
    evaluator = _Evaluator(copy.deepcopy(model).cpu().eval())
    _export(evaluator, ["probs", "features"], model.config(), path)


class _SoftLabels(nn.Module):
    """The exported ensemble: images in [-1, 1] -> softmax(mean member logits / T)."""

    def __init__(self, members: list[SmallCNN], temperature: float):
        super().__init__()
        self.members = nn.ModuleList(members)
        self.temperature = temperature

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor]:
        logits = torch.stack([member(image) for member in self.members]).mean(0)  # (B, K)
        return (torch.softmax(logits / self.temperature, dim=1),)  # (B, K)


def ensemble_proba(
    members: list[SmallCNN], x: np.ndarray, temperature: float, batch_size: int = 512
) -> np.ndarray:
    """The soft labels of uint8 (N, S, S, C) images in torch: what soft_labels.onnx gives."""
    ensemble = _SoftLabels(members, temperature)
    return _run_batches(ensemble, x, batch_size, lambda m, b: m(b)[0])


def export_soft_labels_onnx(members: list[SmallCNN], temperature: float, path: Path) -> None:
    """Write the ensemble as one ONNX graph: input `image` float32 (B, C, H, W) in [-1, 1],
    dynamic batch; output `probs` (B, K) = softmax(mean of the members' logits / temperature).
    Raises RuntimeError if ONNX Runtime disagrees with torch.
    """
    if not members or temperature <= 0:
        raise ValueError(f"need members and a temperature > 0, got {len(members)}, {temperature}")
    configs = {tuple(sorted(member.config().items())) for member in members}
    if len(configs) != 1:
        raise ValueError(f"ensemble members differ in architecture: {configs}")
    copies = [copy.deepcopy(member).cpu().eval() for member in members]
    _export(_SoftLabels(copies, temperature).eval(), ["probs"], members[0].config(), path)


def _export(graph: nn.Module, outputs: list[str], config: dict[str, int], path: Path) -> None:
    """Export an image graph of SmallCNNs (`outputs` named in order), checked against torch."""
    shape = (config["channels"], config["size"], config["size"])
    export_image_onnx(graph, path, outputs=outputs, image_shape=shape)
