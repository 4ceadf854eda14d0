"""The quality report's pictures: PNG files drawn with matplotlib's Agg canvas (no pyplot)."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from models.artifact import atomic_write_bytes, read_stats
from models.images import image_grid
from training.report_results import Comparison, Mix, MixingSearch, RecipeRow, SweepRow

PAD = 2  # pixels between tiles of an image grid
DPI = 100
MAX_EMBEDDED_PER_CLASS = 100  # points per class and source in the embedding scatter
SWEEP_TILES = 16  # images per row of the truncation sweep picture
PICTURES = ("samples", "truncation_sweep", "losses", "lipschitz", "embedding", "recipes")


def _save(fig: Figure, path: Path) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight")
    atomic_write_bytes(path, buf.getvalue())


def save_image_rows(path: Path, rows: list[np.ndarray], row_labels: list[str], title: str) -> None:
    """One labelled row of tiles per entry of `rows` (each uint8 (n, H, W, C), equal n)."""
    ncols, height = len(rows[0]), rows[0].shape[1]
    grid = image_grid(np.concatenate(rows), ncols=ncols, pad=PAD)
    fig = Figure(figsize=(max(3.0, grid.shape[1] / 40 + 1.5), max(2.0, grid.shape[0] / 40 + 0.6)))
    ax = fig.subplots()
    if grid.shape[2] == 1:
        ax.imshow(grid[:, :, 0], cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    else:
        ax.imshow(grid, interpolation="nearest")
    ax.set_yticks([PAD + i * (height + PAD) + height / 2 for i in range(len(rows))])
    ax.set_yticklabels(row_labels)
    ax.set_xticks([])
    ax.set_title(title)
    _save(fig, path)


def _curves(stats: list[dict], match) -> dict[str, tuple[list[int], list[float]]]:
    """{name: (steps, values)} for the numbers in stats.jsonl lines whose key matches."""
    curves: dict[str, tuple[list[int], list[float]]] = {}
    for line in stats:
        for key, value in {**line, **line.get("losses", {})}.items():
            if match(key) and isinstance(value, int | float) and key not in ("step", "elapsed_s"):
                steps, values = curves.setdefault(key, ([], []))
                steps.append(line["step"])
                values.append(float(value))
    return curves


def _plot_curves(path: Path, curves: dict, title: str) -> None:
    """One small plot per curve: loss terms differ in scale by orders of magnitude."""
    ncols = min(3, len(curves))
    nrows = -(-len(curves) // ncols)
    fig = Figure(figsize=(3.2 * ncols, 2.4 * nrows + 0.5), layout="constrained")
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False).ravel())
    for ax, (name, (steps, values)) in zip(axes, sorted(curves.items()), strict=False):
        ax.plot(steps, values)
        ax.set_title(name, fontsize="medium")
        ax.set_xlabel("generator step", fontsize="small")
        ax.grid(alpha=0.3)
    for ax in axes[len(curves) :]:
        ax.axis("off")
    fig.suptitle(title)
    _save(fig, path)


def _message(path: Path, title: str, text: str) -> None:
    fig = Figure(figsize=(6, 2))
    ax = fig.subplots()
    ax.axis("off")
    ax.set_title(title)
    ax.text(0.5, 0.5, text, ha="center", va="center", wrap=True)
    _save(fig, path)


def save_losses(path: Path, stats: list[dict]) -> None:
    """Training losses from stats.jsonl, one curve per loss term."""
    curves = _curves(stats, lambda key: "lipschitz" not in key)
    if not curves:
        _message(path, "Training losses", "stats.jsonl holds no loss values")
        return
    _plot_curves(path, curves, "Training losses (means per logged interval)")


def save_lipschitz(path: Path, stats: list[dict]) -> None:
    """The critic's Lipschitz estimate over training, or a note that it was not logged."""
    curves = _curves(stats, lambda key: "lipschitz" in key)
    if not curves:
        hint = (
            "; grad_norm in losses.png is the critic's gradient norm"
            if any("grad_norm" in line.get("losses", {}) for line in stats)
            else ""
        )
        _message(path, "Critic Lipschitz estimate", f"not logged by this training run{hint}")
        return
    _plot_curves(path, curves, "Critic Lipschitz estimate")


def pca_2d(features: np.ndarray) -> np.ndarray:
    """Project (N, D) features on their two principal axes (SVD of the centred data)."""
    centred = features - features.mean(axis=0)
    _, _, axes = np.linalg.svd(centred, full_matrices=False)
    projected = centred @ axes[:2].T
    return np.pad(projected, ((0, 0), (0, 2 - projected.shape[1])))  # a 1-D set stays 2-D


