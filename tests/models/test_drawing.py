from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from models.artifact import GENERATOR_FILE, ImageShape, Manifest, generator_io
from models.drawing import (
    CHUNK,
    DrawSpec,
    FilterExhausted,
    class_rng,
    draw_class,
    draw_class_images,
)
from models.evaluator import EVALUATOR_FILE, EvaluatorScorer
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
    images = unfiltered(sampler, 123, 200)
    return float(np.median(scorer.confidence(images, np.zeros(200, np.int64))))


def unfiltered(sampler: GeneratorSampler, seed: int, n: int, truncation=None) -> np.ndarray:
    """Class 0's first n draws for `seed` by hand: blocks of CHUNK latents from class_rng."""
    rng = class_rng(seed, 0)
    blocks = -(-n // CHUNK)
    latents = np.concatenate(
        [sample_latents(rng, CHUNK, Z_DIM, truncation=truncation) for _ in range(blocks)]
    )[:n]
    return sampler.generate(np.zeros(n, np.int64), latents)


def confident(threshold: float) -> DrawSpec:
    return DrawSpec(filter="confident", min_confidence=threshold)


MANIFOLD = DrawSpec(filter="manifold")


def test_unfiltered_draw_follows_the_seeding_rule(sampler):
    images = draw_class_images(sampler, 0, 300, seed=4)
    assert images.dtype == np.uint8 and images.shape == (300, SIZE, SIZE, 1)
    np.testing.assert_array_equal(images, unfiltered(sampler, 4, 300))


def test_a_longer_draw_starts_with_a_shorter_ones_images(sampler):
    for spec in (DrawSpec(), DrawSpec(0.5), DrawSpec(0.5, "resample")):
        short = draw_class_images(sampler, 1, 5, seed=9, spec=spec)
        long = draw_class_images(sampler, 1, 140, seed=9, spec=spec)
        np.testing.assert_array_equal(long[:5], short)


def test_classes_and_seeds_have_their_own_streams(sampler):
    a = draw_class_images(sampler, 0, 4, seed=1)
    assert not np.array_equal(a, draw_class_images(sampler, 0, 4, seed=2))
    np.testing.assert_array_equal(a, draw_class_images(sampler, 0, 4, seed=1))
    z0 = sample_latents(class_rng(1, 0), 4, Z_DIM)
    z1 = sample_latents(class_rng(1, 1), 4, Z_DIM)
    assert not np.array_equal(z0, z1)


def test_batches_are_at_most_a_chunk(sampler):
    batches = list(draw_class(sampler, 2, 300, seed=0))
    assert [len(b) for b in batches] == [CHUNK, CHUNK, 300 - 2 * CHUNK]


def test_every_kept_image_passes_the_threshold(sampler, scorer, threshold):
    assert 0.4 < threshold < 0.99, "the fixture generator should be neither hopeless nor perfect"
    images = draw_class_images(sampler, 0, 50, 0, confident(threshold), scorer)
    assert images.dtype == np.uint8 and images.shape == (50, SIZE, SIZE, 1)
    assert (scorer.confidence(images, np.zeros(50, np.int64)) >= threshold).all()


def test_kept_images_are_the_passing_draws_in_order(sampler, scorer, threshold):
    kept = draw_class_images(sampler, 0, 20, 7, confident(threshold), scorer)
    draws = unfiltered(sampler, 7, 256)
    passing = draws[scorer.confidence(draws, np.zeros(256, np.int64)) >= threshold]
    np.testing.assert_array_equal(kept, passing[:20])


def test_same_seed_gives_same_filtered_images(sampler, scorer, threshold):
    def run(seed: int) -> np.ndarray:
        return draw_class_images(sampler, 0, 10, seed, confident(threshold), scorer)

    np.testing.assert_array_equal(run(3), run(3))
    assert not np.array_equal(run(3), run(4))


def test_filtering_raises_the_confidence_of_what_is_kept(sampler, scorer, threshold):
    kept = draw_class_images(sampler, 0, 40, 1, confident(threshold), scorer)
    raw = unfiltered(sampler, 1, 40)
    labels = np.zeros(40, np.int64)
    assert scorer.confidence(kept, labels).mean() > scorer.confidence(raw, labels).mean()


def test_untrained_evaluator_trusts_nothing(sampler, tmp_path):
    with torch.random.fork_rng():
        torch.manual_seed(0)
        export_evaluator_onnx(SmallCNN(3, 1, SIZE), tmp_path / EVALUATOR_FILE)
    untrained = EvaluatorScorer(tmp_path, providers=CPU)
    match = "only 0 of 100 images drawn for class 1 reached confidence 0.9; lower min_confidence"
    with pytest.raises(FilterExhausted, match=match):
        draw_class_images(sampler, 1, 5, 0, confident(0.9), untrained)


def test_zero_count_gives_no_images(sampler, scorer):
    images = draw_class_images(sampler, 0, 0, 0, confident(0.5), scorer)
    assert images.shape == (0, SIZE, SIZE, 1) and images.dtype == np.uint8


def test_bad_options_are_refused_before_drawing(sampler, scorer):
    with pytest.raises(ValueError, match="class_index must be in 0..2"):
        draw_class(sampler, 3, 1, 0)
    with pytest.raises(ValueError, match="count >= 0"):
        draw_class(sampler, 0, -1, 0)
    with pytest.raises(ValueError, match="needs the report's evaluator"):
        draw_class(sampler, 0, 1, 0, confident(0.5))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"truncation": 0.0}, "> 0"),
        ({"truncation": 0.01, "truncation_mode": "resample"}, "resample needs truncation >= 0.05"),
        ({"filter": "confident", "min_confidence": 0.0}, "min_confidence"),
        ({"filter": "blurry"}, "filter must be one of"),
    ],
)
def test_draw_spec_refuses_what_cannot_be_drawn(kwargs, message):
    with pytest.raises(ValueError, match=message):
        DrawSpec(**kwargs)


