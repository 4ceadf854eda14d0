"""The ETA covers the whole job: training, then the quality report, estimated before the
report starts and followed while it runs."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest
import torch

import training
from service.schemas import ModelPublic
from tests.conftest import TINY_TRAINING
from tests.factories import shapes_arrays, store_dataset
from tests.tiny_model import SIZE
from training.eta import estimate_report_seconds, remaining_seconds


def test_the_report_estimate_is_near_the_report_it_estimates(tiny_model):
    measured = tiny_model.report["timings_s"]["total"]  # the fast report, built this session
    estimate = estimate_report_seconds(
        "fast", channels=1, size=SIZE, num_classes=3, device=torch.device("cpu")
    )
    # the same machine, other moments: loads differ, so a factor of 3 either way
    assert measured / 3 < estimate < measured * 3, (estimate, measured)


def test_timing_the_report_classifier_leaves_the_random_stream_alone():
    torch.manual_seed(3)
    expected = torch.rand(4)
    torch.manual_seed(3)
    estimate_report_seconds("fast", channels=1, size=16, num_classes=3, device=torch.device("cpu"))
    assert torch.equal(torch.rand(4), expected)


def test_training_progress_carries_the_report_estimate(tmp_path):
    x, y = shapes_arrays(per_class=8, size=16)
    dataset = store_dataset(tmp_path / "dataset", x, y)
    seen: list[training.Progress] = []
    config = training.TrainConfig(**{**TINY_TRAINING, "steps": 12, "report": "fast"})
    result = training.run(
        config,
        dataset_dir=dataset,
        out_dir=tmp_path / "model",
        model_id="m",
        progress_fn=seen.append,
        device="cpu",
    )
    assert seen and all(p.report_s is not None and p.report_s > 0 for p in seen)
    assert result.report_s == seen[0].report_s
    assert abs(seen[-1].time - time.time()) < 60
    none = config.model_copy(update={"report": "none"})
    result = training.run(
        none, dataset_dir=dataset, out_dir=tmp_path / "bare", model_id="b", device="cpu"
    )
    assert result.report_s is None


def test_report_remaining_follows_its_own_rate_once_under_way():
    assert remaining_seconds(10.0, 0.01, estimate_s=300.0) == 290.0  # too early: the estimate
    assert remaining_seconds(10.0, 0.01, estimate_s=None) is None
    assert remaining_seconds(30.0, 0.25, estimate_s=300.0) == 90.0  # 30 s per quarter
    assert remaining_seconds(400.0, 0.02, estimate_s=300.0) == 0.0


def row(status: str, report_status: str, progress: dict, report_progress: dict | None = None):
    return SimpleNamespace(
        id="m",
        dataset_id="d",
        method="cgan",
        status=status,
        progress={"step": 50, "total_steps": 100, "losses": {}} | progress,
        error=None,
        classes=[],
        image={"height": 16, "width": 16, "channels": 1},
        config={},
        report_status=report_status,
        report_progress=report_progress or {},
        report_error=None,
        created_at="2026-01-01T00:00:00Z",
        started_at=None,
        finished_at=None,
        clusters=None,
    )


def test_model_eta_is_training_left_plus_the_report():
    now = time.time()
    running = ModelPublic.from_row(
        row("running", "pending", {"eta_s": 60.0, "report_s": 100.0, "time": now - 20})
    )
    assert running.progress.eta_seconds == pytest_approx(40.0)  # aged by the 20 s since
    assert running.report.eta_seconds == 100.0
    assert running.eta_seconds == pytest_approx(140.0)

    no_report = ModelPublic.from_row(row("running", "none", {"eta_s": 60.0, "time": now}))
    assert no_report.eta_seconds == pytest_approx(60.0)

    reporting = ModelPublic.from_row(
        row(
            "succeeded",
            "running",
            {"eta_s": 0.0, "report_s": 100.0, "time": now - 500},
            {"stage": "recipe_search", "fraction": 0.5, "eta_s": 45.0, "time": now - 5},
        )
    )
    assert reporting.report.eta_seconds == pytest_approx(40.0)
    assert reporting.eta_seconds == pytest_approx(40.0)
    done = ModelPublic.from_row(row("succeeded", "succeeded", {"report_s": 100.0}))
    assert done.eta_seconds is None and done.report.eta_seconds is None


def pytest_approx(value: float):
    return pytest.approx(value, abs=1.0)  # the seconds the test itself takes
