"""The quality report: how close a model's synthetic images come to the real ones, and
whether adding them actually helps a classifier (torch).

Everything is judged on the held-out split the GAN never saw (`training.split`). An
evaluator CNN trained on the train split gives the feature space of the distribution
metrics, the confidence that `filter=confident` uses and the real class manifold that
`filter=manifold` uses. Each recipe (how many synthetic
images, which truncation, which filter) is scored by training the same small classifier,
with classic augmentation, on real + synthetic images and comparing its held-out accuracy
with real-only training under the same budget and seeds (`training.report_trials`).
Synthetic data is recommended only when it beats real-only training by more than the
noise of the held-out set. This module runs the stages in order and writes the results.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from models.artifact import (
    REPORT_FILE,
    REPORT_PICTURES_DIR,
    Evaluation,
    Manifest,
    Recipe,
    TruncationPoint,
    atomic_write_bytes,
)
from models.evaluator import EVALUATOR_FILE, EvaluatorScorer
from models.manifold import MANIFOLD_FILE, ClassManifold
from models.sampler import GeneratorSampler
from models.truncation import sample_latents
from training import metrics
from training import report_plots as plots
from training.classifier import ClassifierBudget, export_evaluator_onnx, train_classifier
from training.dataset import StoredDataset
from training.errors import TrainingAborted
from training.report_trials import (
    BASELINE,
    Mix,
    SyntheticPool,
    Trials,
    Truncation,
    distribution_metrics,
    recommend,
)
from training.split import Split

REPORT_FORMAT = "ganaug.report/1"
PICTURE_SAMPLES = 8  # images per class in the sample grid


@dataclass(frozen=True)
class ReportBudget:
    """How much work the report does; `standard()` for real data, `fast()` for tests."""

    evaluator: ClassifierBudget = ClassifierBudget(steps=500)  # feature space + confidence
    quick: ClassifierBudget = ClassifierBudget(steps=200)  # every classifier compared
    # the best recipe, when it beats real-only training, again at the downstream budget
    confirm: ClassifierBudget = ClassifierBudget()
    seeds: tuple[int, ...] = (0,)  # classifier seeds averaged for every comparison
    truncations: tuple[Truncation, ...] = (0.5, 0.75, 1.0, 1.5, 2.0, None)
    sweep_ratio: float = 1.0  # synthetic:real in the truncation sweep
    ratios: tuple[float, ...] = (0.5, 1.0, 2.0)  # synthetic per class, x the real count
    fixed_total_fractions: tuple[float, ...] = (0.5,)  # synthetic share at a fixed total
    min_confidence: float = 0.9  # filter=confident keeps images the evaluator trusts this much
    metric_samples_per_class: int = 500  # cap on images per class in FID, KID and PRDC
    kid_subsets: int = 50
    alpha: float = 0.05  # chance of recommending synthetic data that does not help
    seed: int = 0  # latents, KID subsets, the evaluator and the real subsets

    @classmethod
    def standard(cls) -> ReportBudget:
        """About 5 minutes on 2 CPU cores for 500 images of 28 px."""
        return cls()

    @classmethod
    def fast(cls) -> ReportBudget:
        """Seconds: for tests and tiny datasets; the numbers are rough."""
        return cls(
            evaluator=ClassifierBudget(steps=40, batch_size=32),
            quick=ClassifierBudget(steps=20, batch_size=32),
            confirm=ClassifierBudget(steps=30, batch_size=32),
            truncations=(0.75, None),
            ratios=(1.0,),
            min_confidence=0.5,
            metric_samples_per_class=50,
            kid_subsets=10,
        )

    @property
    def max_ratio(self) -> float:
        """The most synthetic images per real one that any classifier trains on."""
        return max((*self.ratios, *self.fixed_total_fractions, self.sweep_ratio, 1.0))


REPORT_BUDGETS = {"fast": ReportBudget.fast(), "standard": ReportBudget.standard()}


@dataclass(frozen=True)
class RealData:
    """The dataset split as the GAN saw it: it trained on the train images only."""

    classes: list[str]
    x_train: np.ndarray  # uint8 (N, S, S, C)
    y_train: np.ndarray  # int64 (N,)
    x_test: np.ndarray  # the held-out images, or the train ones when there are none
    y_test: np.ndarray
    heldout: bool

    @property
    def test(self) -> tuple[np.ndarray, np.ndarray]:
        return self.x_test, self.y_test

    @property
    def train_counts(self) -> np.ndarray:
        return np.bincount(self.y_train, minlength=len(self.classes))


def load_real(model_dir: Path, dataset_dir: Path) -> RealData:
    """Read the stored dataset and split it with the model's split.json (none: no held-out)."""
    dataset = StoredDataset.load(dataset_dir)
    classes, x, y = dataset.classes, dataset.x, dataset.y
    if Split.path(model_dir).exists():
        split = Split.load(model_dir)
        train, holdout = split.train, split.holdout
    else:
        train, holdout = np.arange(len(y)), np.arange(0)
    test = holdout if holdout.size else train
    return RealData(classes, x[train], y[train], x[test], y[test], heldout=bool(holdout.size))