def test_manifold_filter_keeps_only_images_inside_the_real_class_manifold(sampler, scorer):
    labels = np.zeros(30, np.int64)
    raw = unfiltered(sampler, 5, 256, truncation=0.5)
    inside = scorer.in_manifold(raw, np.zeros(256, np.int64))
    assert 30 <= inside.sum() < 256, "the fixture generator should put some draws outside"
    kept = draw_class_images(sampler, 0, 30, 5, DrawSpec(0.5, filter="manifold"), scorer)
    assert kept.shape == (30, SIZE, SIZE, 1)
    assert scorer.in_manifold(kept, labels).all()
    np.testing.assert_array_equal(kept, raw[inside][:30])  # the passing draws, in order


def test_manifold_filter_says_what_to_change_when_nothing_is_inside(sampler, model_dir):
    scorer = EvaluatorScorer(model_dir, providers=CPU)
    real = scorer.manifold
    scorer.manifold = ClassManifold(real.features, real.labels, np.zeros_like(real.radii), 5)
    with pytest.raises(FilterExhausted, match="only 0 of 40 .* inside the real class manifold"):
        draw_class_images(sampler, 1, 4, 0, MANIFOLD, scorer, max_draw_factor=10)


def test_manifold_filter_needs_the_reports_manifold(sampler, tmp_path, model_dir):
    (tmp_path / EVALUATOR_FILE).write_bytes((model_dir / EVALUATOR_FILE).read_bytes())
    scorer = EvaluatorScorer(tmp_path, providers=CPU)
    assert scorer.manifold is None
    with pytest.raises(ValueError, match="manifold.npz"):
        draw_class(sampler, 0, 1, 0, MANIFOLD, scorer)
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


def test_filters_on_the_tiny_trained_model(tiny_model):
    """The report's evaluator and manifold against a real (tiny) GAN: kept squares pass and
    the same seed keeps the same ones."""
    sampler = GeneratorSampler(tiny_model.model_dir, providers=CPU)
    scorer = EvaluatorScorer(tiny_model.model_dir, providers=CPU)
    square, labels = SHAPES.index("square"), np.full(8, SHAPES.index("square"))
    passes = {
        "confident": lambda images: scorer.confidence(images, labels) >= 0.8,
        "manifold": lambda images: scorer.in_manifold(images, labels),
    }
    for kind, passed in passes.items():
        spec = DrawSpec(filter=kind, min_confidence=0.8)
        kept = draw_class_images(sampler, square, 8, 0, spec, scorer)
        assert kept.shape == (8, SIZE, SIZE, 1) and passed(kept).all(), kind
        np.testing.assert_array_equal(draw_class_images(sampler, square, 8, 0, spec, scorer), kept)
