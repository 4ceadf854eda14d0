from functools import partial

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from models.artifact import SOFT_LABELS_FILE
from models.evaluator import EVALUATOR_FILE, EvaluatorScorer
from models.image_classifier import ImageClassifier
from tests.factories import shapes_arrays
from training.classifier import (
    ClassifierBudget,
    SmallCNN,
    accuracy,
    ensemble_proba,
    export_evaluator_onnx,
    export_soft_labels_onnx,
    extract_features,
    predict_proba,
    random_shift,
    shift_radius,
    train_classifier,
    train_on_batches,
)

BUDGET = ClassifierBudget(steps=100, batch_size=32)
QUICK = ClassifierBudget(steps=15, batch_size=16)  # enough to tell runs apart, not to learn


def shapes(per_class: int, seed: int, size: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """Circles, squares and triangles as uint8 (N, size, size, 1) with labels 0, 1, 2."""
    x, y = shapes_arrays(per_class, size, seed)
    return x[..., None], y


@pytest.fixture(scope="module")
def held_out() -> tuple[np.ndarray, np.ndarray]:
    return shapes(30, seed=100)


@pytest.fixture(scope="module")
def trained() -> SmallCNN:
    """Trained with classic augmentation (the default)."""
    x, y = shapes(20, seed=0)
    return train_classifier(x, y, num_classes=3, budget=BUDGET, seed=0, device="cpu")


def same_weights(a: SmallCNN, b: SmallCNN) -> bool:
    return all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))


@pytest.mark.parametrize("size", [8, 15, 28, 40, 64, 128])
@pytest.mark.parametrize("channels", [1, 3])
def test_small_cnn_shapes_for_any_size(size, channels):
    model = SmallCNN(num_classes=4, channels=channels, size=size)
    x = torch.zeros(2, channels, size, size)
    assert model(x).shape == (2, 4)
    features = model.features(x)
    assert features.shape == (2, 128) and features.min() >= 0, "post-ReLU features"
    SmallCNN(**model.config()).load_state_dict(model.state_dict())


@pytest.mark.parametrize("size", [7, 129])
def test_small_cnn_refuses_sizes_outside_range(size):
    with pytest.raises(ValueError, match="8..128"):
        SmallCNN(num_classes=2, channels=1, size=size)


def test_classifier_learns_shapes(trained, held_out):
    x, y = held_out
    assert accuracy(trained, x, y) > 0.9
    probs = predict_proba(trained, x, batch_size=7)
    assert probs.dtype == np.float32 and probs.shape == (len(x), 3)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    assert extract_features(trained, x).shape == (len(x), 128)
    assert predict_proba(trained, x[:0]).shape == (0, 3)


def test_training_is_deterministic_by_seed():
    x, y = shapes(6, seed=0)
    runs = [
        train_classifier(x, y, num_classes=3, budget=QUICK, seed=seed, device="cpu")
        for seed in (1, 1, 2)
    ]
    assert same_weights(runs[0], runs[1])
    assert not same_weights(runs[0], runs[2])


def test_training_leaves_the_global_rng_alone():
    x, y = shapes(6, seed=0)
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    train_classifier(x, y, num_classes=3, budget=QUICK, seed=0, device="cpu")
    assert torch.equal(torch.rand(3), expected)


def test_random_shift_moves_each_image_within_radius():
    radius, size = shift_radius(16), 16
    assert radius == 2 and shift_radius(28) == 2 and shift_radius(64) == 5
    x = -torch.ones(64, 1, size, size)
    x[:, :, 8, 8] = 1.0  # one white pixel per image
    shifted = random_shift(x, radius, torch.Generator().manual_seed(0))
    assert shifted.shape == x.shape
    positions = (shifted[:, 0] == 1.0).nonzero()[:, 1:]  # (64, 2): one white pixel each
    assert len(positions) == 64 and set(np.unique(shifted.numpy())) == {-1.0, 1.0}
    offsets = positions - 8
    assert offsets.abs().max() == radius, "shifts reach but never pass the radius"
    assert len({tuple(o) for o in offsets.tolist()}) > 10, "each image gets its own shift"


def test_classic_augmentation_changes_training_and_still_learns(trained, held_out):
    x, y = shapes(20, seed=0)
    plain = train_classifier(
        x, y, num_classes=3, budget=BUDGET, seed=0, classic_augment=False, device="cpu"
    )
    assert not same_weights(plain, trained)
    assert accuracy(plain, *held_out) > 0.9 and accuracy(trained, *held_out) > 0.9


def train_with_synthetic(relabel, weight: float, budget: ClassifierBudget) -> SmallCNN:
    """2 real images per class plus 30 "synthetic" ones per class, relabelled."""
    x, y = shapes(2, seed=0)
    xs, ys = shapes(30, seed=1)
    return train_classifier(
        x,
        y,
        num_classes=3,
        budget=budget,
        seed=0,
        synthetic=(xs, relabel(ys)),
        synthetic_weight=weight,
        device="cpu",
    )


def right_labels(y: np.ndarray) -> np.ndarray:
    return y


def wrong_labels(y: np.ndarray) -> np.ndarray:
    return (y + 1) % 3


def test_synthetic_rows_with_right_labels_teach_the_classes(held_out):
    assert accuracy(train_with_synthetic(right_labels, 1.0, BUDGET), *held_out) > 0.9


def test_synthetic_rows_with_wrong_labels_outvote_the_real_rows(held_out):
    assert accuracy(train_with_synthetic(wrong_labels, 1.0, BUDGET), *held_out) < 0.2


