"""Low-data benchmark: does ganaug's synthetic data add to classic augmentation?

Fashion-MNIST, class-balanced training subsets, the official 10,000-image test set, the
small CNN of shared/RESEARCH.md. Per size and seed: the classifier on real only (plain),
on real + classic augmentation (±2 px shifts), and on real + classic + the synthetic images
of the service's own archive with the recommended recipe. The GAN, its quality report and
the archive come from a real `ganaug serve` (embedded mode) driven over HTTP.

    .venv/bin/python benchmarks/low_data.py [--sizes 500 2500] [--seeds 0 1 2]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.fashion_mnist import CLASSES, balanced_subset, load  # noqa: E402
from training.classifier import ClassifierBudget, accuracy, train_classifier  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "low_data.md"
PAPER = {  # the Wasserstein AC-GAN-GP + truncation low-data paper, Fashion-MNIST
    500: "CNN 77.5 %, + WAC-GAN-GPT 79.8 %",
}
RESEARCH = {500: "plain 78.9 ± 0.6 %, classic 81.2 ± 0.5 % (shared/RESEARCH.md)"}


class Service:
    """A `ganaug serve` process of our own, embedded mode, in a temporary data directory."""

    def __init__(self, data_dir: Path, port: int = 8765) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("GANAUG_")}
        env.update({"GANAUG_DATA_DIR": str(data_dir), "GANAUG_PORT": str(port)})
        self.log = (data_dir.parent / "serve.log").open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ganaug.cli", "serve"],
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            cwd=Path(__file__).resolve().parents[1],
        )
        self.client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=600)
        for _ in range(300):
            try:
                if self.client.get("/healthz").status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.5)
        raise SystemExit("ganaug serve did not start; see serve.log")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=60)


def npz_bytes(x: np.ndarray, y: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, x=x, y=y, classes=np.asarray(CLASSES))
    return buffer.getvalue()


def train_gan(service: Service, x: np.ndarray, y: np.ndarray, seed: int, config: dict) -> dict:
    """Upload, train, wait for the quality report; return the final model."""
    response = service.client.post(
        "/v1/datasets",
        files={"file": ("fmnist.npz", npz_bytes(x, y))},
        data={"train": "true", "config": json.dumps({"seed": seed, **config})},
    )
    response.raise_for_status()
    model_id = response.json()["model"]["id"]
    start, last = time.monotonic(), 0.0
    while True:
        model = service.client.get(f"/v1/models/{model_id}").json()
        if model["status"] in ("failed", "cancelled") or model["report"]["status"] == "failed":
            raise SystemExit(f"model {model_id} ended badly: {model}")
        if model["report"]["status"] == "succeeded":
            print(f"  GAN + report: {time.monotonic() - start:.0f} s", flush=True)
            return model
        if time.monotonic() - last > 60:
            last = time.monotonic()
            print(
                f"  {model['status']} step {model['progress']['step']}, report "
                f"{model['report']['status']} {model['report'].get('stage')}",
                flush=True,
            )
        time.sleep(2)


def archive_synthetic(
    service: Service, model_id: str, params: dict
) -> tuple[np.ndarray, np.ndarray, dict]:
    """The synthetic part of the model's archive as arrays, and the recipe it used (if any)."""
    response = service.client.get(
        f"/v1/models/{model_id}/archive", params={"include_real": "false", **params}
    )
    response.raise_for_status()
    images, labels = [], []
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        manifest = json.loads(archive.read("manifest.json"))
        folder_index = {c["folder"]: c["index"] for c in manifest["classes"]}
        for name in archive.namelist():
            if "/synthetic_" in name:
                pixels = np.asarray(Image.open(io.BytesIO(archive.read(name))))
                images.append(pixels[:, :, None] if pixels.ndim == 2 else pixels)
                labels.append(folder_index[name.split("/")[0]])
    x = np.stack(images) if images else np.empty((0, 28, 28, 1), np.uint8)
    return x, np.asarray(labels, dtype=np.int64), manifest.get("recipe")


def fixed_params(recipe: str, per_class: int, seed: int) -> dict:
    """Archive parameters of a fixed recipe `RATIO[:TRUNCATION]` (synthetic per real image)."""
    ratio, _, truncation = recipe.partition(":")
    params = {"per_class": round(float(ratio) * per_class), "seed": seed}
    return params | ({"truncation": truncation} if truncation not in ("", "none") else {})


def mean_std(values: list[float]) -> str:
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{100 * statistics.mean(values):.1f} ± {100 * spread:.1f}"


