"""A private `ganaug serve` for benchmarks/low_data.py, and the GAN training it drives."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np


class Service:
    """A `ganaug serve` process of our own, embedded mode, in `data_dir` (kept after it stops,
    so its models serve a rerun)."""

    def __init__(self, data_dir: Path, port: int = 8765) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("GANAUG_")}
        env.update({"GANAUG_DATA_DIR": str(data_dir), "GANAUG_PORT": str(port)})
        self.log = (data_dir.parent / "serve.log").open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ganaug.cli", "serve"],
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            cwd=Path(__file__).resolve().parents[1],
        )
        self.client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=600)
        for _ in range(300):
            if self.proc.poll() is not None:
                break
            try:
                if self.client.get("/healthz").status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.5)
        self.stop()
        raise SystemExit(f"ganaug serve did not start; see {data_dir.parent / 'serve.log'}")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()

    def has_model(self, model_id: str) -> bool:
        """Whether the model exists here and finished training (a resumed run reuses it)."""
        response = self.client.get(f"/v1/models/{model_id}")
        return response.status_code == 200 and response.json()["status"] == "succeeded"

    def download(self, url: str, params: dict, path: Path) -> None:
        """GET url into path (written whole or not at all)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(path.suffix + ".part")
        with self.client.stream("GET", url, params=params) as response:
            response.raise_for_status()
            with partial.open("wb") as f:
                for chunk in response.iter_bytes():
                    f.write(chunk)
        partial.replace(path)


def npz_bytes(x: np.ndarray, y: np.ndarray, classes: list[str]) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, x=x, y=y, classes=np.asarray(classes))
    return buffer.getvalue()


def train_gan(
    service: Service, x: np.ndarray, y: np.ndarray, classes: list[str], config: dict
) -> dict:
    """Upload, train, wait for the model (and its quality report unless `report` is none)."""
    response = service.client.post(
        "/v1/datasets",
        files={"file": ("fmnist.npz", npz_bytes(x, y, classes))},
        data={"train": "true", "config": json.dumps(config)},
    )
    response.raise_for_status()
    model_id = response.json()["model"]["id"]
    start, last = time.monotonic(), 0.0
    while True:
        model = service.client.get(f"/v1/models/{model_id}").json()
        report = model["report"]["status"]
        if model["status"] in ("failed", "cancelled") or report == "failed":
            raise SystemExit(f"model {model_id} ended badly: {model}")
        if model["status"] == "succeeded" and report in ("succeeded", "none"):
            print(f"  GAN {model_id} + report: {time.monotonic() - start:.0f} s", flush=True)
            return model
        if time.monotonic() - last > 60:
            last = time.monotonic()
            print(
                f"  {model['status']} step {model['progress']['step']}, report {report} "
                f"{model['report'].get('stage')}",
                flush=True,
            )
        time.sleep(2)
