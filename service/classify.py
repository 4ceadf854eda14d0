"""Classify uploaded images with a model's critic class head or its report's evaluator
(numpy + ONNX Runtime, no torch)."""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

import numpy as np

from core.db.tables import Model
from core.settings import Settings
from models.artifact import Manifest
from models.evaluator import EVALUATOR_FILE
from service.catalog import ingest_limits
from service.errors import ApiError, upload_refused
from service.generation import load_classifier
from service.ingest import IngestError, read_images
from service.schemas import (
    ClassificationPublic,
    ClassificationsPublic,
    ClassifierHead,
    ImagePublic,
)
from training.config import UNSUPERVISED_METHODS


def head_file(
    model_dir: Path, manifest: Manifest, model: Model, head: ClassifierHead | None
) -> tuple[ClassifierHead, Path]:
    """The head to use and its file; 409 no_classifier when the chosen one does not exist,
    saying what to do. By default a labelled model answers with the report's evaluator
    when it has one (evaluators trained on the real images with classic augmentation; a
    critic's class head scored 67-78 % against 79 % for its trunk trained alone on
    Fashion-MNIST, benchmarks/results/critic_probe.md), else its critic's head; a
    virtual-label model answers with its Q, whose argmax defines its clusters."""
    critic = model_dir / manifest.classifier.file if manifest.classifier else None
    evaluator = model_dir / EVALUATOR_FILE
    found: dict[ClassifierHead, Path] = {}
    if critic is not None and critic.is_file():
        found["critic"] = critic
    if evaluator.is_file():
        found["evaluator"] = evaluator
    order: tuple[ClassifierHead, ...] = ("evaluator", "critic")
    if manifest.method in UNSUPERVISED_METHODS:
        order = ("critic", "evaluator")
    for name in (head,) if head else order:
        if name in found:
            return name, found[name]
    has_evaluator = "evaluator" in found
    why_no_critic = (
        f"its {manifest.method} critic has no class head"
        if manifest.method == "cgan"
        else "it was trained before classifier.onnx was exported"
    )
    report = _report_advice(model)
    if head == "critic":
        message = f"head=critic: this model has no critic classifier ({why_no_critic})"
        message += "; use head=evaluator." if has_evaluator else f" and no report ({report})."
    elif head == "evaluator":
        message = f"head=evaluator needs the quality report's evaluator; {report}."
    else:
        message = (
            f"This model has no class head ({why_no_critic}) and no report evaluator to "
            f"classify with; {report}."
        )
    raise ApiError(409, "no_classifier", message)


def _report_advice(model: Model) -> str:
    compute = f"POST /v1/models/{model.id}/report"
    if model.report_status in ("pending", "queued", "running"):
        return f"its report is {model.report_status}: classify once it has succeeded"
    if model.report_status == "succeeded":
        return f"its report kept no evaluator: {compute} to compute it again"
    return f"{compute} to compute the report"


def classify_upload(
    settings: Settings,
    model: Model,
    upload: BinaryIO,
    filename: str,
    head: ClassifierHead | None,
) -> ClassificationsPublic:
    """Read an uploaded image, zip or npz at the model's size and channels, and give each
    image's class probabilities under the chosen head."""
    model_dir = settings.models_dir / model.id
    manifest = Manifest.load(model_dir)
    used, path = head_file(model_dir, manifest, model, head)
    shape = manifest.image
    try:
        uploaded = read_images(
            upload,
            filename,
            size=shape.height,
            channels=shape.channels,
            max_images=settings.max_classify_images,
            limits=ingest_limits(settings),
        )
    except IngestError as exc:
        raise upload_refused(exc) from exc
    probs = load_classifier(path).probs(uploaded.images)  # (N, K)
    classes = manifest.classes
    top = probs.argmax(axis=1)
    data = [
        ClassificationPublic(
            name=name,
            probs=dict(zip(classes, row.tolist(), strict=True)),
            top=classes[best],
            confidence=float(row[best]),
        )
        for name, row, best in zip(uploaded.names, probs.astype(np.float64), top, strict=True)
    ]
    image = ImagePublic(height=shape.height, width=shape.width, channels=shape.channels)
    return ClassificationsPublic(
        model_id=model.id, head=used, image=image, data=data, count=len(data)
    )
