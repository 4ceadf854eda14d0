"""Request and response bodies of the v1 API."""

from __future__ import annotations

import math
import time
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field, field_serializer

from training.config import TrainConfig

ModelStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]


class ClassPublic(BaseModel):
    index: int
    name: str
    count: int | None = None
    probability: float | None = Field(
        None, description="vcagan: P(C) of the discovered class (None for named classes)"
    )


class ClustersPublic(BaseModel):
    """What a vcagan model's categorical prior P(C) says about the classes it discovered."""

    entropy: float = Field(description="entropy of P(C) in nats, over all virtual classes")
    prior: list[float] = Field(description="P(C) of every virtual class (max_classes)")
    min_class_probability: float = Field(description="P(C) a virtual class needed to be kept")


class DevicePublic(BaseModel):
    type: str = Field(description="the torch device training ran on: cpu or cuda")
    name: str | None = Field(None, description="the GPU's name on cuda; None on a CPU")

    @classmethod
    def from_progress(cls, progress: dict[str, Any]) -> DevicePublic | None:
        """From the progress the worker records (None before its first report)."""
        device = progress.get("device")
        return None if device is None else cls(type=device, name=progress.get("device_name"))


class ImagePublic(BaseModel):
    height: int
    width: int
    channels: int


def _aged(progress: dict[str, Any], key: str) -> float | None:
    """An ETA the worker wrote at progress["time"], less the time since (never below 0)."""
    eta = progress.get(key)
    if eta is None:
        return None
    since = time.time() - progress["time"] if progress.get("time") else 0.0
    return round(max(eta - max(since, 0.0), 0.0), 1)


class ProgressPublic(BaseModel):
    step: int = 0
    total_steps: int
    fraction: float
    eta_seconds: float | None = Field(
        None, description="seconds of training left while it runs (the report not counted)"
    )
    elapsed_seconds: float | None = None
    losses: dict[str, float] = {}

    @classmethod
    def from_row(cls, progress: dict[str, Any], status: str) -> ProgressPublic:
        total = int(progress.get("total_steps") or 0)
        step = int(progress.get("step") or 0)
        if status == "succeeded":
            step = total
        return cls(
            step=step,
            total_steps=total,
            fraction=round(step / total, 4) if total else 0.0,
            eta_seconds=_aged(progress, "eta_s") if status == "running" else None,
            elapsed_seconds=progress.get("elapsed_s"),
            losses=progress.get("losses") or {},
        )


class StatsLinePublic(BaseModel):
    step: int
    elapsed_seconds: float
    losses: dict[str, float | None] = Field(
        description="each loss term averaged since the previous line (None: not finite)"
    )


class TrainingStatsPublic(BaseModel):
    model_id: str
    data: list[StatsLinePublic]
    count: int = Field(description="lines the run has written (data may be thinned)")

    @classmethod
    def from_lines(cls, model_id: str, lines: list[dict], max_points: int) -> TrainingStatsPublic:
        """Thin `lines` (stats.jsonl) to at most max_points, evenly spaced, first and last kept."""
        count = len(lines)
        if count > max_points:
            last = len(lines) - 1
            picks = sorted({round(i * last / (max_points - 1)) for i in range(max_points)})
            lines = [lines[i] for i in picks]
        return cls(
            model_id=model_id,
            data=[
                StatsLinePublic(
                    step=line["step"],
                    elapsed_seconds=line.get("elapsed_s", 0.0),
                    losses={
                        k: v if isinstance(v, int | float) and math.isfinite(v) else None
                        for k, v in line.get("losses", {}).items()
                    },
                )
                for line in lines
            ],
            count=count,
        )


class ReportStatusPublic(BaseModel):
    status: Literal["none", "pending", "queued", "running", "succeeded", "failed"]
    stage: str | None = None
    fraction: float = 0.0
    eta_seconds: float | None = Field(
        None,
        description="seconds the report has left: estimated before it starts (from a timed "
        "classifier step on the worker), then from its own progress",
    )
    error: str | None = None

    @classmethod
    def from_row(cls, row: Any) -> ReportStatusPublic:
        progress = row.report_progress or {}
        estimate = (row.progress or {}).get("report_s")
        eta = None
        if row.report_status == "running" and progress.get("eta_s") is not None:
            eta = _aged(progress, "eta_s")
        elif row.report_status in ("pending", "queued", "running") and estimate is not None:
            eta = round(estimate, 1)  # before the report's first progress
        return cls(
            status=row.report_status,
            stage=progress.get("stage"),
            fraction=progress.get("fraction", 0.0),
            eta_seconds=eta,
            error=row.report_error,
        )


