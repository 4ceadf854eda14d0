import numpy as np
import pytest

from models.truncation import MIN_RESAMPLE_TRUNCATION, sample_latents, truncate_latents


def normal(seed: int = 0, shape: tuple[int, int] = (256, 32)) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape, dtype=np.float32)


@pytest.mark.parametrize("tau", [0.5, 1.0, 2.0])
def test_clamp_is_sign_times_min_abs(tau):
    z = normal()
    zt = truncate_latents(z, tau, "clamp")
    assert zt.dtype == np.float32 and zt.shape == z.shape
    assert np.abs(zt).max() <= tau
    np.testing.assert_array_equal(zt, np.sign(z) * np.minimum(np.abs(z), np.float32(tau)))
    assert (np.abs(z) > tau).any(), "the test needs components to clamp"


def test_resample_redraws_only_components_outside():
    z = normal()
    tau = 0.7
    zt = truncate_latents(z, tau, "resample", rng=np.random.default_rng(1))
    outside = np.abs(z) > tau
    assert np.abs(zt).max() <= tau
    np.testing.assert_array_equal(zt[~outside], z[~outside])
    redrawn = zt[outside]
    assert not np.isin(redrawn, [tau, -tau]).any(), "resampled, not clamped"
    # fresh draws fill the whole interval rather than piling up near its edges
    assert redrawn.std() > 0.3
    assert np.array_equal(z, normal()), "the input is not modified"


def test_resample_needs_rng():
    with pytest.raises(ValueError, match="rng"):
        truncate_latents(normal(), 1.0, "resample")


def test_none_is_identity():
    z = normal()
    np.testing.assert_array_equal(truncate_latents(z, None), z)
    np.testing.assert_array_equal(truncate_latents(z, None, "resample"), z)


@pytest.mark.parametrize("tau", [0.0, -1.0])
@pytest.mark.parametrize("mode", ["clamp", "resample"])
def test_non_positive_tau_rejected(tau, mode):
    with pytest.raises(ValueError, match="> 0"):
        truncate_latents(normal(), tau, mode, rng=np.random.default_rng(0))


def test_unknown_mode_rejected():
    with pytest.raises(ValueError, match="mode"):
        truncate_latents(normal(), 1.0, "soft")


@pytest.mark.parametrize("truncation, mode", [(None, "clamp"), (0.8, "clamp"), (0.8, "resample")])
def test_sample_latents_deterministic_per_rng_state(truncation, mode):
    def draw(seed):
        rng = np.random.default_rng(seed)
        return sample_latents(rng, 64, 16, truncation=truncation, mode=mode)

    a, b, c = draw(7), draw(7), draw(8)
    assert a.dtype == np.float32 and a.shape == (64, 16)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
    if truncation is not None:
        assert np.abs(a).max() <= truncation


def test_sample_latents_untruncated_is_standard_normal():
    z = sample_latents(np.random.default_rng(0), 4096, 64)
    assert abs(z.mean()) < 0.01 and abs(z.std() - 1) < 0.01


@pytest.mark.parametrize("tau", [1e-4, 1e-9, MIN_RESAMPLE_TRUNCATION / 2])
def test_resample_refuses_thresholds_that_would_redraw_without_bound(tau):
    with pytest.raises(ValueError, match="resample needs truncation >= 0.05.*use mode clamp"):
        truncate_latents(normal(), tau, "resample", rng=np.random.default_rng(0))


def test_resample_at_the_minimum_threshold_finishes_inside():
    tau = MIN_RESAMPLE_TRUNCATION
    zt = truncate_latents(normal(), tau, "resample", rng=np.random.default_rng(0))
    assert np.abs(zt).max() <= tau