def _thin(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Row indices keeping at most MAX_EMBEDDED_PER_CLASS rows of each class."""
    keep = [
        rng.permutation(np.flatnonzero(labels == c))[:MAX_EMBEDDED_PER_CLASS]
        for c in np.unique(labels)
    ]
    return np.sort(np.concatenate(keep))


def save_embedding(
    path: Path,
    real: tuple[np.ndarray, np.ndarray],
    synthetic: tuple[np.ndarray, np.ndarray],
    classes: list[str],
) -> None:
    """PCA of evaluator features: real images as dots, synthetic ones as crosses, by class.

    Args:
        real, synthetic: (features (N, D), labels (N,)).
    """
    rng = np.random.default_rng(0)
    (real_f, real_y), (syn_f, syn_y) = real, synthetic
    real_rows, syn_rows = _thin(real_y, rng), _thin(syn_y, rng)
    points = pca_2d(np.concatenate([real_f[real_rows], syn_f[syn_rows]]))
    real_xy, syn_xy = points[: len(real_rows)], points[len(real_rows) :]
    fig = Figure(figsize=(7, 6))
    ax = fig.subplots()
    colours = [f"C{i % 10}" for i in range(len(classes))]
    for c, name in enumerate(classes):
        at = real_y[real_rows] == c
        ax.scatter(*real_xy[at].T, s=12, color=colours[c], marker="o", label=name)
        ax.scatter(*syn_xy[syn_y[syn_rows] == c].T, s=16, color=colours[c], marker="x")
    ax.set_title("Evaluator features, PCA: real (dots) vs synthetic (crosses)")
    ax.legend(fontsize="small", markerscale=1.5, loc="best")
    _save(fig, path)


def save_recipes(
    path: Path, rows: list[RecipeRow], z: float, mixing: MixingSearch | None = None
) -> None:
    """Held-out lift of every synthetic recipe over real-only training, with its standard
    error, then of every mixing setting tried on the best one (the chosen one starred);
    green or red only where the lift is beyond z standard errors, else grey (noise)."""
    rows = rows[1:]  # row 0 is real-only training: the zero line
    if not rows:
        _message(path, "Recipe search", "no held-out set: no recipe was tried")
        return
    labels = [recipe_label(row.mix) + ("" if row.status == "ok" else " (skipped)") for row in rows]
    compared: list[Comparison | None] = [row.comparison for row in rows]  # None: skipped
    if mixing is not None:
        for setting in mixing.rows:
            star = " *" if setting is mixing.chosen else ""
            labels.append(f"mixed: {setting.setting}{star}")
            compared.append(setting.comparison)
    lifts = np.array([100 * c.lift if c is not None else 0.0 for c in compared])
    errors = np.array([100 * c.lift_se if c is not None else 0.0 for c in compared])
    colours = np.where(lifts > z * errors, "tab:green", "tab:grey")
    colours = np.where(lifts < -z * errors, "tab:red", colours)
    fig = Figure(figsize=(7, 0.35 * len(rows) + 1.4), layout="constrained")
    ax = fig.subplots()
    ax.barh(labels, lifts, xerr=errors, color=colours)
    ax.axvline(0, color="black", linewidth=0.8)
    ax.invert_yaxis()
    ax.set_xlabel(
        f"held-out accuracy vs real images only (points, ± 1 s.e.)\n"
        f"grey: within {z:.2f} s.e. of zero, which luck alone reaches"
    )
    title = "Adding synthetic images: what helped and what hurt"
    if mixing is not None:
        title += f"\n(mixed: settings tried on {recipe_label(mixing.mix)}; * chosen)"
    ax.set_title(title)
    _save(fig, path)


def recipe_label(mix: Mix) -> str:
    """'ratio 1, t = 0.75, confidence >= 0.9' for a recipe's mix."""
    draw = mix.draw
    kept = {"none": "unfiltered", "manifold": "in real manifold"}.get(
        draw.filter, f"confidence >= {draw.min_confidence:g}"
    )
    return f"ratio {mix.ratio:g}, {truncation_text(draw.truncation)}, {kept}"


def truncation_text(truncation: float | None) -> str:
    return "no truncation" if truncation is None else f"t = {truncation:g}"


def draw_all(
    model_dir: Path,
    folder: str,
    *,
    classes: list[str],
    images_at: Callable[[float | None], np.ndarray],
    truncations: tuple[float | None, ...],
    t_star: float | None,
    sweep: list[SweepRow],
    recipes: list[RecipeRow],
    mixing: MixingSearch | None,
    z: float,
    real: tuple[np.ndarray, np.ndarray],
    synthetic: tuple[np.ndarray, np.ndarray],
    before_each: Callable[[], None],
) -> dict[str, str]:
    """Write every picture of the report into model_dir/folder.

    Args:
        images_at: uint8 (classes, n, H, W, C) samples at a truncation, same latents for all.
        z: standard errors a lift must exceed to count (the recommendation's bar).
        real, synthetic: (evaluator features, labels) for the embedding.
        before_each: called before each picture (progress and abort checks).

    Returns:
        {picture name: path relative to model_dir}.
    """
    stats = read_stats(model_dir)
    accuracy = {row.truncation: row.comparison.accuracy for row in sweep}
    per_class = max(1, SWEEP_TILES // len(classes))

    def sweep_row(t: float | None) -> np.ndarray:
        images = images_at(t)[:, :per_class]
        return images.reshape(-1, *images.shape[2:])

    drawers = {
        "samples": lambda path: save_image_rows(
            path,
            list(images_at(t_star)),
            classes,
            f"Synthetic samples per class, truncation {truncation_text(t_star)}",
        ),
        "truncation_sweep": lambda path: save_image_rows(
            path,
            [sweep_row(t) for t in truncations],
            [
                truncation_text(t) + (f": {accuracy[t]:.1%}" if t in accuracy else "")
                for t in truncations
            ],
            "The same latents at each truncation (held-out accuracy with them)",
        ),
        "losses": lambda path: save_losses(path, stats),
        "lipschitz": lambda path: save_lipschitz(path, stats),
        "embedding": lambda path: save_embedding(path, real, synthetic, classes),
        "recipes": lambda path: save_recipes(path, recipes, z, mixing),
    }
    (model_dir / folder).mkdir(exist_ok=True)
    for name in PICTURES:
        before_each()
        drawers[name](model_dir / folder / f"{name}.png")
    return {name: f"{folder}/{name}.png" for name in PICTURES}
