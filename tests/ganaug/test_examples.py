"""`ganaug example` builds uploadable datasets whose class names are the README's."""

from __future__ import annotations

import zipfile
from collections import Counter

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from ganaug.cli import app as cli
from ganaug.examples import FASHION_CLASSES, FASHION_MNIST


def test_fashion_mnist_example_has_named_class_folders_of_pngs(tmp_path):
    if not FASHION_MNIST.exists():
        pytest.skip(f"{FASHION_MNIST} missing: apt-get install -y dataset-fashion-mnist")
    out = tmp_path / "fashion30.zip"
    result = CliRunner().invoke(
        cli, ["example", "fashion-mnist", "--per-class", "3", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "30 images" in result.stdout
    with zipfile.ZipFile(out) as archive:
        names = archive.namelist()
        image = Image.open(archive.open(names[0]))
    assert Counter(name.split("/")[0] for name in names) == {c: 3 for c in FASHION_CLASSES}
    assert image.size == (28, 28) and image.mode == "L"
    assert np.asarray(image).std() > 0  # a picture, not a blank


def test_example_refuses_what_it_cannot_build(tmp_path):
    runner = CliRunner()
    unknown = runner.invoke(cli, ["example", "cifar", "--out", str(tmp_path / "x.zip")])
    assert unknown.exit_code == 2 and "choose one of fashion-mnist, digits" in unknown.stderr
    too_many = runner.invoke(
        cli, ["example", "digits", "--per-class", "100000", "--out", str(tmp_path / "x.zip")]
    )
    assert too_many.exit_code == 2 and "per_class must be 1-" in too_many.stderr
    assert not (tmp_path / "x.zip").exists()
