"""The model directory format: file names, the manifest schema and atomic writes (no torch)."""

from __future__ import annotations

import json
import os
import tempfile
from abc import ABC, abstractmethod
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar, Literal, Self

from pydantic import BaseModel, Field

MANIFEST_FILE = "manifest.json"
GENERATOR_FILE = "generator.onnx"
CLASSIFIER_FILE = "classifier.onnx"  # the critic's class head (methods that have one)
SOFT_LABELS_FILE = "soft_labels.onnx"  # the report's evaluator ensemble at a temperature
CHECKPOINT_FILE = "checkpoint.pt"
SAMPLES_FILE = "samples.png"
STATS_FILE = "stats.jsonl"
REPORT_FILE = "report.json"  # the quality report (training.report)
REPORT_PICTURES_DIR = "report"  # its pictures, <name>.png
ARCHIVE_LABELS_FILE = "labels.csv"  # in an archive zip: file, class, kind, p_<class>...
ASSIGNMENTS_FILE = "clusters.npy"  # vcagan: int64 (N,) each dataset image's class index

FORMAT = "ganaug.generator/1"


class ArtifactFile(ABC):
    """An object stored as one named file of a directory: `obj.save(directory)` writes it
    atomically, `Cls.load(directory)` reads it back. Subclasses set `file_name` and give
    `to_bytes` / `from_bytes`."""

    file_name: ClassVar[str]

    @classmethod
    def path(cls, directory: Path) -> Path:
        """Where the object lives in directory."""
        return Path(directory) / cls.file_name

    def save(self, directory: Path) -> None:
        """Write into directory; readers see the old file or the whole new one."""
        atomic_write_bytes(self.path(directory), self.to_bytes())

    @classmethod
    def load(cls, directory: Path) -> Self:
        """Read back what `save` wrote into directory."""
        return cls.from_bytes(cls.path(directory).read_bytes())

    @abstractmethod
    def to_bytes(self) -> bytes:
        """The file's content."""

    @classmethod
    @abstractmethod
    def from_bytes(cls, data: bytes) -> Self:
        """The object from the file's content."""


class ImageShape(BaseModel):
    height: int = Field(ge=1)
    width: int = Field(ge=1)
    channels: Literal[1, 3]


class TensorSpec(BaseModel):
    """One input or output of the ONNX graph; "B" marks the dynamic batch axis."""

    name: str
    dtype: Literal["float32", "int64"]
    shape: list[int | Literal["B"]]
    description: str = ""


class TruncationPoint(BaseModel):
    """Held-out accuracy of a classifier trained on real + synthetic images at one truncation."""

    truncation: float | None = Field(description="latent truncation; None = untruncated")
    accuracy: float


class Recipe(BaseModel):
    """How much synthetic data to add to the real set, and which: the report's recommendation."""

    ratio: float = Field(
        ge=0, description="synthetic images per class as a multiple of the real count; 0 = none"
    )
    truncation: float | None = Field(description="latent truncation; None = untruncated")
    filter: Literal["none", "confident", "manifold"]
    min_confidence: float = Field(ge=0, le=1, description="evaluator confidence kept (confident)")
    heldout_accuracy: float
    baseline_accuracy: float = Field(description="the same classifier on real images only")
    lift: float = Field(description="heldout_accuracy - baseline_accuracy")
    # How to mix: the defaults are what recipes before these fields meant (every row
    # shuffled together at full weight, hard labels, no real-only end).
    synthetic_batch_fraction: float | None = Field(
        None,
        ge=0,
        le=1,
        description="share of each training batch that is synthetic; None = rows shuffled "
        "together, so ratio / (1 + ratio) on average",
    )
    synthetic_loss_weight: float = Field(
        1.0, ge=0, description="factor on the loss of synthetic rows (real rows: 1)"
    )
    labels: Literal["soft", "hard"] = Field(
        "hard",
        description="soft: synthetic rows learn the report's soft labels (labels.csv p_*); "
        "hard: the class they were drawn for",
    )
    real_only_final_steps: float = Field(
        0.0, ge=0, le=1, description="fraction of training, at the end, on real rows only"
    )
    basis: Literal["search", "benchmark"] = Field(
        "search",
        description="search: the report's own recipe search found it (or, at ratio 0, found "
        "nothing better than real images alone); benchmark: the search could not tell on "
        "this dataset's few held-out images, so the recipe our benchmark measured to help "
        "datasets this small is recommended, having done no harm beyond noise on them",
    )
    mixing_searched: bool = Field(
        False,
        description="whether the report searched how to mix (True: the four mixing fields "
        "are the measured choice, and with ratio 0 no mixing beat real images alone) or "
        "not (False): then they are defaults from the literature, or, with basis "
        "benchmark, the mixing the benchmark measured",
    )


