"""The README's quick start runs as written: its shell block, taken from README.md, against a
real `ganaug serve` (embedded worker, private data directory), with two substitutions that
keep it short: fewer images per class, and tiny networks with the fast report instead of
2,000 steps."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import onnx
import pytest
from PIL import Image

from ganaug.examples import FASHION_CLASSES, FASHION_MNIST
from tests.conftest import REPO, TINY_TRAINING, Api, service_env

TINY_OPTIONS = {**TINY_TRAINING, "steps": 40, "report": "fast"}


def quick_start_block() -> str:
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Quick start", 1)[1]
    match = re.search(r"```sh\n(.*?)```", section, re.S)
    assert match, "the README's quick start has no sh block"
    return match.group(1)


def shortened(block: str) -> str:
    for long, short in [
        ("--per-class 50", "--per-class 6"),
        ("--steps 2000", f"--config '{json.dumps(TINY_OPTIONS)}'"),
    ]:
        assert long in block, f"the quick start no longer says {long}"
        block = block.replace(long, short)
    return block


@pytest.mark.slow
def test_the_readme_quick_start_runs_as_written(tmp_path, processes):
    if not FASHION_MNIST.exists():
        pytest.skip(f"{FASHION_MNIST} missing: apt-get install -y dataset-fashion-mnist")
    env = service_env(tmp_path / "data")
    api = Api(env, tmp_path / "serve.log").start()
    processes.append(api)
    work = tmp_path / "work"
    work.mkdir()
    script = "set -euo pipefail\n" + shortened(quick_start_block())
    shell_env = env | {
        "GANAUG_URL": api.base_url,
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
    }
    done = subprocess.run(
        ["bash", "-c", script],
        cwd=work,
        env=shell_env,
        capture_output=True,
        text=True,
        timeout=500,
    )
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}\n{api.log()}"

    with zipfile.ZipFile(work / "fashion500.zip") as dataset:
        folders = {name.split("/")[0] for name in dataset.namelist()}
    assert folders == set(FASHION_CLASSES)
    assert "sneaker" in FASHION_CLASSES  # the class the README asks for
    assert Image.open(work / "sneakers.png").size[0] >= 16 * 4  # a grid of 16 tiles
    assert Image.open(work / "grid.png").size[1] >= 28 * len(FASHION_CLASSES)  # a row each
    with zipfile.ZipFile(work / "augmented.zip") as archive:
        manifest = json.loads(archive.read("manifest.json"))
    assert manifest["recipe"] is not None
    onnx.checker.check_model(onnx.load(work / "generator.onnx"))
    report = json.loads((work / "report.json").read_text())
    assert set(report["picture_urls"]) == {p.stem for p in (work / "report").glob("*.png")}