def test_synthetic_weight_zero_ignores_synthetic_labels():
    right, wrong = (train_with_synthetic(f, 0.0, QUICK) for f in (right_labels, wrong_labels))
    assert same_weights(right, wrong)
    assert not same_weights(right, train_with_synthetic(wrong_labels, 0.5, QUICK))


def test_bad_training_inputs_are_refused():
    x, y = shapes(2, seed=0)
    with pytest.raises(ValueError, match="labels must be in 0..1"):
        train_classifier(x, y, num_classes=2, budget=QUICK, seed=0, device="cpu")
    with pytest.raises(ValueError, match="do not match"):
        synthetic = (np.zeros((3, 8, 8, 1), np.uint8), y[:3])
        train_classifier(x, y, num_classes=3, budget=QUICK, seed=0, synthetic=synthetic)


@pytest.mark.parametrize("batch", [1, 5])
def test_onnx_evaluator_matches_torch(trained, held_out, tmp_path, batch):
    export_evaluator_onnx(trained, tmp_path / EVALUATOR_FILE)
    scorer = EvaluatorScorer(tmp_path, providers=["CPUExecutionProvider"])
    x, y = held_out[0][:batch], held_out[1][:batch]
    probs, features = scorer.score(x, batch_size=2)
    assert probs.shape == (batch, 3) and features.shape == (batch, 128)
    np.testing.assert_allclose(probs, predict_proba(trained, x), atol=1e-4)
    np.testing.assert_allclose(features, extract_features(trained, x), rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(scorer.confidence(x, y), probs[np.arange(batch), y])
    assert scorer.image_shape == (16, 16, 1) and scorer.num_classes == 3


def test_evaluator_scorer_refuses_other_images_and_missing_files(trained, tmp_path):
    with pytest.raises(FileNotFoundError, match=EVALUATOR_FILE):
        EvaluatorScorer(tmp_path)
    export_evaluator_onnx(trained, tmp_path / EVALUATOR_FILE)
    scorer = EvaluatorScorer(tmp_path, providers=["CPUExecutionProvider"])
    with pytest.raises(ValueError, match=r"\(N, 16, 16, 1\)"):
        scorer.score(np.zeros((2, 16, 16, 3), np.uint8))
    with pytest.raises(ValueError, match="labels must be in 0..2"):
        scorer.confidence(np.zeros((1, 16, 16, 1), np.uint8), np.array([3]))
    empty_probs, empty_features = scorer.score(np.zeros((0, 16, 16, 1), np.uint8))
    assert empty_probs.shape == (0, 3) and empty_features.shape == (0, 128)


def test_soft_labels_onnx_is_the_tempered_mean_of_member_logits(trained, held_out, tmp_path):
    other = train_classifier(*shapes(20, seed=0), num_classes=3, budget=QUICK, seed=1)
    path = tmp_path / SOFT_LABELS_FILE
    export_soft_labels_onnx([trained, other], 2.0, path)
    x = held_out[0][:7]
    probs = ImageClassifier(path, providers=["CPUExecutionProvider"]).probs(x, batch_size=3)
    assert probs.shape == (7, 3)
    np.testing.assert_allclose(probs.sum(axis=1), 1, atol=1e-5)
    with torch.no_grad():
        images = torch.from_numpy(x.transpose(0, 3, 1, 2).astype(np.float32) / 127.5 - 1)
        logits = (trained(images) + other(images)) / 2
        expected = torch.softmax(logits / 2.0, dim=1).numpy()
    np.testing.assert_allclose(probs, expected, atol=1e-5)
    np.testing.assert_allclose(ensemble_proba([trained, other], x, 2.0), expected, atol=1e-6)
    alone = ensemble_proba([trained], x, 1.0)
    np.testing.assert_allclose(alone, predict_proba(trained, x), atol=1e-6)
    hot = ensemble_proba([trained], x, 1.0).max(axis=1)
    assert (ensemble_proba([trained], x, 4.0).max(axis=1) <= hot + 1e-6).all(), "T > 1 softens"


def test_soft_labels_need_members_of_one_architecture(trained, tmp_path):
    with pytest.raises(ValueError, match="members"):
        export_soft_labels_onnx([], 2.0, tmp_path / SOFT_LABELS_FILE)
    with pytest.raises(ValueError, match="temperature"):
        export_soft_labels_onnx([trained], 0.0, tmp_path / SOFT_LABELS_FILE)
    with pytest.raises(ValueError, match="architecture"):
        export_soft_labels_onnx([trained, SmallCNN(3, 1, 28)], 2.0, tmp_path / SOFT_LABELS_FILE)


def test_train_on_batches_follows_the_source_and_the_seed(held_out):
    """A caller's batch source and loss drive the net (here: everything is class 2), the
    source gets the seeded generator, and the same seed gives the same net."""
    x, _ = shapes(10, seed=0)
    images = torch.from_numpy(x.transpose(0, 3, 1, 2).astype(np.float32) / 127.5 - 1)
    everything_is_two = torch.tensor([0.05, 0.05, 0.9]).expand(len(images), 3)
    seen: list[torch.Generator] = []

    def source(generator: torch.Generator):
        seen.append(generator)
        for _ in range(40):
            rows = torch.randperm(len(images), generator=generator)[:16]
            yield images[rows], partial(F.cross_entropy, target=everything_is_two[rows])

    def train(seed: int) -> SmallCNN:
        return train_on_batches(
            source, lambda: SmallCNN(3, 1, 16), seed=seed, device="cpu", lr=3e-3
        )

    model = train(0)
    assert isinstance(model, SmallCNN) and not model.training
    assert len(seen) == 1 and isinstance(seen[0], torch.Generator)
    assert (predict_proba(model, held_out[0]).argmax(axis=1) == 2).all()
    assert same_weights(model, train(0))
    assert not same_weights(model, train(1))