class Stages:
    """Reports overall progress, checks abort_fn between units of work, times each stage."""

    # Shares of the run time measured on CPU (500 Fashion-MNIST images), in running order.
    WEIGHTS = {
        "data": 0.01,
        "evaluator": 0.12,
        "metrics": 0.01,
        "truncation_sweep": 0.3,
        "recipe_search": 0.43,
        "confirm": 0.0,  # usually skipped; when it runs, minutes on a CPU
        "cas": 0.05,
        "ratio_study": 0.05,
        "pictures": 0.02,
        "write": 0.01,
    }

    def __init__(self, progress_fn: Callable | None, abort_fn: Callable | None):
        self.progress_fn, self.abort_fn = progress_fn, abort_fn
        self.timings_s: dict[str, float] = {}
        self.name, self.done, self.units, self.ticks, self.started = "", 0.0, 1, 0, 0.0

    def start(self, name: str, units: int = 1) -> None:
        """Begin a stage expected to call `tick` about `units` times."""
        self._close()
        self.name, self.units, self.ticks = name, max(units, 1), 0
        self.started = time.perf_counter()
        self.tick(count=False)

    def tick(self, count: bool = True) -> None:
        """A unit of work is about to start: abort if asked, else report progress."""
        if self.abort_fn is not None and self.abort_fn():
            raise TrainingAborted(f"quality report aborted during {self.name}")
        self.ticks += count
        share = min(self.ticks / self.units, 1.0) * self.WEIGHTS[self.name]
        self._report(self.name, min(self.done + share, 1.0))

    def finish(self) -> None:
        self._close()
        self._report("done", 1.0)

    def _report(self, stage: str, fraction: float) -> None:
        if self.progress_fn is not None:
            self.progress_fn(stage, fraction)

    def _close(self) -> None:
        if self.name:
            self.timings_s[self.name] = round(time.perf_counter() - self.started, 2)
            self.done += self.WEIGHTS[self.name]
            self.name = ""


def first_per_class(labels: np.ndarray, cap: int) -> np.ndarray:
    """Indices of the first `cap` rows of every class, in row order."""
    return np.sort(np.concatenate([np.flatnonzero(labels == c)[:cap] for c in np.unique(labels)]))


def per_class_accuracy(correct: np.ndarray, labels: np.ndarray, num_classes: int) -> list:
    """Mean of bool (seeds, N) over seeds and the images of each class (None: no images)."""
    return [
        float(correct[:, labels == c].mean()) if (labels == c).any() else None
        for c in range(num_classes)
    ]


def _json_ready(value):
    """Replace non-finite floats with None and tuples with lists, so json.dumps stays strict."""
    if isinstance(value, dict):
        return {k: _json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_ready(v) for v in value]
    if isinstance(value, float | np.floating):
        return float(value) if np.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def notes(data: RealData, sweep: list[dict], rows: list[dict], decision: dict) -> list[str]:
    """Plain sentences that say what the numbers mean for someone adding synthetic data."""
    if not data.heldout:
        return [
            "No held-out split (holdout_fraction 0): FID, KID and PRDC compare the samples "
            "with the training images the GAN saw, which rewards memorisation; CAS, the "
            "truncation sweep and the recipe search need held-out images and were skipped."
        ]
    n = len(data.y_test)
    said = [
        f"Judged on {n} held-out images the GAN never saw: each is worth {100 / n:.2g} "
        "accuracy points, so read every lift with its standard error (lift_se).",
        "Read FID, KID and PRDC against real_train: the same numbers for real training "
        "images vs the held-out ones, which a perfect generator would match.",
        _sweep_note(sweep),
    ]
    return [*said, _verdict(rows, decision)]


