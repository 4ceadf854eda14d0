import json
from datetime import UTC, datetime

import numpy as np
import pytest
from pydantic import ValidationError

from models.artifact import (
    MANIFEST_FILE,
    ArtifactFile,
    ImageShape,
    Manifest,
    atomic_write_bytes,
    generator_io,
)
from models.manifold import MANIFOLD_FILE, ClassManifold
from training.split import SPLIT_FILE, Split, stratified_split


def make_manifest() -> Manifest:
    image = ImageShape(height=28, width=28, channels=1)
    inputs, outputs = generator_io(64, image)
    return Manifest(
        model_id="m1",
        method="wacgan-gp",
        classes=["a", "b"],
        z_dim=64,
        image=image,
        config={"steps": 10},
        versions={"torch": "x"},
        final_losses={"d_loss": 0.5},
        steps_completed=10,
        created_at=datetime.now(UTC),
        inputs=inputs,
        outputs=outputs,
    )


def test_manifest_round_trip(tmp_path):
    manifest = make_manifest()
    manifest.save(tmp_path)
    assert Manifest.load(tmp_path) == manifest
    assert [p.name for p in tmp_path.iterdir()] == [MANIFEST_FILE], "no temp files left"


def test_manifests_from_before_soft_labels_and_mixing_still_load(tmp_path):
    """An evaluation written before soft labels, with a recipe before its mixing fields."""
    recipe = {
        "ratio": 1.0,
        "truncation": None,
        "filter": "none",
        "min_confidence": 0.0,
        "heldout_accuracy": 0.8,
        "baseline_accuracy": 0.79,
        "lift": 0.01,
    }
    evaluation = {
        "t_star": None,
        "truncation_sweep": [],
        "recipe": recipe,
        "evaluator_file": "evaluator.onnx",
        "manifold_file": "manifold.npz",
        "report_file": "report.json",
    }
    data = make_manifest().model_dump(mode="json") | {"evaluation": evaluation}
    (tmp_path / MANIFEST_FILE).write_text(json.dumps(data))
    loaded = Manifest.load(tmp_path).evaluation
    assert loaded.soft_labels is None
    old = loaded.recipe  # what it meant: rows shuffled together at full weight, hard labels
    assert old.synthetic_batch_fraction is None and old.synthetic_loss_weight == 1.0
    assert (old.labels, old.real_only_final_steps, old.mixing_searched) == ("hard", 0.0, False)
    assert old.basis == "search"  # before the benchmark's recipe, the search decided alone


def test_manifest_describes_onnx_graph():
    manifest = make_manifest()
    assert [(t.name, t.dtype, t.shape) for t in manifest.inputs] == [
        ("latent", "float32", ["B", 64]),
        ("class", "int64", ["B"]),
    ]
    assert [(t.name, t.dtype, t.shape) for t in manifest.outputs] == [
        ("image", "float32", ["B", 1, 28, 28])
    ]


def test_manifest_load_rejects_other_formats(tmp_path):
    data = make_manifest().model_dump(mode="json") | {"format": "ganaug.generator/99"}
    (tmp_path / MANIFEST_FILE).write_text(json.dumps(data))
    with pytest.raises(ValidationError):
        Manifest.load(tmp_path)


def test_atomic_write_replaces_whole_file(tmp_path):
    path = tmp_path / "checkpoint.pt"
    atomic_write_bytes(path, b"old")
    atomic_write_bytes(path, b"new contents")
    assert path.read_bytes() == b"new contents"
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]
    assert path.stat().st_mode & 0o777 == 0o644


def make_split() -> Split:
    return stratified_split(np.repeat(np.arange(2), 5), 0.4, seed=0)


def make_manifold() -> ClassManifold:
    features = np.array([[0.0], [1.0], [3.0], [10.0]], np.float32)
    return ClassManifold.build(features, np.array([0, 0, 0, 1]), k=1)


def same_content(a: ArtifactFile, b: ArtifactFile) -> bool:
    return a.to_bytes() == b.to_bytes()


@pytest.mark.parametrize(
    ("make", "file_name"),
    [(make_manifest, MANIFEST_FILE), (make_split, SPLIT_FILE), (make_manifold, MANIFOLD_FILE)],
    ids=["manifest", "split", "manifold"],
)
def test_every_artifact_saves_its_own_file_into_a_directory(tmp_path, make, file_name):
    artifact = make()
    artifact.save(tmp_path)
    artifact.save(tmp_path)  # replaced whole, atomically
    assert [p.name for p in tmp_path.iterdir()] == [file_name], "one file, no temp files left"
    assert type(artifact).path(tmp_path) == tmp_path / file_name
    assert same_content(type(artifact).load(tmp_path), artifact)


def test_directories_written_before_the_save_load_pair_still_load(tmp_path):
    """split.json and manifold.npz as the previous writers laid them out."""
    (tmp_path / "split.json").write_text(
        json.dumps({"holdout_fraction": 0.25, "seed": 3, "train": [0, 2, 3], "holdout": [1]})
    )
    split = Split.load(tmp_path)
    assert (split.seed, split.train.tolist(), split.holdout.tolist()) == (3, [0, 2, 3], [1])
    np.savez(tmp_path / "manifold.npz", features=np.ones((2, 3)), labels=[0, 1], radii=[1, 2], k=1)
    manifold = ClassManifold.load(tmp_path)
    assert (manifold.features.shape, manifold.k) == ((2, 3), 1)
    assert manifold.contains(np.ones((1, 3)), np.array([1])).all()
