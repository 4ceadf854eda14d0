"""training.dataset.StoredDataset: the one writer and reader of a stored dataset."""

import json

import numpy as np
import pytest

from tests.factories import SHAPES, shapes_arrays, store_dataset
from training.dataset import INFO_FILE, X_FILE, Y_FILE, StoredDataset


def test_saved_dataset_loads_back_with_its_description(tmp_path):
    x, y = shapes_arrays(per_class=4, size=16)
    directory = store_dataset(tmp_path / "ds", x, y)
    assert sorted(p.name for p in directory.iterdir()) == sorted([X_FILE, Y_FILE, INFO_FILE])
    dataset = StoredDataset.load(directory)
    assert isinstance(dataset.x, np.memmap), "x is memory-mapped, not read whole"
    np.testing.assert_array_equal(dataset.x[..., 0], x)
    np.testing.assert_array_equal(dataset.y, y)
    assert dataset.y.dtype == np.int64
    assert (dataset.classes, dataset.counts) == (list(SHAPES), [4, 4, 4])
    assert (len(dataset), dataset.image_shape) == (12, (16, 16, 1))
    assert dataset.info.source_format == "npz"


def test_a_failed_write_leaves_nothing_behind(tmp_path):
    y = np.array([0, 1, 1])
    with pytest.raises(RuntimeError):
        with StoredDataset.writing(
            tmp_path / "ds", y, classes=["a", "b"], image_shape=(8, 8, 1), source_format="zip"
        ) as x:
            x[0] = 255
            raise RuntimeError("decoder failed")
    assert list(tmp_path.iterdir()) == []


def test_an_existing_directory_is_not_overwritten(tmp_path):
    x, y = shapes_arrays(per_class=2, size=8)
    store_dataset(tmp_path / "ds", x, y)
    with pytest.raises(FileExistsError):
        store_dataset(tmp_path / "ds", x, y)


def test_labels_outside_the_classes_are_refused(tmp_path):
    x, y = shapes_arrays(per_class=2, size=8)
    with pytest.raises(ValueError, match="labels"):
        store_dataset(tmp_path / "ds", x, y, classes=["circle", "square"])
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (lambda d: np.save(d / X_FILE, np.zeros((6, 8, 4, 1), np.uint8)), "(6, 8, 4, 1)"),
        (lambda d: np.save(d / Y_FILE, np.array([0, 1, 2, 3, 0, 1])), "labels in 0..2"),
        (lambda d: np.save(d / Y_FILE, np.zeros(5, np.int64)), "6 labels"),
    ],
    ids=["x-shape", "label-range", "label-count"],
)
def test_load_refuses_files_that_disagree(tmp_path, change, words):
    x, y = shapes_arrays(per_class=2, size=8)
    directory = store_dataset(tmp_path / "ds", x, y)
    change(directory)
    with pytest.raises(ValueError) as caught:
        StoredDataset.load(directory)
    assert words in str(caught.value)


def test_dataset_json_keeps_its_format(tmp_path):
    x, y = shapes_arrays(per_class=2, size=8)
    directory = store_dataset(tmp_path / "ds", x, y)
    assert json.loads((directory / INFO_FILE).read_text()) == {
        "classes": list(SHAPES),
        "counts": [2, 2, 2],
        "image": {"height": 8, "width": 8, "channels": 1},
        "num_images": 6,
        "source_format": "npz",
        "labelled": True,
    }


def test_a_dataset_json_from_before_unlabelled_datasets_is_labelled(tmp_path):
    x, y = shapes_arrays(per_class=2, size=8)
    directory = store_dataset(tmp_path / "ds", x, y)
    info = json.loads((directory / INFO_FILE).read_text())
    del info["labelled"]
    (directory / INFO_FILE).write_text(json.dumps(info))
    dataset = StoredDataset.load(directory)
    assert dataset.labelled and dataset.y.tolist() == y.tolist()


def test_an_unlabelled_dataset_has_images_and_no_labels(tmp_path):
    x, _ = shapes_arrays(per_class=2, size=8)
    dataset = StoredDataset.save(
        tmp_path / "ds", x[..., None], None, classes=[], source_format="zip"
    )
    assert (dataset.labelled, dataset.y, dataset.classes, len(dataset)) == (False, None, [], 6)
    assert sorted(p.name for p in (tmp_path / "ds").iterdir()) == [INFO_FILE, "x.npy"]
    with pytest.raises(ValueError, match="no classes"):
        StoredDataset.save(tmp_path / "bad", x[..., None], None, classes=["a"], source_format="zip")


def test_renaming_classes_keeps_their_order_and_labels(tmp_path):
    x, y = shapes_arrays(per_class=2, size=8)
    directory = store_dataset(tmp_path / "ds", x, y)
    renamed = StoredDataset.rename_classes(directory, ["zeta", "alpha", "mid"])
    assert renamed.classes == ["zeta", "alpha", "mid"] and renamed.y.tolist() == y.tolist()
    assert StoredDataset.load(directory).classes == ["zeta", "alpha", "mid"]
    for names in (["a", "a", "b"], ["a", "", "b"], ["a", "b"]):
        with pytest.raises(ValueError):
            StoredDataset.rename_classes(directory, names)