def run_size(service: Service, size: int, args: argparse.Namespace, test: tuple) -> dict:
    x_all, y_all = load("train")
    budget = ClassifierBudget(steps=args.classifier_steps)
    per_class = size // len(CLASSES)
    scores: dict[str, list[float]] = {"plain": [], "classic": [], "synthetic": [], "fixed": []}
    recipes, gan_times, mixes = [], [], {}
    for seed in args.seeds:
        x, y = balanced_subset(x_all, y_all, per_class, seed)
        if not mixes or args.gan_per_seed:
            print(f"[{size}] seed {seed}: training the GAN through the service", flush=True)
            start = time.monotonic()
            model = train_gan(service, x, y, seed, json.loads(args.gan_config))
            gan_times.append(time.monotonic() - start)
            recommended = archive_synthetic(
                service, model["id"], {"recipe": "recommended", "seed": seed}
            )
            recipes.append(recommended[2])
            mixes = {"synthetic": recommended[:2]}
            if args.fixed_recipe:
                params = fixed_params(args.fixed_recipe, per_class, seed)
                mixes["fixed"] = archive_synthetic(service, model["id"], params)[:2]
            print(f"  recommended {recommended[2]}, {len(recommended[1])} images", flush=True)
        for name, kwargs in (
            ("plain", {"classic_augment": False}),
            ("classic", {"classic_augment": True}),
            *((mix, {"classic_augment": True, "synthetic": rows}) for mix, rows in mixes.items()),
        ):
            if "synthetic" in kwargs and not len(kwargs["synthetic"][1]):
                # No synthetic rows: the same rows, seed and budget as "classic" give the
                # same classifier bit for bit on CPU, so its score is reused, not retrained.
                scores[name].append(scores["classic"][-1])
            else:
                model = train_classifier(
                    x, y, num_classes=len(CLASSES), budget=budget, seed=seed, **kwargs
                )
                scores[name].append(accuracy(model, *test))
            print(f"[{size}] seed {seed} {name}: {100 * scores[name][-1]:.1f} %", flush=True)
    return {"scores": scores, "recipes": recipes, "gan_s": gan_times}


def write_results(results: dict[int, dict], args: argparse.Namespace) -> None:
    path = args.results
    lines = [
        "# Low-data benchmark (Fashion-MNIST, official 10,000-image test set)",
        "",
        f"Classifier: the small CNN of shared/RESEARCH.md, {args.classifier_steps} steps, "
        f"batch 64, Adam 1e-3; seeds {args.seeds}; GAN config {args.gan_config}; "
        f"{'one GAN per seed' if args.gan_per_seed else 'one GAN per size (first seed subset)'}.",
        "Written by `benchmarks/low_data.py`; all numbers below come from one run.",
        "",
        "| train images | plain | + classic | + classic + synthetic (recommended) "
        f"| lift over classic | recipe(s) | + classic + synthetic (fixed {args.fixed_recipe}) "
        "| lift over classic | GAN+report s | published / earlier |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for size, result in results.items():
        s = result["scores"]
        lift = 100 * (statistics.mean(s["synthetic"]) - statistics.mean(s["classic"]))
        fixed, fixed_lift = "not run", "-"
        if s["fixed"]:
            fixed = mean_std(s["fixed"])
            fixed_lift = (
                f"{100 * (statistics.mean(s['fixed']) - statistics.mean(s['classic'])):+.1f} pts"
            )
        recipes = "; ".join(
            f"ratio {r['ratio']}, t {r['truncation']}, {r['filter']}, "
            f"held-out lift {100 * r['lift']:+.1f}"
            for r in result["recipes"]
        )
        gan = ", ".join(f"{t:.0f}" for t in result["gan_s"])
        notes = "; ".join(filter(None, [PAPER.get(size), RESEARCH.get(size)]))
        lines.append(
            f"| {size} | {mean_std(s['plain'])} | {mean_std(s['classic'])} | "
            f"{mean_std(s['synthetic'])} | {lift:+.1f} pts | {recipes} | {fixed} | {fixed_lift} | "
            f"{gan} | {notes} |"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[500, 2500])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--classifier-steps", type=int, default=3000)
    parser.add_argument(
        "--gan-config", default='{"report": "standard"}', help="JSON training options"
    )
    parser.add_argument("--gan-per-seed", action="store_true", help="a GAN per seed, not per size")
    parser.add_argument(
        "--fixed-recipe",
        help="also score a fixed archive recipe RATIO[:TRUNCATION], e.g. 3 or 2:1.5 (synthetic "
        "images per real one, clamp truncation), whatever the report recommends",
    )
    parser.add_argument("--port", type=int, default=8765, help="port of the private ganaug serve")
    parser.add_argument("--results", type=Path, default=RESULTS, help="markdown table to write")
    args = parser.parse_args()
    # SIGTERM unwinds like Ctrl-C, so the `finally` below stops our ganaug serve.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    test = load("t10k")
    with tempfile.TemporaryDirectory(prefix="ganaug-bench-") as tmp:
        (Path(tmp) / "data").mkdir()
        service = Service(Path(tmp) / "data", port=args.port)
        results: dict[int, dict] = {}
        try:
            for size in args.sizes:
                results[size] = run_size(service, size, args, test)
                write_results(results, args)  # after each size: a cut-short run keeps its rows
        finally:
            service.stop()


if __name__ == "__main__":
    main()
