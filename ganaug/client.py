"""A Python client for the ganaug REST API (v1), over httpx.

```python
from ganaug.client import Client

with Client("http://127.0.0.1:8000", api_key="gak_...") as api:  # or GANAUG_URL, GANAUG_API_KEY
    dataset = api.upload_dataset("fashion500.zip", train=True, config={"steps": 2000})
    model = api.wait(dataset["model"]["id"])                 # a progress bar with the ETA
    api.samples(model["id"], "grid.png", class_="sneaker", n=16, truncation=0.8)
    api.download_archive(model["id"], "augmented.zip", recipe="recommended")
```

Every method returns the API's JSON (dicts as documented at /docs) or, for files, a
`Download`. An answer of 4xx/5xx raises `ApiError` with the service's code and message.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import httpx

DEFAULT_URL = "http://127.0.0.1:8000"
URL_ENV = "GANAUG_URL"
KEY_ENV = "GANAUG_API_KEY"
FINISHED = frozenset({"succeeded", "failed", "cancelled"})
REPORT_FINISHED = frozenset({"none", "succeeded", "failed"})


class ApiError(Exception):
    """The service refused a request: `status`, its stable `code`, its `message`, and the
    error object's other fields in `details` (a quota's limit, say)."""

    def __init__(self, status: int, code: str, message: str, details: dict[str, Any]) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message, self.details = status, code, message, details

    @classmethod
    def from_response(cls, response: httpx.Response) -> ApiError:
        try:
            error = response.json()["error"]
            details = {k: v for k, v in error.items() if k not in ("code", "message")}
            return cls(response.status_code, error["code"], error["message"], details)
        except (ValueError, KeyError, TypeError):  # not the service's error shape (a proxy?)
            text = response.text.strip()[:300] or response.reason_phrase
            return cls(response.status_code, "http_error", text, {})


class JobFailed(Exception):
    """`Client.wait`: the model's training (or its report) ended without succeeding."""

    def __init__(self, model: dict[str, Any], message: str) -> None:
        super().__init__(message)
        self.model = model


@dataclass(frozen=True)
class Download:
    """A file written by the client, with the draw the service reports in its headers."""

    path: Path
    bytes: int
    seed: int | None = None
    truncation: str | None = None  # the t used ("none" without truncation); auto resolved


