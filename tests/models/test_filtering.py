import itertools
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from models.artifact import GENERATOR_FILE, ImageShape, Manifest, generator_io
from models.evaluator import EVALUATOR_FILE, EvaluatorScorer
from models.filtering import FilterExhausted, SampleFilter, generate_filtered, iter_filtered
from models.images import to_unit_nchw
from models.manifold import ClassManifold
from models.sampler import GeneratorSampler
from models.truncation import sample_latents
from tests.factories import SHAPES, shapes_arrays
from training.classifier import (
    ClassifierBudget,
    SmallCNN,
    export_evaluator_onnx,
    train_classifier,
)

SIZE, Z_DIM = 16, 8
CPU = ["CPUExecutionProvider"]


class TemplateGenerator(nn.Module):
    """A stand-in generator: its class's mean shape plus latent-driven noise.

    Large latents give noisy images the evaluator doubts, small ones clean shapes, so a
    confidence threshold keeps some draws and rejects others.
    """

    def __init__(self, templates: torch.Tensor, noise: float = 1.2):
        super().__init__()
        k, c, h, w = templates.shape
        self.register_buffer("templates", templates)  # (K, C, H, W) in [-1, 1]
        mixing = torch.randn(Z_DIM, c * h * w, generator=torch.Generator().manual_seed(0))
        self.register_buffer("mixing", mixing * noise / Z_DIM**0.5)

    def forward(self, latent: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        noise = (latent @ self.mixing).view(-1, *self.templates.shape[1:])  # (B, C, H, W)
        return torch.clamp(self.templates[labels] + noise, -1.0, 1.0)  # (B, C, H, W)


def write_generator(model_dir: Path, x: np.ndarray, y: np.ndarray) -> None:
    """generator.onnx + manifest.json as `training.run` would write them."""
    images = torch.from_numpy(to_unit_nchw(x))
    templates = torch.stack([images[y == c].mean(0) for c in range(len(SHAPES))])
    torch.onnx.export(
        TemplateGenerator(templates).eval(),
        (torch.zeros(2, Z_DIM), torch.zeros(2, dtype=torch.int64)),
        str(model_dir / GENERATOR_FILE),
        dynamo=False,
        opset_version=17,
        input_names=["latent", "class"],
        output_names=["image"],
        dynamic_axes={"latent": {0: "B"}, "class": {0: "B"}, "image": {0: "B"}},
    )
    shape = ImageShape(height=SIZE, width=SIZE, channels=1)
    inputs, outputs = generator_io(Z_DIM, shape)
    manifest = Manifest(
        model_id="template",
        method="template",
        classes=list(SHAPES),
        z_dim=Z_DIM,
        image=shape,
        config={},
        versions={},
        final_losses={},
        steps_completed=0,
        created_at=datetime.now(UTC),
        inputs=inputs,
        outputs=outputs,
    )
    manifest.save(model_dir)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model directory with a template generator and an evaluator trained on shapes."""
    out = tmp_path_factory.mktemp("model")
    x, y = shapes_arrays(20, SIZE, seed=0)
    x = x[..., None]
    write_generator(out, x, y)
    budget = ClassifierBudget(steps=100, batch_size=32)
    evaluator = train_classifier(x, y, num_classes=3, budget=budget, seed=0, device="cpu")
    export_evaluator_onnx(evaluator, out / EVALUATOR_FILE)
    features = EvaluatorScorer(out, providers=CPU).score(x)[1]
    ClassManifold.build(features, y, k=5).save(out)  # as the report does
    return out


@pytest.fixture(scope="module")
def sampler(model_dir: Path) -> GeneratorSampler:
    return GeneratorSampler(model_dir, providers=CPU)


@pytest.fixture(scope="module")
def scorer(model_dir: Path) -> EvaluatorScorer:
    return EvaluatorScorer(model_dir, providers=CPU)


@pytest.fixture(scope="module")
def threshold(sampler: GeneratorSampler, scorer: EvaluatorScorer) -> float:
    """A confidence about half of the unfiltered class-0 draws reach."""
    images = unfiltered(sampler, np.random.default_rng(123), 200)
    return float(np.median(scorer.confidence(images, np.zeros(200, np.int64))))


def unfiltered(sampler: GeneratorSampler, rng: np.random.Generator, n: int) -> np.ndarray:
    latents = sample_latents(rng, n, Z_DIM)
    return sampler.generate(np.zeros(n, np.int64), latents)


def test_every_kept_image_passes_the_threshold(sampler, scorer, threshold):
    assert 0.4 < threshold < 0.99, "the fixture generator should be neither hopeless nor perfect"
    images = generate_filtered(
        sampler,
        scorer,
        0,
        50,
        np.random.default_rng(0),
        keep=SampleFilter("confident", threshold),
        chunk=16,
    )
    assert images.dtype == np.uint8 and images.shape == (50, SIZE, SIZE, 1)
    assert (scorer.confidence(images, np.zeros(50, np.int64)) >= threshold).all()


def test_kept_images_are_the_passing_draws_in_order(sampler, scorer, threshold):
    kept = generate_filtered(
        sampler,
        scorer,
        0,
        20,
        np.random.default_rng(7),
        keep=SampleFilter("confident", threshold),
        chunk=16,
    )
    draws = unfiltered(sampler, np.random.default_rng(7), 200)
    passing = draws[scorer.confidence(draws, np.zeros(200, np.int64)) >= threshold]
    np.testing.assert_array_equal(kept, passing[:20])


def test_same_rng_seed_gives_same_images(sampler, scorer, threshold):
    def run(seed: int) -> np.ndarray:
        rng = np.random.default_rng(seed)
        return generate_filtered(
            sampler, scorer, 0, 10, rng, keep=SampleFilter("confident", threshold)
        )

    np.testing.assert_array_equal(run(3), run(3))
    assert not np.array_equal(run(3), run(4))


def test_filtering_raises_the_confidence_of_what_is_kept(sampler, scorer, threshold):
    rng = np.random.default_rng(1)
    kept = generate_filtered(sampler, scorer, 0, 40, rng, keep=SampleFilter("confident", threshold))
    raw = unfiltered(sampler, np.random.default_rng(1), 40)
    labels = np.zeros(40, np.int64)
    assert scorer.confidence(kept, labels).mean() > scorer.confidence(raw, labels).mean()


def test_impossible_threshold_raises_filter_exhausted(sampler, scorer):
    rng = np.random.default_rng(0)
    with pytest.raises(FilterExhausted, match=r"only 0 of 40 images .* lower min_confidence"):
        generate_filtered(
            sampler, scorer, 2, 4, rng, keep=SampleFilter("confident", 1.01), max_draw_factor=10
        )


def test_untrained_evaluator_trusts_nothing(sampler, tmp_path):
    with torch.random.fork_rng():
        torch.manual_seed(0)
        export_evaluator_onnx(SmallCNN(3, 1, SIZE), tmp_path / EVALUATOR_FILE)
    untrained = EvaluatorScorer(tmp_path, providers=CPU)
    with pytest.raises(FilterExhausted, match="only 0 of 100 images drawn for class 1"):
        generate_filtered(
            sampler, untrained, 1, 5, np.random.default_rng(0), keep=SampleFilter("confident", 0.9)
        )


def test_iter_filtered_streams_batches_until_stopped(sampler, scorer, threshold):
    rng = np.random.default_rng(0)
    stream = iter_filtered(
        sampler, scorer, 0, rng, keep=SampleFilter("confident", threshold), chunk=8
    )
    batches = list(itertools.islice(stream, 5))
    assert all(1 <= len(b) <= 8 and b.shape[1:] == (SIZE, SIZE, 1) for b in batches)


def test_zero_count_gives_no_images(sampler, scorer):
    images = generate_filtered(sampler, scorer, 0, 0, np.random.default_rng(0))
    assert images.shape == (0, SIZE, SIZE, 1) and images.dtype == np.uint8


def test_bad_options_are_refused_before_drawing(sampler, scorer):
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="class_index must be in 0..2"):
        iter_filtered(sampler, scorer, 3, rng)
    with pytest.raises(ValueError, match="chunk must be >= 1"):
        iter_filtered(sampler, scorer, 0, rng, chunk=0)
    with pytest.raises(ValueError, match="count >= 0"):
        generate_filtered(sampler, scorer, 0, -1, rng)
    assert rng.bit_generator.state == np.random.default_rng(0).bit_generator.state


MANIFOLD = SampleFilter("manifold")


def test_manifold_filter_keeps_only_images_inside_the_real_class_manifold(sampler, scorer):
    labels = np.zeros(30, np.int64)
    latents = sample_latents(np.random.default_rng(5), 200, Z_DIM, truncation=0.5)
    raw = sampler.generate(np.zeros(200, np.int64), latents)
    inside = scorer.in_manifold(raw, np.zeros(200, np.int64))
    assert 30 <= inside.sum() < 200, "the fixture generator should put some draws outside"
    rng = np.random.default_rng(5)
    kept = generate_filtered(sampler, scorer, 0, 30, rng, truncation=0.5, keep=MANIFOLD, chunk=200)
    assert kept.shape == (30, SIZE, SIZE, 1)
    assert scorer.in_manifold(kept, labels).all()
    np.testing.assert_array_equal(kept, raw[inside][:30])  # the passing draws, in order


def test_manifold_filter_says_what_to_change_when_nothing_is_inside(sampler, model_dir):
    scorer = EvaluatorScorer(model_dir, providers=CPU)
    real = scorer.manifold
    scorer.manifold = ClassManifold(real.features, real.labels, np.zeros_like(real.radii), 5)
    with pytest.raises(FilterExhausted, match="only 0 of 40 .* inside the real class manifold"):
        generate_filtered(
            sampler, scorer, 1, 4, np.random.default_rng(0), keep=MANIFOLD, max_draw_factor=10
        )


def test_manifold_filter_needs_the_reports_manifold(sampler, tmp_path, model_dir):
    (tmp_path / EVALUATOR_FILE).write_bytes((model_dir / EVALUATOR_FILE).read_bytes())
    scorer = EvaluatorScorer(tmp_path, providers=CPU)
    assert scorer.manifold is None
    with pytest.raises(ValueError, match="manifold.npz"):
        iter_filtered(sampler, scorer, 0, np.random.default_rng(0), keep=MANIFOLD)
    with pytest.raises(FileNotFoundError, match="rebuild the report"):
        scorer.in_manifold(np.zeros((1, SIZE, SIZE, 1), np.uint8), np.zeros(1, np.int64))


def test_class_manifold_radii_and_membership(tmp_path):
    # class 0 at 0, 1 and 3 on a line (k = 1: radii 1, 1, 2); class 1 a single point at 10
    features = np.array([[0.0], [1.0], [3.0], [10.0]], np.float32)
    manifold = ClassManifold.build(features, np.array([0, 0, 0, 1]), k=1)
    np.testing.assert_allclose(manifold.radii, [1, 1, 2, 0])
    manifold.save(tmp_path)
    loaded = ClassManifold.load(tmp_path)
    probes = np.array([[4.9], [5.1], [-1.0], [10.0], [9.9], [2.0]], np.float32)
    labels = np.array([0, 0, 0, 1, 1, 1])
    np.testing.assert_array_equal(
        loaded.contains(probes, labels), [True, False, True, True, False, False]
    )
    assert loaded.contains(features, np.array([0, 0, 0, 1])).all()  # real images are inside
