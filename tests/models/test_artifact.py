import json
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from models.artifact import (
    MANIFEST_FILE,
    ImageShape,
    Manifest,
    atomic_write_bytes,
    generator_io,
    read_manifest,
    write_manifest,
)


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
    write_manifest(tmp_path, manifest)
    assert read_manifest(tmp_path) == manifest
    assert [p.name for p in tmp_path.iterdir()] == [MANIFEST_FILE], "no temp files left"


def test_manifest_describes_onnx_graph():
    manifest = make_manifest()
    assert [(t.name, t.dtype, t.shape) for t in manifest.inputs] == [
        ("latent", "float32", ["B", 64]),
        ("class", "int64", ["B"]),
    ]
    assert [(t.name, t.dtype, t.shape) for t in manifest.outputs] == [
        ("image", "float32", ["B", 1, 28, 28])
    ]


def test_read_manifest_rejects_other_formats(tmp_path):
    data = make_manifest().model_dump(mode="json") | {"format": "ganaug.generator/99"}
    (tmp_path / MANIFEST_FILE).write_text(json.dumps(data))
    with pytest.raises(ValidationError):
        read_manifest(tmp_path)


def test_atomic_write_replaces_whole_file(tmp_path):
    path = tmp_path / "checkpoint.pt"
    atomic_write_bytes(path, b"old")
    atomic_write_bytes(path, b"new contents")
    assert path.read_bytes() == b"new contents"
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]
    assert path.stat().st_mode & 0o777 == 0o644