class SoftLabelsInfo(BaseModel):
    """The report's soft labeller: evaluators trained with different seeds, one ONNX graph
    giving softmax(mean member logits / temperature)."""

    file: str = SOFT_LABELS_FILE
    members: int = Field(ge=1)
    temperature: float = Field(gt=0)
    heldout_accuracy: float | None = Field(
        description="top-class accuracy of the same ensemble trained on the train split only "
        "(what the report's trials label with); None: no held-out"
    )
    trained_on: int | None = Field(
        None,
        description="images the served members trained on: every image of the dataset, "
        "held-out ones too (None: a report from before, whose members saw the train split)",
    )


class Evaluation(BaseModel):
    """What the quality report found; written into the manifest by `training.report`."""

    t_star: float | None = Field(description="the best truncation; None = untruncated is best")
    truncation_sweep: list[TruncationPoint]
    recipe: Recipe | None = Field(description="None when there is no held-out set to choose one")
    evaluator_file: str | None
    manifold_file: str | None = Field(
        None, description="real class manifold for filter=manifold (reports before it: None)"
    )
    report_file: str
    soft_labels: SoftLabelsInfo | None = Field(
        None, description="the soft-label ensemble (reports before it: None)"
    )


class ClassifierInfo(BaseModel):
    """The exported classifier: the critic's trunk and class head (`training.export`)."""

    file: str = CLASSIFIER_FILE
    source: Literal["critic"] = "critic"
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    group_std: float | None = Field(
        description="the constant standing in for the critic's minibatch-stddev channel (its "
        "mean over real training batches), so each image is classified on its own; None "
        "when the critic has no such channel"
    )


class Selection(BaseModel):
    """Which training step's generator was exported, chosen by a held-out measure
    (`TrainConfig.select_by`)."""

    by: Literal["recall"]
    step: int = Field(ge=0, description="the generator update whose generator was exported")
    recall: float = Field(description="its PRDC recall of the held-out images")
    evaluations: list[tuple[int, float]] = Field(
        description="(step, recall) of every evaluation, in training order"
    )
    evaluator_s: float = Field(description="seconds spent training the evaluator CNN")
    evaluation_s: float = Field(description="seconds spent in all evaluations together")


class Clusters(BaseModel):
    """The classes a vcagan model discovered: virtual classes whose P(C) reached
    min_class_probability, named cluster_00, cluster_01, ... by decreasing P(C)."""

    virtual_classes: list[int] = Field(
        description="the virtual class (generator and classifier index) of each of "
        "manifest.classes; generator.onnx and classifier.onnx already map them"
    )
    probabilities: list[float] = Field(description="P(C) of each of manifest.classes")
    prior: list[float] = Field(description="P(C) over all max_classes virtual classes")
    entropy: float = Field(description="entropy of P(C) in nats (all virtual classes)")
    min_class_probability: float
    counts: list[int] = Field(
        description="dataset images the classifier assigns to each of manifest.classes"
    )
    assignments_file: str = Field(
        ASSIGNMENTS_FILE,
        description="int64 (N,) npy: each dataset image's index into manifest.classes",
    )


class TrainingDevice(BaseModel):
    """Where a model was trained."""

    type: str = Field(description="torch device type: cpu or cuda")
    name: str | None = Field(
        None, description="the GPU's name (torch.cuda.get_device_name); None on a CPU"
    )


