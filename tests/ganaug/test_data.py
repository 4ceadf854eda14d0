"""ganaug.data reads an archive the service wrote and mixes it as its recipe says."""

from __future__ import annotations

import csv
import io
import zipfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from ganaug.data import AugmentedArchive, RecipeBatchSampler, recipe_loss
from models.artifact import ARCHIVE_LABELS_FILE, SOFT_LABELS_FILE, Recipe
from models.drawing import DrawSpec
from models.image_classifier import ImageClassifier
from models.sampler import GeneratorSampler
from service.generation import ArchiveRequest, stream_archive
from tests.factories import SHAPES
from tests.tiny_model import PER_CLASS

SYNTHETIC = 20  # per class, with the tiny model's 30 real images per class
RECIPE = Recipe(
    ratio=SYNTHETIC / PER_CLASS,
    truncation=None,
    filter="none",
    min_confidence=0.0,
    heldout_accuracy=0.9,
    baseline_accuracy=0.9,
    lift=0.0,
    synthetic_batch_fraction=0.25,
    synthetic_loss_weight=0.25,
    labels="soft",
    real_only_final_steps=0.2,
)


def write_archive(model_dir: Path, dataset: Path, path: Path, recipe: Recipe | None) -> Path:
    sampler = GeneratorSampler(model_dir)
    labeller = ImageClassifier(model_dir / SOFT_LABELS_FILE)
    request = ArchiveRequest([SYNTHETIC] * len(SHAPES), DrawSpec(), 3, True, recipe)
    chunks = stream_archive(sampler, None, dataset, "tiny", request, labeller)
    path.write_bytes(b"".join(chunks))
    return path


@pytest.fixture(scope="module")
def archive(tiny_model: SimpleNamespace, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An archive of the tiny model with the recipe above: 90 real and 60 synthetic images."""
    path = tmp_path_factory.mktemp("archive") / "augmented.zip"
    return write_archive(tiny_model.model_dir, tiny_model.dataset, path, RECIPE)


def test_items_are_the_archives_images_and_labels_csv_rows(archive):
    data = AugmentedArchive(archive)
    assert data.recipe == RECIPE and data.labels == "soft" and data.classes == list(SHAPES)
    with zipfile.ZipFile(archive) as zipped:
        rows = list(csv.DictReader(io.StringIO(zipped.read(ARCHIVE_LABELS_FILE).decode())))
        pngs = [name for name in zipped.namelist() if name.endswith(".png")]
    assert len(data) == len(rows) == len(pngs) == len(SHAPES) * (PER_CLASS + SYNTHETIC)
    assert data.files == [row["file"] for row in rows] == pngs
    for i in (0, PER_CLASS + 3, len(data) - 1):
        image, target, synthetic = data[i]
        assert image.shape == (1, 16, 16) and image.dtype == torch.float32
        assert 0 <= image.min() and image.max() <= 1
        with zipfile.ZipFile(archive) as zipped:
            png = np.asarray(Image.open(io.BytesIO(zipped.read(rows[i]["file"]))))
        np.testing.assert_allclose(image[0].numpy() * 255, png, atol=1e-4)
        expected = [float(rows[i][f"p_{shape}"]) for shape in SHAPES]
        np.testing.assert_allclose(target.numpy(), expected, atol=1e-7)
        assert synthetic == (rows[i]["kind"] == "synthetic")
    hard = AugmentedArchive(archive, labels="hard")
    _, target, synthetic = hard[len(hard) - 1]
    assert synthetic and target.tolist() == [0.0, 0.0, 1.0], "the class it was drawn for"


def test_every_batch_has_the_recipes_synthetic_share_then_real_only_steps(archive):
    data = AugmentedArchive(archive)
    sampler = RecipeBatchSampler(data, 16, data.recipe, seed=0, epochs=3)
    batches = list(sampler)
    per_epoch = -(-len(SHAPES) * PER_CLASS // 12)  # 12 real + 4 synthetic rows per batch
    assert len(batches) == len(sampler) == 3 * per_epoch
    final = round(0.2 * len(batches))
    shares = [int(data.is_synthetic[batch].sum()) for batch in batches]
    assert shares == [4] * (len(batches) - final) + [0] * final
    assert all(len(batch) == 16 for batch in batches)
    real = [i for batch in batches[:per_epoch] for i in batch if not data.is_synthetic[i]]
    assert len(set(real)) == len(SHAPES) * PER_CLASS, "an epoch is a pass over the real rows"
    assert batches == list(RecipeBatchSampler(data, 16, data.recipe, seed=0, epochs=3))
    loader = DataLoader(data, batch_sampler=RecipeBatchSampler(data, 8, data.recipe, seed=1))
    images, targets, synthetic = next(iter(loader))
    assert images.shape == (8, 1, 16, 16) and targets.shape == (8, 3)
    assert synthetic.dtype == torch.bool and int(synthetic.sum()) == 2  # round(0.25 * 8)


def test_without_a_recipe_the_share_is_the_archives(archive):
    data = AugmentedArchive(archive)
    batches = list(RecipeBatchSampler(data, 10, None, seed=0))
    assert {int(data.is_synthetic[b].sum()) for b in batches} == {4}  # 60 of 150


def test_recipe_loss_weights_synthetic_rows_and_keeps_the_datasets_targets():
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.2, 0.1], [0.0, 1.0, 0.0]])
    targets = torch.tensor([[1.0, 0.0, 0.0], [0.2, 0.7, 0.1], [0.0, 1.0, 0.0]])
    synthetic = torch.tensor([False, True, False])
    rows = -(targets * torch.log_softmax(logits, dim=1)).sum(dim=1)
    loss = recipe_loss(logits, targets, synthetic, RECIPE)
    torch.testing.assert_close(loss, (rows[0] + 0.25 * rows[1] + rows[2]) / 3)
    torch.testing.assert_close(recipe_loss(logits, targets, synthetic, None), rows.mean())
    hard = RECIPE.model_copy(update={"labels": "hard"})  # hardening is the dataset's job
    torch.testing.assert_close(recipe_loss(logits, targets, synthetic, hard), loss)
    no_synthetic = recipe_loss(logits, targets, torch.zeros(3, dtype=torch.bool), RECIPE)
    torch.testing.assert_close(no_synthetic, rows.mean())


def test_an_archive_whose_labels_name_missing_files_is_refused(archive, tmp_path):
    broken = tmp_path / "broken.zip"
    with zipfile.ZipFile(archive) as src, zipfile.ZipFile(broken, "w") as dst:
        for name in src.namelist():
            if not name.endswith("real_00000.png"):
                dst.writestr(name, src.read(name))
    with pytest.raises(ValueError, match="lacks"):
        AugmentedArchive(broken)


def test_set_epoch_gives_each_epoch_its_own_order(archive):
    data = AugmentedArchive(archive)
    sampler = RecipeBatchSampler(data, 16, data.recipe, seed=0)
    first = list(sampler)
    assert list(sampler) == first, "the same epoch repeats"
    sampler.set_epoch(1)
    second = list(sampler)
    assert second != first and sorted(map(sorted, second)) != sorted(map(sorted, first))


def test_a_step_budget_sets_the_length_and_the_real_only_end(archive):
    data = AugmentedArchive(archive)
    batches = list(RecipeBatchSampler(data, 16, data.recipe, seed=0, steps=25))
    shares = [int(data.is_synthetic[batch].sum()) for batch in batches]
    assert shares == [4] * 20 + [0] * 5  # the last 20 % of 25 steps are real only
    with pytest.raises(ValueError, match="steps"):
        RecipeBatchSampler(data, 16, data.recipe, seed=0, steps=0)