def _sweep_note(sweep: list[dict]) -> str:
    accuracies = [row["accuracy"] for row in sweep]
    spread, noise = max(accuracies) - min(accuracies), np.median([r["lift_se"] for r in sweep])
    best = plots.truncation_text(max(sweep, key=lambda row: row["accuracy"])["truncation"])
    if spread > 2 * noise:
        return f"Truncation: {best} gave the best held-out accuracy (t_star)."
    return (
        f"Truncation: {best} scored best, but the sweep spans {100 * spread:.1f} points, "
        f"within 2 standard errors ({200 * noise:.1f}): t_star is a weak preference."
    )


def _verdict(rows: list[dict], decision: dict) -> str:
    best, confirmation = decision["best"], decision["confirmation"]
    if best is None:
        return "No synthetic recipe could be tried: add no synthetic images."
    result = (
        f"{plots.recipe_label(best)} scored {best['accuracy']:.1%} vs "
        f"{rows[0]['accuracy']:.1%} for real images only "
        f"({100 * best['lift']:+.1f} ± {100 * best['lift_se']:.1f} points)"
    )
    if confirmation is not None:
        steps = confirmation["budget"]["steps"]
        confirmed = (
            f"trained for {steps} steps, as a downstream classifier would be, it scored "
            f"{confirmation['accuracy']:.1%} vs "
            f"{confirmation['accuracy'] - confirmation['lift']:.1%} "
            f"({100 * confirmation['lift']:+.1f} ± {100 * confirmation['lift_se']:.1f} points)"
        )
        if decision["helped"]:
            return (
                f"Synthetic data helped: {result} with quick classifiers, and {confirmed}. "
                "It was the best of several recipes on these held-out images, so expect a "
                "little less on new data."
            )
        return (
            f"Synthetic data did not help: {result} with quick classifiers, but {confirmed}, "
            f"short of the {100 * confirmation['required_lift']:.1f} points needed. Train on "
            "the real images alone (recommended ratio 0)."
        )
    if decision["helped"]:
        return (
            f"Synthetic data helped: {result}. It was the best of "
            f"{decision['recipes_compared']} recipes on these held-out images, so expect "
            "a little less on new data."
        )
    return (
        f"Synthetic data did not help: the best recipe, {result}, does not beat "
        f"real images only by the {100 * decision['required_lift']:.1f} points "
        f"({decision['z']:.2f} standard errors) that the best of "
        f"{decision['recipes_compared']} recipes needs to be more than luck. Train on the "
        "real images alone (recommended ratio 0)."
    )