class Client:
    """The API at `url` (else $GANAUG_URL, else http://127.0.0.1:8000) as the caller whose
    API key is `api_key` (else $GANAUG_API_KEY; none: anonymous, where the service allows).
    `progress` shows rich progress bars (on stderr) while waiting and downloading."""

    def __init__(
        self,
        url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = 120.0,
        progress: bool = True,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = (url or os.environ.get(URL_ENV) or DEFAULT_URL).rstrip("/")
        key = api_key or os.environ.get(KEY_ENV)
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.progress = progress
        self.http = httpx.Client(
            base_url=self.url, headers=headers, timeout=timeout, transport=transport
        )

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

    # --- plumbing ---------------------------------------------------------------------------

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        response = self.http.request(method, path, **kwargs)
        if response.is_error:
            raise ApiError.from_response(response)
        return response

    def _json(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        return self._request(method, path, **kwargs).json()

    def _download(
        self, path: str, out: str | Path, params: dict[str, Any] | None = None, label: str = ""
    ) -> Download:
        """Stream a GET to `out` (a progress bar sized by Content-Length when it is sent)."""
        out = Path(out)
        with self.http.stream("GET", path, params=_drop_none(params or {})) as response:
            if response.is_error:
                response.read()
                raise ApiError.from_response(response)
            length = response.headers.get("content-length")
            written = 0
            with out.open("wb") as file, progress_bar(self.progress, "bytes") as bar:
                task = bar.add_task(label or out.name, total=int(length) if length else None)
                for chunk in response.iter_bytes():
                    file.write(chunk)
                    written += len(chunk)
                    bar.update(task, completed=written)
            seed = response.headers.get("x-seed")
            return Download(
                out, written, int(seed) if seed else None, response.headers.get("x-truncation")
            )

    # --- service ----------------------------------------------------------------------------

    def ready(self) -> dict[str, Any]:
        """/readyz: database, broker and worker status, and how callers are identified."""
        response = self.http.get("/readyz")
        return response.json()

    # --- datasets ---------------------------------------------------------------------------

    def upload_dataset(
        self,
        file: str | Path,
        *,
        name: str | None = None,
        train: bool = False,
        config: dict[str, Any] | None = None,
        image_size: int | None = None,
        channels: int | None = None,
    ) -> dict[str, Any]:
        """Upload a zip/tar(.gz) of class folders or an .npz; `train` queues a model with the
        training options in `config` (returned under `model`)."""
        path = Path(file)
        form = _drop_none(
            {
                "name": name,
                "train": "true" if train else None,
                "config": json.dumps(config) if config else None,
                "image_size": image_size,
                "channels": channels,
            }
        )
        with path.open("rb") as handle:
            return self._json(
                "POST", "/v1/datasets", data=form, files={"file": (path.name, handle)}
            )

    def list_datasets(self, *, limit: int = 50, offset: int = 0) -> dict[str, Any]:
        return self._json("GET", "/v1/datasets", params={"limit": limit, "offset": offset})

    def get_dataset(self, dataset_id: str) -> dict[str, Any]:
        return self._json("GET", f"/v1/datasets/{dataset_id}")

    def rename_classes(self, dataset_id: str, names: dict[str, str]) -> dict[str, Any]:
        return self._json("PATCH", f"/v1/datasets/{dataset_id}", json={"classes": names})

    def delete_dataset(self, dataset_id: str) -> None:
        self._request("DELETE", f"/v1/datasets/{dataset_id}")

    # --- models -----------------------------------------------------------------------------

    def train(self, dataset_id: str, **options: Any) -> dict[str, Any]:
        """Queue a model on a dataset; `options` are training options (method, steps, ...)."""
        return self._json("POST", "/v1/models", json={"dataset_id": dataset_id, **options})

    def list_models(
        self,
        *,
        dataset_id: str | None = None,
        status: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> dict[str, Any]:
        params = {"dataset_id": dataset_id, "status": status, "limit": limit, "offset": offset}
        return self._json("GET", "/v1/models", params=_drop_none(params))

    def get_model(self, model_id: str) -> dict[str, Any]:
        return self._json("GET", f"/v1/models/{model_id}")

    def cancel(self, model_id: str) -> dict[str, Any]:
        return self._json("POST", f"/v1/models/{model_id}/cancel")

    def delete_model(self, model_id: str) -> None:
        self._request("DELETE", f"/v1/models/{model_id}")

    def wait(
        self,
        model_id: str,
        *,
        report: bool = True,
        poll_s: float = 2.0,
        timeout_s: float | None = None,
    ) -> dict[str, Any]:
        """Poll the model until training has ended and, with `report`, its quality report
        too; show progress bars with the service's ETA. Returns the model.

        Raises:
            JobFailed: training failed or was cancelled, or the report failed.
            TimeoutError: `timeout_s` passed first.
        """
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        with progress_bar(self.progress, "steps") as bar:
            training = bar.add_task("training", total=None, eta="")
            reporting = None
            while True:
                model = self.get_model(model_id)
                progress = model["progress"]
                bar.update(
                    training,
                    total=progress["total_steps"],
                    completed=progress["step"],
                    eta=eta_text(model.get("eta_seconds")),
                )
                status, report_status = model["status"], model["report"]["status"]
                if status in ("failed", "cancelled"):
                    raise JobFailed(model, f"training {status}: {model.get('error') or ''}")
                if status == "succeeded" and report and reporting is None:
                    if report_status != "none":
                        reporting = bar.add_task("report", total=1.0, eta="")
                if reporting is not None:
                    bar.update(
                        reporting,
                        completed=model["report"]["fraction"],
                        description=f"report: {model['report']['stage'] or report_status}",
                        eta=eta_text(model.get("eta_seconds")),
                    )
                if status == "succeeded" and (not report or report_status in REPORT_FINISHED):
                    if report and report_status == "failed":
                        raise JobFailed(model, f"report failed: {model['report']['error']}")
                    if reporting is not None:
                        bar.update(reporting, completed=1.0)
                    return model
                if deadline is not None and time.monotonic() > deadline:
                    raise TimeoutError(f"model {model_id} is still {status} after {timeout_s} s")
                time.sleep(poll_s)

    # --- results ----------------------------------------------------------------------------

    def samples(
        self,
        model_id: str,
        out: str | Path,
        *,
        class_: str | int | None = None,
        n: int = 16,
        truncation: float | str | None = None,
        truncation_mode: str | None = None,
        filter: str | None = None,
        min_confidence: float | None = None,
        seed: int | None = None,
        format: str = "grid",
        scale: int | None = None,
        labels: bool = False,
    ) -> Download:
        """Synthetic images into `out`: a grid PNG (default; `scale` enlarges its tiles,
        `labels` names each class's row), one png, a zip or an npz."""
        params = {
            "class": class_,
            "n": n,
            "truncation": truncation,
            "truncation_mode": truncation_mode,
            "filter": filter,
            "min_confidence": min_confidence,
            "seed": seed,
            "format": format,
            "scale": scale,
            "labels": "true" if labels else None,
        }
        return self._download(f"/v1/models/{model_id}/samples", out, params, "samples")

    def download_archive(
        self,
        model_id: str,
        out: str | Path,
        *,
        per_class: int | str | None = None,
        total: int | None = None,
        truncation: float | str | None = None,
        filter: str | None = None,
        recipe: str | None = None,
        seed: int | None = None,
        include_real: bool = True,
    ) -> Download:
        """An augmented dataset (zip, ImageFolder layout with labels.csv) into `out`."""
        params = {
            "per_class": per_class,
            "total": total,
            "truncation": truncation,
            "filter": filter,
            "recipe": recipe,
            "seed": seed,
            "include_real": None if include_real else "false",
        }
        return self._download(f"/v1/models/{model_id}/archive", out, params, "archive")

    def download_generator(self, model_id: str, out: str | Path) -> Download:
        """The generator as ONNX (its metadata names the classes, z_dim and image shape)."""
        return self._download(f"/v1/models/{model_id}/generator.onnx", out, label="generator")

    def classify(
        self, model_id: str, file: str | Path, *, head: str | None = None
    ) -> dict[str, Any]:
        """Class probabilities of the images in `file` (an image, a zip/tar, or an .npz)."""
        path = Path(file)
        with path.open("rb") as handle:
            return self._json(
                "POST",
                f"/v1/models/{model_id}/classify",
                data=_drop_none({"head": head}),
                files={"file": (path.name, handle)},
            )

    def label_dataset(self, model_id: str, *, name: str | None = None) -> dict[str, Any]:
        body = {"name": name} if name else None
        return self._json("POST", f"/v1/models/{model_id}/label-dataset", json=body)

    # --- reports ----------------------------------------------------------------------------

    def report(self, model_id: str) -> dict[str, Any]:
        """The quality report (ApiError 409 `report_not_ready` until it exists)."""
        return self._json("GET", f"/v1/models/{model_id}/report")

    def report_picture(self, model_id: str, name: str, out: str | Path) -> Download:
        return self._download(f"/v1/models/{model_id}/report/{name}.png", out, label=name)

    def request_report(self, model_id: str) -> dict[str, Any]:
        """Compute the report again (or for a model trained with report "none")."""
        return self._json("POST", f"/v1/models/{model_id}/report")


def _drop_none(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


def eta_text(seconds: float | None) -> str:
    """An ETA in seconds as `ETA 3m 05s` ("" when not known)."""
    if seconds is None:
        return ""
    minutes, seconds = divmod(int(round(seconds)), 60)
    return f"ETA {minutes}m {seconds:02d}s" if minutes else f"ETA {seconds}s"


@contextmanager
def progress_bar(enabled: bool, unit: Literal["bytes", "steps"]) -> Iterator[Any]:
    """A rich progress display on stderr (bytes: size and speed; steps: percent and the
    task's `eta` field), or a silent stand-in."""
    if not enabled:
        yield _Silent()
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TaskProgressColumn,
        TextColumn,
        TransferSpeedColumn,
    )

    columns = (
        [TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn()]
        if unit == "bytes"
        else [
            TextColumn("{task.description}"),
            BarColumn(),
            TaskProgressColumn(),
            TextColumn("{task.fields[eta]}"),
        ]
    )
    with Progress(*columns, console=Console(stderr=True), transient=False) as progress:
        yield progress


class _Silent:
    def add_task(self, *_args: Any, **_kwargs: Any) -> int:
        return 0

    def update(self, *_args: Any, **_kwargs: Any) -> None:
        return None
