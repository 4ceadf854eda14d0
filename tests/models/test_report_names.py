"""The report names its metrics honestly: the feature network is the report's own
evaluator, not Inception; reports written before the rename read with the new names."""

from __future__ import annotations

import json

from models.artifact import FEATURES_NOTE, REPORT_FILE, read_report


def keys(value) -> list[str]:
    """Every key of a JSON value, at any depth."""
    if isinstance(value, dict):
        return [*value, *(k for v in value.values() for k in keys(v))]
    if isinstance(value, list):
        return [k for v in value for k in keys(v)]
    return []


def test_report_says_its_features_are_the_evaluators_not_inceptions(tiny_model):
    report = read_report(tiny_model.model_dir / REPORT_FILE)
    assert not [key for key in keys(report) if "inception" in key.lower()]
    metrics = report["metrics"]
    assert "not Inception-v3" in metrics["features"] and "non-standard" in metrics["features"]
    assert 0 <= metrics["overall"]["evaluator_sample_accuracy"] <= 1
    assert all("evaluator_sample_accuracy" in row for row in report["truncation_sweep"])


def test_reports_of_the_old_format_read_with_the_new_names(tmp_path):
    old = {
        "format": "ganaug.report/1",
        "metrics": {
            "overall": {"inception_accuracy": 0.8, "synthetic": {"fid": 3.0}},
            "per_class": [{"class": "a", "inception_accuracy": 0.7}],
        },
        "truncation_sweep": [{"truncation": 0.5, "inception_accuracy": 0.9}],
    }
    (tmp_path / REPORT_FILE).write_text(json.dumps(old))
    report = read_report(tmp_path / REPORT_FILE)
    assert report["metrics"]["overall"] == {
        "evaluator_sample_accuracy": 0.8,
        "synthetic": {"fid": 3.0},
    }
    assert report["metrics"]["per_class"][0]["evaluator_sample_accuracy"] == 0.7
    assert report["truncation_sweep"][0]["evaluator_sample_accuracy"] == 0.9
    assert report["metrics"]["features"] == FEATURES_NOTE
    assert not [key for key in keys(report) if "inception" in key]