class ReportRun:
    """The state the stages of one report share: data, generator, evaluator, trained mixes."""

    def __init__(
        self,
        model_dir: Path,
        dataset_dir: Path,
        budget: ReportBudget,
        stages: Stages,
        device: str | None,
    ):
        self.model_dir, self.budget, self.stages, self.device = model_dir, budget, stages, device
        self.manifest = Manifest.load(model_dir)
        self.data = load_real(model_dir, dataset_dir)
        if self.data.classes != self.manifest.classes:
            raise ValueError(
                f"dataset classes {self.data.classes} differ from the model's "
                f"{self.manifest.classes}; pass the dataset the model trained on"
            )
        self.sampler = GeneratorSampler(model_dir)
        self.scorer: EvaluatorScorer
        self.pool: SyntheticPool
        self.trials: Trials

    def train_evaluator(self) -> dict:
        """Train the evaluator on the train split, export it, and score the held-out images."""
        self.stages.start("evaluator")
        data, budget = self.data, self.budget
        model = train_classifier(
            data.x_train,
            data.y_train,
            num_classes=len(data.classes),
            budget=budget.evaluator,
            seed=budget.seed,
            classic_augment=True,
            device=self.device,
        )
        export_evaluator_onnx(model, self.model_dir / EVALUATOR_FILE)
        self.scorer = EvaluatorScorer(self.model_dir)
        self.train_features = self.scorer.score(data.x_train)[1]  # manifold and metric floor
        manifold = ClassManifold.build(self.train_features, data.y_train, k=metrics.PRDC_K)
        manifold.save(self.model_dir)
        self.scorer.manifold = manifold
        probs, self.test_features = self.scorer.score(data.x_test)
        self.pool = SyntheticPool(self.sampler, self.scorer, data.train_counts, budget)
        self.trials = Trials(data, self.pool, budget, self.device, self.stages, self.test_features)
        self.evaluator_correct = probs.argmax(axis=1) == data.y_test
        accuracy = float(self.evaluator_correct.mean()) if data.heldout else None
        return {
            "file": EVALUATOR_FILE,
            "manifold_file": MANIFOLD_FILE,
            "manifold_k": manifold.k,
            "budget": asdict(budget.evaluator),
            "heldout_accuracy": accuracy,
        }

    def distribution(self) -> dict:
        """FID, KID, PRDC and inception accuracy of untruncated samples, overall and per class.

        Synthetic and real-train sets get the same size per class, since FID's bias
        depends on it: the real_train numbers are then the floor to read the others against.
        """
        self.stages.start("metrics")
        cap = self.budget.metric_samples_per_class
        syn_x, syn_y = self.pool.take(None, "none", 1.0)
        keep = first_per_class(syn_y, cap)
        (syn_probs, syn_f), syn_y = self.scorer.score(syn_x[keep]), syn_y[keep]
        train = np.sort(np.concatenate([order[:cap] for order in self.trials.real_order]))
        train_f, train_y = self.train_features[train], self.data.y_train[train]

        def block(c: int | None) -> dict:
            syn, real, ref = (
                y == c if c is not None else slice(None) for y in (syn_y, train_y, self.data.y_test)
            )
            reference = self.test_features[ref]
            synthetic = distribution_metrics(reference, syn_f[syn], self.budget)
            floor = distribution_metrics(reference, train_f[real], self.budget)
            return {
                "reference_images": len(reference),
                "synthetic_images": len(syn_f[syn]),
                "inception_accuracy": float(np.mean(syn_probs[syn].argmax(1) == syn_y[syn])),
                "synthetic": synthetic,
                "real_train": floor if self.data.heldout else None,
            }

        return {
            "reference": "heldout" if self.data.heldout else "train",
            "truncation": None,
            "overall": block(None),
            "per_class": [{"class": name, **block(c)} for c, name in enumerate(self.data.classes)],
        }

    def per_class(self, recipe: Recipe | None) -> list[dict]:
        """Images and held-out accuracy per class: evaluator, real only, the recipe."""
        y, k = self.data.y_test, len(self.data.classes)
        columns = {"train_images": self.data.train_counts.tolist()}
        if self.data.heldout and recipe is not None:
            mix = Mix(recipe.ratio, recipe.truncation, recipe.filter)
            columns["heldout_images"] = np.bincount(y, minlength=k).tolist()
            columns["evaluator_accuracy"] = per_class_accuracy(self.evaluator_correct[None], y, k)
            columns["baseline_accuracy"] = per_class_accuracy(self.trials.correct(BASELINE), y, k)
            columns["recipe_accuracy"] = per_class_accuracy(self.trials.correct(mix), y, k)
        return [
            {"class": name, **{key: values[c] for key, values in columns.items()}}
            for c, name in enumerate(self.data.classes)
        ]

    def pictures(
        self, t_star: Truncation, sweep: list[dict], recipes: list[dict], z: float
    ) -> dict:
        """Draw report/<name>.png; returns {name: path relative to the model directory}."""
        self.stages.start("pictures", len(plots.PICTURES))
        real_f = self.scorer.score(self.data.x_train)[1]
        real = (real_f, self.data.y_train)
        if self.data.heldout:
            real = (
                np.concatenate([real_f, self.test_features]),
                np.concatenate([self.data.y_train, self.data.y_test]),
            )
        syn_x, syn_y = self.pool.take(t_star, "none", 1.0)
        return plots.draw_all(
            self.model_dir,
            REPORT_PICTURES_DIR,
            classes=self.data.classes,
            images_at=self.picture_images,
            truncations=self.budget.truncations,
            t_star=t_star,
            sweep=sweep,
            recipes=recipes,
            z=z,
            real=real,
            synthetic=(self.scorer.score(syn_x)[1], syn_y),
            before_each=self.stages.tick,
        )

    def picture_images(self, truncation: Truncation) -> np.ndarray:
        """uint8 (classes, PICTURE_SAMPLES, H, W, C), from the same latents at every truncation."""
        k, image = len(self.data.classes), self.manifest.image
        labels = np.repeat(np.arange(k), PICTURE_SAMPLES)
        rng = np.random.default_rng(self.budget.seed)
        latents = sample_latents(rng, len(labels), self.manifest.z_dim, truncation=truncation)
        images = self.sampler.generate(labels, latents)
        return images.reshape(k, PICTURE_SAMPLES, image.height, image.width, image.channels)


