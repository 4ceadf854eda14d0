"""A tiny trained model, diffusers-style: small nets, few steps, seeded, with a fast report.

Built once per test session (the `tiny_model` fixture in tests/conftest.py). The shapes are
easy to learn, so at these settings the evaluator, the class manifold and t* all exist and
the filters have images to keep and images to reject.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np

from tests.factories import shapes_arrays, store_dataset

PER_CLASS = 30
SIZE = 16
# Options of POST /v1/datasets config, and of training.TrainConfig. 200 steps is where the
# square and circle classes become recognisable to the fast report's evaluator. wacgan-gp,
# not the default cgan: its critic has the class head that classifier.onnx exports.
TINY_MODEL_CONFIG = {
    "method": "wacgan-gp",
    "steps": 200,
    "batch_size": 16,
    "g_channels": 16,
    "d_channels": 16,
    "z_dim": 16,
    "seed": 1,
    "report": "fast",
}


def build_tiny_model(root: Path) -> SimpleNamespace:
    """Train the tiny model on shapes under root and build its fast quality report."""
    import training
    from training.report import ReportBudget, build_report

    x, y = shapes_arrays(per_class=PER_CLASS, size=SIZE, seed=0)
    dataset = store_dataset(root / "dataset", x, y)
    model_dir = root / "model"
    result = training.run(
        training.TrainConfig(**TINY_MODEL_CONFIG),
        dataset_dir=dataset,
        out_dir=model_dir,
        model_id="tiny-model",
        device="cpu",
    )
    stages: list[tuple[str, float]] = []  # (stage, fraction) as the report's progress_fn saw
    report = build_report(
        model_dir,
        dataset,
        budget=ReportBudget.fast(),
        progress_fn=lambda stage, fraction: stages.append((stage, fraction)),
        device="cpu",
    )
    return SimpleNamespace(
        dataset=dataset,
        model_dir=model_dir,
        x=x,
        y=np.asarray(y),
        result=result,
        report=report,
        report_stages=stages,
    )
