import numpy as np
import pytest

from training.split import Split, stratified_split


def test_split_is_stratified_disjoint_and_complete():
    labels = np.repeat(np.arange(4), [50, 50, 10, 1])
    split = stratified_split(labels, 0.2, seed=3)
    assert np.intersect1d(split.train, split.holdout).size == 0
    assert np.array_equal(np.sort(np.concatenate([split.train, split.holdout])), np.arange(111))
    held_per_class = np.bincount(labels[split.holdout], minlength=4).tolist()
    assert held_per_class == [10, 10, 2, 0]  # the single-image class keeps its image


def test_split_is_deterministic_and_zero_disables():
    labels = np.repeat(np.arange(3), 20)
    a, b = stratified_split(labels, 0.25, seed=1), stratified_split(labels, 0.25, seed=1)
    assert np.array_equal(a.holdout, b.holdout)
    assert not np.array_equal(a.holdout, stratified_split(labels, 0.25, seed=2).holdout)
    assert stratified_split(labels, 0.0, seed=1).holdout.size == 0
    with pytest.raises(ValueError):
        stratified_split(labels, 1.0, seed=1)


def test_split_round_trips(tmp_path):
    split = stratified_split(np.repeat(np.arange(2), 10), 0.3, seed=0)
    split.save(tmp_path)
    loaded = Split.load(tmp_path)
    assert np.array_equal(loaded.train, split.train)
    assert np.array_equal(loaded.holdout, split.holdout)