def build_report(
    model_dir: Path,
    dataset_dir: Path,
    *,
    budget: ReportBudget = ReportBudget(),
    progress_fn: Callable[[str, float], None] | None = None,
    abort_fn: Callable[[], bool] | None = None,
    device: str | None = None,
) -> dict:
    """Measure a trained model's samples and find whether, and how, to add them to real data.

    Writes report.json, report/<picture>.png and evaluator.onnx into model_dir, and the
    findings (t*, the truncation sweep, the recommended recipe) into the manifest.

    Args:
        model_dir: written by `training.run`, with split.json (none: no held-out images).
        dataset_dir: the stored dataset the model was trained on.
        progress_fn: called with (stage, overall fraction in [0, 1]) as the report advances.
        abort_fn: returning True stops the report with `TrainingAborted` before the next
            classifier training or picture.

    Returns:
        The report, as written to report.json.
    """
    model_dir, dataset_dir = Path(model_dir), Path(dataset_dir)
    stages = Stages(progress_fn, abort_fn)
    stages.start("data")
    run = ReportRun(model_dir, dataset_dir, budget, stages, device)
    evaluator = run.train_evaluator()
    distribution = run.distribution()
    sweep, t_star = run.trials.truncation_sweep()
    recipes = run.trials.recipe_search(t_star)
    recipe, decision = recommend(recipes, budget.alpha, run.trials.confirm)
    cas, ratio_study = run.trials.cas(), run.trials.ratio_study(t_star)
    pictures = run.pictures(t_star, sweep, recipes, decision["z"])
    stages.start("write")
    report = _json_ready(
        {
            "format": REPORT_FORMAT,
            "model_id": run.manifest.model_id,
            "created_at": datetime.now(UTC).isoformat(),
            "heldout": run.data.heldout,
            "notes": notes(run.data, sweep, recipes, decision),
            "recipe": recipe.model_dump() if recipe else None,
            "synthetic_helped": decision["helped"],
            "decision": decision,
            "t_star": t_star,
            "truncation_sweep": sweep,
            "recipes": recipes,
            "downstream_lift": downstream_lift(sweep, t_star, budget.sweep_ratio),
            "cas": cas,
            "ratio_study": ratio_study,
            "metrics": distribution,
            "evaluator": evaluator,
            "per_class": run.per_class(recipe),
            "pictures": pictures,
            "budget": asdict(budget),
            "timings_s": {**stages.timings_s, "total": round(sum(stages.timings_s.values()), 2)},
        }
    )
    text = json.dumps(report, indent=2, allow_nan=False) + "\n"
    atomic_write_bytes(model_dir / REPORT_FILE, text.encode())
    run.manifest.model_copy(update={"evaluation": evaluation(report)}).save(model_dir)
    stages.finish()
    return report


def evaluation(report: dict) -> Evaluation:
    """The manifest's summary of a report."""
    sweep = [
        TruncationPoint(truncation=row["truncation"], accuracy=row["accuracy"])
        for row in report["truncation_sweep"]
    ]
    recipe = Recipe(**report["recipe"]) if report["recipe"] else None
    return Evaluation(
        t_star=report["t_star"],
        truncation_sweep=sweep,
        recipe=recipe,
        evaluator_file=EVALUATOR_FILE,
        manifold_file=MANIFOLD_FILE,
        report_file=REPORT_FILE,
    )


def downstream_lift(sweep: list[dict], t_star: Truncation, ratio: float) -> dict | None:
    """Real + synthetic at t* (the sweep's ratio) vs real only: the sweep's best row."""
    row = next((row for row in sweep if row["truncation"] == t_star), None)
    if row is None:
        return None
    keys = ("accuracy", "accuracy_std", "lift", "lift_se")
    return {"ratio": ratio, "truncation": t_star, **{key: row[key] for key in keys}}
