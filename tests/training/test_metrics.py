import numpy as np
import pytest

from training.metrics import fid, kid, prdc


def gaussian(n: int, dim: int = 8, shift: float = 0.0, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, dim)) + shift


def test_fid_of_a_set_with_itself_is_zero():
    a = gaussian(200, dim=16)
    assert fid(a, a) == pytest.approx(0.0, abs=1e-8)


def test_fid_matches_closed_forms():
    a, b = gaussian(300, dim=1), gaussian(300, dim=1, seed=1) * 3 + 2
    expected = (a.mean() - b.mean()) ** 2 + (a.std(ddof=1) - b.std(ddof=1)) ** 2
    assert fid(a, b) == pytest.approx(expected, rel=1e-9)
    # b = 2a: sqrt(cov_a cov_b) = 2 cov_a, so FID = |mean_a|^2 + tr(cov_a) in any dimension
    a = gaussian(300, dim=6, shift=0.5) @ np.random.default_rng(2).standard_normal((6, 6))
    expected = np.sum(a.mean(0) ** 2) + np.trace(np.cov(a, rowvar=False))
    assert fid(a, 2 * a) == pytest.approx(expected, rel=1e-8)


def test_fid_grows_with_a_mean_shift():
    a = gaussian(300)
    scores = [fid(a, gaussian(300, shift=s, seed=1)) for s in (0.0, 0.5, 1.0, 2.0)]
    assert scores == sorted(scores) and scores[0] < 0.5 < scores[-1]


def test_kid_near_zero_on_same_distribution_and_positive_on_a_shift():
    a, b = gaussian(200), gaussian(200, seed=1)
    same_mean, same_std = kid(a, b, subsets=20, subset_size=100)
    shifted_mean, _ = kid(a, gaussian(200, shift=1.0, seed=1), subsets=20, subset_size=100)
    assert abs(same_mean) < 0.05 and same_std >= 0
    assert shifted_mean > 10 * max(abs(same_mean), 0.01)


def relu_features(n: int, shift: float = 0.0, seed: int = 0, scale: float = 100.0) -> np.ndarray:
    """Like the evaluator's: 128-d, correlated, post-ReLU and far from unit scale."""
    mixing = np.random.default_rng(99).standard_normal((128, 128)) * 0.5
    z = np.random.default_rng(seed).standard_normal((n, 128)) @ mixing + 0.3 + shift
    return np.maximum(z, 0) * scale


def test_kid_is_near_zero_for_one_distribution_at_any_feature_scale():
    real, same = relu_features(300), relu_features(300, seed=1)
    shifted = relu_features(300, shift=1.0, seed=2)
    same_kid = kid(same, real, subsets=20, subset_size=100)
    shifted_mean, _ = kid(shifted, real, subsets=20, subset_size=100)
    assert abs(same_kid[0]) < 0.01 and same_kid[1] < 0.02
    assert shifted_mean > 0.05
    for factor in (1e-2, 1e3):  # the reference's root-mean-square sets the kernel's scale
        rescaled = kid(same * factor, real * factor, subsets=20, subset_size=100)
        assert rescaled == pytest.approx(same_kid, abs=1e-9)


def test_kid_against_an_all_zero_reference_is_finite():
    assert np.isfinite(kid(gaussian(20), np.zeros((20, 8)), subsets=3)[0])


def test_kid_is_deterministic_and_shrinks_subsets_to_small_sets():
    a, b = gaussian(30), gaussian(20, shift=1.0, seed=1)
    assert kid(a, b, subsets=5) == kid(a, b, subsets=5)
    assert kid(a, b, subsets=5)[0] > 0


def test_prdc_on_identical_sets():
    a = gaussian(100)
    scores = prdc(a, a.copy(), k=5)
    assert scores["precision"] == scores["recall"] == scores["coverage"] == 1.0
    assert scores["density"] == pytest.approx(1.0)


def test_prdc_on_disjoint_clusters_is_zero():
    scores = prdc(gaussian(50), gaussian(50, shift=100.0, seed=1), k=5)
    assert scores == {"precision": 0.0, "recall": 0.0, "density": 0.0, "coverage": 0.0}


def test_prdc_fake_inside_half_the_real_support():
    real = np.concatenate([gaussian(100, dim=2), gaussian(100, dim=2, shift=50, seed=1)])
    scores = prdc(real, gaussian(100, dim=2, seed=2), k=5)
    assert scores["precision"] > 0.8 and 0.3 < scores["coverage"] < 0.55
    assert 0.3 < scores["recall"] < 0.6


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: fid(gaussian(1), gaussian(5)), "at least 2 rows"),
        (lambda: kid(gaussian(5), gaussian(1)), "at least 2 rows"),
        (lambda: prdc(gaussian(5), gaussian(50), k=5), r"real \(k=5\) needs at least 6 rows"),
        (lambda: prdc(gaussian(50), gaussian(50), k=0), "k must be >= 1"),
        (lambda: fid(gaussian(5, dim=3), gaussian(5, dim=4)), "feature sizes differ"),
        (lambda: fid(np.zeros(5), gaussian(5)), r"\(N, D\)"),
    ],
)
def test_too_small_or_mismatched_sets_are_refused(call, match):
    with pytest.raises(ValueError, match=match):
        call()