class ModelPublic(BaseModel):
    id: str
    dataset_id: str
    method: str
    status: ModelStatus
    eta_seconds: float | None = Field(
        None,
        description="seconds until the whole job is done: the training left, then the "
        "quality report (estimated); None when nothing runs or the time is not known yet",
    )
    progress: ProgressPublic
    error: str | None
    classes: list[ClassPublic]
    image: ImagePublic
    config: dict[str, Any]
    report: ReportStatusPublic
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    clusters: ClustersPublic | None = Field(
        None, description="vcagan, once trained: its classes are the clusters it discovered"
    )
    device: DevicePublic | None = Field(
        None,
        description="where it trains or was trained (also in manifest.json); None until "
        "training has reported",
    )

    @classmethod
    def from_row(cls, row: Any) -> ModelPublic:
        progress = ProgressPublic.from_row(row.progress, row.status)
        report = ReportStatusPublic.from_row(row)
        eta = None
        if row.status == "running" and progress.eta_seconds is not None:
            eta = progress.eta_seconds + (report.eta_seconds or 0.0)
        elif row.status == "succeeded":
            eta = report.eta_seconds
        return cls(
            id=row.id,
            dataset_id=row.dataset_id,
            method=row.method,
            status=row.status,
            eta_seconds=None if eta is None else round(eta, 1),
            progress=progress,
            error=row.error,
            classes=[ClassPublic(**c) for c in row.classes],  # with its dataset's counts
            image=ImagePublic(**row.image),
            config=row.config,
            report=report,
            created_at=row.created_at,
            started_at=row.started_at,
            finished_at=row.finished_at,
            clusters=ClustersPublic(**row.clusters) if row.clusters else None,
            device=DevicePublic.from_progress(row.progress or {}),
        )


class ModelsPublic(BaseModel):
    data: list[ModelPublic]
    count: int
    limit: int
    offset: int


class DatasetPublic(BaseModel):
    id: str
    name: str
    num_images: int
    labelled: bool = Field(description="false: no labels or classes; only vcagan trains on it")
    classes: list[ClassPublic]
    image: ImagePublic
    created_at: datetime
    model: ModelPublic | None = Field(None, description="the queued model when train=true")

    @field_serializer("model")
    def _whole_model(self, model: ModelPublic | None):  # unannotated: the schema keeps ModelPublic
        """The model as GET /v1/models/{id} shows it, its nulls too: the dataset routes leave
        out None fields (response_model_exclude_none), which would drop the model's required
        `error`, `started_at` and `finished_at`."""
        return None if model is None else model.model_dump(mode="json")

    @classmethod
    def from_row(cls, row: Any, model: Any = None) -> DatasetPublic:
        return cls(
            id=row.id,
            name=row.name,
            num_images=row.num_images,
            labelled=row.labelled,
            classes=[ClassPublic(**c) for c in row.classes],
            image=ImagePublic(**row.image),
            created_at=row.created_at,
            model=ModelPublic.from_row(model) if model is not None else None,
        )


class DatasetsPublic(BaseModel):
    data: list[DatasetPublic]
    count: int
    limit: int
    offset: int


class DatasetUpdate(BaseModel, extra="forbid"):
    """PATCH /v1/datasets/{id}: rename classes (e.g. a vcagan model's clusters)."""

    classes: dict[str, str] = Field(
        min_length=1,
        description="current class name -> new name; classes left out keep their names",
    )


class LabelDatasetCreate(BaseModel, extra="forbid"):
    """POST /v1/models/{id}/label-dataset: the new dataset's name."""

    name: str | None = Field(None, min_length=1, max_length=255)


class ModelCreate(TrainConfig):
    """POST /v1/models: the dataset to train on plus training options."""

    dataset_id: str = Field(min_length=1, max_length=64, description="dataset to train on")


ClassifierHead = Literal["critic", "evaluator"]


class ClassificationPublic(BaseModel):
    name: str = Field(description="file name, archive member path, or x[i] for npz rows")
    probs: dict[str, float] = Field(description="class name -> probability; they sum to 1")
    top: str = Field(description="the most probable class")
    confidence: float = Field(description="its probability")


class ClassificationsPublic(BaseModel):
    model_id: str
    head: ClassifierHead = Field(
        description="critic: the critic's class head (classifier.onnx); evaluator: the "
        "quality report's classifier (evaluator.onnx)"
    )
    image: ImagePublic = Field(description="the size and channels the images were converted to")
    data: list[ClassificationPublic]
    count: int