class Manifest(BaseModel, ArtifactFile):
    """What a model directory holds and how to call its generator (manifest.json)."""

    file_name: ClassVar[str] = MANIFEST_FILE

    format: Literal["ganaug.generator/1"] = FORMAT
    model_id: str
    method: str
    classes: list[str] = Field(min_length=1)
    z_dim: int = Field(ge=1)
    image: ImageShape
    config: dict[str, Any] = Field(description="the training config, seed filled in")
    versions: dict[str, str] = Field(description="ganaug, torch, onnx, python")
    final_losses: dict[str, float]
    steps_completed: int = Field(ge=0)
    created_at: datetime
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    evaluation: Evaluation | None = None
    classifier: ClassifierInfo | None = Field(
        None, description="None: no class head (cgan), or trained before classifier.onnx"
    )
    selection: Selection | None = Field(
        None, description="None: the last step's generator (select_by last, or older models)"
    )
    clusters: Clusters | None = Field(
        None, description="vcagan: the discovered classes; None for labelled methods"
    )
    device: TrainingDevice | None = Field(
        None, description="where it was trained; None: trained before this was recorded"
    )

    def to_bytes(self) -> bytes:
        return self.model_dump_json(indent=2).encode() + b"\n"

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        """Validate manifest.json's content."""
        return cls.model_validate_json(data)


def generator_io(z_dim: int, image: ImageShape) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """Describe the inputs and outputs that `training.export` gives the generator graph."""
    inputs = [
        TensorSpec(
            name="latent",
            dtype="float32",
            shape=["B", z_dim],
            description="standard-normal latents, optionally truncated",
        ),
        TensorSpec(
            name="class",
            dtype="int64",
            shape=["B"],
            description="class index into manifest.classes",
        ),
    ]
    outputs = [
        image_spec(image),
    ]
    return inputs, outputs


def image_spec(image: ImageShape) -> TensorSpec:
    """The `image` tensor both graphs use: the generator's output, the classifier's input."""
    return TensorSpec(
        name="image",
        dtype="float32",
        shape=["B", image.channels, image.height, image.width],
        description="NCHW pixels in [-1, 1]",
    )


def classifier_io(num_classes: int, image: ImageShape) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """Describe the inputs and outputs that `training.export` gives the classifier graph."""
    inputs = [
        image_spec(image),
    ]
    outputs = [
        TensorSpec(
            name="probs",
            dtype="float32",
            shape=["B", num_classes],
            description="softmax class probabilities, columns in manifest.classes order",
        ),
    ]
    return inputs, outputs


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write data to path so readers see the old file or the whole new one, never a part."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o644)  # mkstemp makes 0600; the API may run as another user
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# What the report's FID, KID and PRDC are computed on, said in report.json's `metrics`: they
# are not the Inception-based figures of papers, and must not be compared with them.
FEATURES_NOTE = (
    "FID, KID, precision/recall/density/coverage and evaluator_sample_accuracy use the "
    "report's own evaluator CNN (its 128-d penultimate features), trained on this dataset's "
    "real train split; not Inception-v3, so the values compare models of this dataset only, "
    "never published Inception-based numbers. KID divides both feature sets by the real "
    "set's root-mean-square coordinate before its cubic kernel (non-standard)."
)
_RENAMED_REPORT_KEYS = {"inception_accuracy": "evaluator_sample_accuracy"}  # before report/2


def read_report(path: Path) -> dict[str, Any]:
    """report.json as the current format names things, whichever format wrote it."""
    report = json.loads(Path(path).read_text())

    def renamed(value: Any) -> Any:
        if isinstance(value, dict):
            return {_RENAMED_REPORT_KEYS.get(k, k): renamed(v) for k, v in value.items()}
        if isinstance(value, list):
            return [renamed(v) for v in value]
        return value

    report = renamed(report)
    if isinstance(report.get("metrics"), dict):
        report["metrics"].setdefault("features", FEATURES_NOTE)
    return report


def read_stats(model_dir: Path) -> list[dict]:
    """The lines of a training run's stats.jsonl, in step order (none when missing; a line
    cut short by a kill is skipped)."""
    path = Path(model_dir) / STATS_FILE
    lines = []
    for text in path.read_text().splitlines() if path.exists() else []:
        try:
            lines.append(json.loads(text))
        except json.JSONDecodeError:
            continue
    return lines
