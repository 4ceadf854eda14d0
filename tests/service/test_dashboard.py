"""The web dashboard in a real browser: headless Chromium (the system's, driven by Playwright)
against real `ganaug serve` processes, clicking what a user clicks and checking what they see.

Skips only where no Chromium binary exists, naming the install command; `.ci/run` installs it.
Screenshots go to $GANAUG_TEST_ARTIFACTS/dashboard (default: pytest's temporary directory).
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from playwright import sync_api as pw

from core.settings import Settings
from service.app import create_app
from tests.conftest import TINY_TRAINING, Api, service_env
from tests.factories import SHAPES, shapes_zip_bytes
from tests.service.served import install_trained_model
from tests.service.tenancy import create_keys
from tests.tiny_model import PER_CLASS, TINY_MODEL_CONFIG

INSTALL = "apt-get install -y chromium"
TIMEOUT_MS = 20_000


def chromium_binary() -> str | None:
    """The system Chromium: $GANAUG_CHROMIUM, Debian's binary, else one on PATH."""
    candidates = [os.environ.get("GANAUG_CHROMIUM"), "/usr/lib/chromium/chromium"]
    candidates += [shutil.which(name) for name in ("chromium", "chromium-browser")]
    return next((c for c in candidates if c and os.access(c, os.X_OK)), None)


@pytest.fixture(scope="module")
def browser() -> Iterator:
    binary = chromium_binary()
    if binary is None:
        pytest.skip(f"no Chromium binary for the browser tests: {INSTALL} (or set GANAUG_CHROMIUM)")
    with pw.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=binary, headless=True)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = os.environ.get("GANAUG_TEST_ARTIFACTS")
    path = Path(root) / "dashboard" if root else tmp_path_factory.mktemp("dashboard-artifacts")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture
def page(browser, artifacts: Path, request: pytest.FixtureRequest) -> Iterator:
    """A fresh browser context (empty localStorage); confirm() dialogs are accepted, requests
    to anywhere but the service are recorded, and a screenshot is kept at the end."""
    context = browser.new_context(accept_downloads=True, viewport={"width": 1280, "height": 900})
    context.set_default_timeout(TIMEOUT_MS)
    tab = context.new_page()
    tab.foreign_requests = []
    tab.console_errors = []  # script errors and refusals by the Content-Security-Policy
    tab.on("console", lambda m: m.type == "error" and tab.console_errors.append(m.text))
    tab.on("pageerror", lambda error: tab.console_errors.append(str(error)))
    tab.on("requestfailed", lambda r: tab.console_errors.append(f"{r.url}: {r.failure}"))
    tab.on(
        "response", lambda r: r.status >= 400 and tab.console_errors.append(f"{r.url}: {r.status}")
    )
    tab.on("dialog", lambda dialog: dialog.accept())
    tab.on(
        "request",
        lambda r: (
            r.url.startswith(("http://127.0.0.1", "blob:", "data:"))
            or tab.foreign_requests.append(r.url)
        ),
    )
    yield tab
    tab.screenshot(path=str(artifacts / f"{request.node.name}.png"), full_page=True)
    context.close()


def start_api(data_dir: Path, log: Path, processes: list, extra: list[str], **env: str) -> Api:
    api = Api(service_env(data_dir, **env), log, extra)
    processes.append(api)
    return api.start()


@pytest.fixture(scope="module")
def served(tiny_model: SimpleNamespace, tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    """A `ganaug serve` with its embedded worker, on a private SQLite database, holding the
    tiny trained model (with its report) on a dataset named shapes."""
    root = tmp_path_factory.mktemp("dashboard")
    settings = Settings(data_dir=root / "data")
    buffer = io.BytesIO()
    np.savez(buffer, x=tiny_model.x, y=tiny_model.y, classes=np.asarray(SHAPES))
    with TestClient(create_app(settings), base_url="http://localhost") as client:
        upload = client.post(
            "/v1/datasets",
            files={"file": ("shapes.npz", buffer.getvalue())},
            data={"name": "shapes", "train": "true", "config": json.dumps(TINY_MODEL_CONFIG)},
        )
        assert upload.status_code == 201, upload.text
    body = upload.json()
    install_trained_model(settings, body["model"]["id"], tiny_model.model_dir, report=True)
    processes: list[Api] = []
    try:
        api = start_api(settings.data_dir, root / "serve.log", processes, [])
        yield SimpleNamespace(
            api=api, url=api.base_url, model_id=body["model"]["id"], dataset_id=body["id"]
        )
    finally:
        for process in processes:
            process.stop()


def wait_image(page, selector: str) -> dict:
    """Wait until the <img> has loaded a picture; its natural size."""
    page.wait_for_function(
        "s => { const i = document.querySelector(s); return i && i.complete && i.naturalWidth > 0"
        " && !i.dataset.loading; }",
        arg=selector,
    )
    return page.eval_on_selector(selector, "i => ({w: i.naturalWidth, h: i.naturalHeight})")


def shown_pixels(page, selector: str) -> np.ndarray:
    """The RGBA pixels an <img> shows, as the page draws them, (H, W, 4) uint8."""
    shown = page.eval_on_selector(
        selector,
        """i => { const c = document.createElement("canvas");
            c.width = i.naturalWidth; c.height = i.naturalHeight;
            const g = c.getContext("2d"); g.drawImage(i, 0, 0);
            const d = g.getImageData(0, 0, c.width, c.height).data;
            let s = ""; for (const x of d) s += String.fromCharCode(x);
            return {w: c.width, h: c.height, b64: btoa(s)}; }""",
    )
    pixels = np.frombuffer(base64.b64decode(shown["b64"]), dtype=np.uint8)
    return pixels.reshape(shown["h"], shown["w"], 4)


def png_pixels(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGBA"))


def test_home_lists_datasets_with_examples_and_models_with_progress(served, page):
    page.goto(f"{served.url}/")
    assert page.url == f"{served.url}/ui/", "/ is the dashboard"
    row = page.locator(f"#datasets tr[data-dataset-id='{served.dataset_id}']")
    pw.expect(row.locator("td").first).to_have_text("shapes")
    counts = " · ".join(f"{name} {PER_CLASS}" for name in SHAPES)
    pw.expect(row.locator("td.classes")).to_have_text(counts)
    thumb = wait_image(page, f"#datasets tr[data-dataset-id='{served.dataset_id}'] img.thumb")
    assert thumb == {"w": 4 * 18 + 2, "h": len(SHAPES) * 18 + 2}, "4 examples per class, a row each"
    model = page.locator(f"#models tr[data-model-id='{served.model_id}']")
    pw.expect(model.locator(".badge")).to_have_text("succeeded")
    steps = TINY_MODEL_CONFIG["steps"]
    pw.expect(model.locator("td").nth(4)).to_contain_text(f"{steps} / {steps}")
    pw.expect(model.locator("td").nth(2)).to_have_text(TINY_MODEL_CONFIG["method"])
    pw.expect(model.locator("button.cancel")).to_have_count(0)
    pw.expect(model.locator("td").nth(6)).to_have_text("succeeded")
    pw.expect(page.locator("#auth-state")).to_have_text("anonymous (tenant default)")
    assert page.foreign_requests == [], "the dashboard loads nothing from other sites"
    assert page.console_errors == []


def test_model_page_grid_follows_the_truncation_slider_and_seed(served, page):
    page.goto(f"{served.url}/ui/models/{served.model_id}")
    page.fill("#samples-seed", "7")
    pw.expect(page.locator("#samples-caption")).to_have_text("seed 7, truncation 1.0")
    size = wait_image(page, "#samples-img")
    assert size == {"w": 8 * 18 + 2, "h": len(SHAPES) * 18 + 2}, "8 per class, a row per class"
    pw.expect(page.locator("#samples-labels div")).to_have_text(list(SHAPES))
    at_one = shown_pixels(page, "#samples-img")

    slider = page.locator("#truncation")
    slider.focus()
    for _ in range(10):  # 1.0 -> 0.5 in steps of 0.05, as a keyboard user moves it
        page.keyboard.press("ArrowLeft")
    pw.expect(page.locator("#truncation-value")).to_have_text("0.50")
    pw.expect(page.locator("#samples-caption")).to_have_text("seed 7, truncation 0.5")
    wait_image(page, "#samples-img")
    at_half = shown_pixels(page, "#samples-img")
    assert not np.array_equal(at_half, at_one), "moving the slider changes the grid"
    api = httpx.get(
        f"{served.url}/v1/models/{served.model_id}/samples",
        params={"n": 8, "seed": 7, "truncation": 0.5},
    )
    assert api.status_code == 200, api.text
    assert np.array_equal(png_pixels(api.content), at_half), "the grid is the API's, as asked"

    page.select_option("#truncation-mode", "auto")
    pw.expect(page.locator("#samples-caption")).to_have_text(
        re.compile(r"seed 7, truncation (0\.\d+|1\.\d+|none)")
    )
    page.select_option("#samples-class", "square")
    pw.expect(page.locator("#samples-labels div")).to_have_text(["square"])
    assert wait_image(page, "#samples-img")["h"] == 18 + 2
    assert page.foreign_requests == [] and page.console_errors == []


def test_model_page_shows_losses_report_and_download_links(served, page, tiny_model):
    page.goto(f"{served.url}/ui/models/{served.model_id}")
    mid = served.model_id
    pw.expect(page.locator("#download-recommended")).to_have_attribute(
        "href", f"/v1/models/{mid}/archive?recipe=recommended"
    )
    pw.expect(page.locator("#download-onnx")).to_have_attribute(
        "href", f"/v1/models/{mid}/generator.onnx"
    )
    with page.expect_download() as download:
        page.click("#download-onnx")
    onnx = Path(download.value.path()).read_bytes()
    assert onnx == (tiny_model.model_dir / "generator.onnx").read_bytes()
    assert download.value.suggested_filename == f"ganaug-{mid}.onnx"

    pw.expect(page.locator("#model-status")).to_have_text("succeeded")
    pw.expect(page.locator("#model-cancel")).to_be_hidden()
    pw.expect(page.locator("#model-delete")).to_be_visible()
    curves = page.locator("#loss-chart polyline")
    pw.expect(curves.first).to_be_attached()
    stats = [json.loads(line) for line in (tiny_model.model_dir / "stats.jsonl").open()]
    assert sorted(curves.evaluate_all("ps => ps.map(p => p.dataset.loss)")) == sorted(
        {name for line in stats for name in line["losses"]}
    )

    pw.expect(page.locator("#report-verdict")).to_contain_text("Verdict:")
    notes = tiny_model.report["notes"]
    pw.expect(page.locator("#report-notes li")).to_have_count(len(notes))
    pictures = tiny_model.report["pictures"]
    pw.expect(page.locator("#report-pictures img")).to_have_count(len(pictures))
    for name in pictures:
        assert wait_image(page, f"#report-pictures img[data-picture='{name}']")["w"] > 0
    assert page.console_errors == []


def test_dataset_page_shows_class_counts_and_example_rows(served, page):
    page.goto(f"{served.url}/ui/datasets/{served.dataset_id}")
    pw.expect(page.locator("#dataset-name")).to_have_text("shapes")
    pw.expect(page.locator("#classes tbody tr td:nth-child(2)")).to_have_text(list(SHAPES))
    pw.expect(page.locator("#classes tbody tr td:nth-child(3)")).to_have_text(
        [str(PER_CLASS)] * len(SHAPES)
    )
    assert wait_image(page, "#examples") == {"w": 8 * 18 + 2, "h": len(SHAPES) * 18 + 2}
    pw.expect(page.locator("#examples-labels div")).to_have_text(list(SHAPES))
    pw.expect(page.locator(f"#models tr[data-model-id='{served.model_id}']")).to_be_visible()

    options = "#train-form"  # train another model here, then cancel it from this page
    page.fill(f"{options} [data-option=steps]", "100000")
    page.fill(f"{options} [data-option=batch_size]", "16")
    page.fill(f"{options} [data-option-json]", json.dumps({"g_channels": 16, "d_channels": 16}))
    page.click("#train-submit")
    pw.expect(page.locator("#notice")).to_contain_text(re.compile("Model .* queued"))
    queued = page.locator("#models tbody tr").filter(has_not=page.locator(".badge.succeeded"))
    pw.expect(queued).to_have_count(1)
    model_id = queued.get_attribute("data-model-id")
    trained = httpx.get(f"{served.url}/v1/models/{model_id}").json()
    assert trained["dataset_id"] == served.dataset_id and trained["method"] == "cgan"
    assert trained["config"]["steps"] == 100_000 and trained["config"]["g_channels"] == 16
    queued.locator("button.cancel").click()
    pw.expect(queued.locator(".badge")).to_have_text("cancelled", timeout=60_000)
    assert page.console_errors == []


def drop_file(page, selector: str, name: str, data: bytes) -> None:
    """Drop a file on an element as a user dragging it from their desktop does."""
    transfer = page.evaluate_handle(
        """([name, b64]) => { const t = new DataTransfer();
            const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
            t.items.add(new File([bytes], name, {type: "application/zip"})); return t; }""",
        [name, base64.b64encode(data).decode()],
    )
    page.dispatch_event(selector, "drop", {"dataTransfer": transfer})


def training_options(page, **config) -> None:
    page.select_option("#upload-form [data-option=method]", config.pop("method", "cgan"))
    page.fill("#upload-form [data-option=steps]", str(config.pop("steps")))
    page.fill("#upload-form [data-option=batch_size]", str(config.pop("batch_size")))
    page.select_option("#upload-form [data-option=report]", config.pop("report"))
    page.fill("#upload-form [data-option-json]", json.dumps(config))


def test_drop_a_dataset_and_watch_its_model_train(served, page):
    page.goto(f"{served.url}/ui/")
    drop_file(page, "#drop-zone", "dropped.zip", shapes_zip_bytes(per_class=12, size=16))
    pw.expect(page.locator("#upload-chosen")).to_contain_text("dropped.zip")
    page.fill("#upload-name", "dropped shapes")
    training_options(page, **TINY_TRAINING)
    page.click("#upload-submit")
    pw.expect(page.locator("#upload-status")).to_contain_text("Stored dropped shapes: 36 images")
    dataset = page.locator("#datasets tr", has_text="dropped shapes")
    pw.expect(dataset.locator("td.classes")).to_have_text("circle 12 · square 12 · triangle 12")
    dataset_id = dataset.get_attribute("data-dataset-id")
    model = page.locator("#models tr", has=page.locator(f"a[href='/ui/datasets/{dataset_id}']"))
    model_id = model.get_attribute("data-model-id")
    started = time.monotonic()
    pw.expect(model.locator(".badge")).to_have_text("succeeded", timeout=120_000)
    pw.expect(model.locator("td").nth(4)).to_contain_text("30 / 30")
    config = httpx.get(f"{served.url}/v1/models/{model_id}").json()["config"]
    assert config["steps"] == 30 and config["g_channels"] == 16 and config["report"] == "none"
    assert page.console_errors == []
    print(f"dropped dataset trained and shown as succeeded in {time.monotonic() - started:.1f} s")


def test_cancel_then_delete_a_model_and_its_dataset(served, page, tmp_path):
    page.goto(f"{served.url}/ui/")
    zipped = tmp_path / "long.zip"
    zipped.write_bytes(shapes_zip_bytes(per_class=6, size=16))
    page.set_input_files("#upload-file", str(zipped))
    training_options(page, **(TINY_TRAINING | {"steps": 100_000}))
    page.click("#upload-submit")
    dataset = page.locator("#datasets tr", has_text="long")
    dataset_id = dataset.get_attribute("data-dataset-id")
    model = page.locator("#models tr", has=page.locator(f"a[href='/ui/datasets/{dataset_id}']"))
    pw.expect(model.locator(".badge")).to_have_text(re.compile("queued|running"))
    model.locator("button.cancel").click()
    pw.expect(model.locator(".badge")).to_have_text("cancelled", timeout=60_000)
    model_id = model.get_attribute("data-model-id")
    model.locator("button.delete").click()
    pw.expect(model).to_have_count(0)
    assert httpx.get(f"{served.url}/v1/models/{model_id}").status_code == 404
    dataset.locator("button.delete").click()
    pw.expect(dataset).to_have_count(0)
    assert httpx.get(f"{served.url}/v1/datasets/{dataset_id}").status_code == 404
    assert page.console_errors == []


def test_with_keys_required_the_page_asks_for_a_key_and_then_works(page, tmp_path, processes):
    data_dir = tmp_path / "data"
    key = create_keys(Settings(data_dir=data_dir), "alice")["alice"]
    api = start_api(
        data_dir, tmp_path / "serve.log", processes, ["--no-worker"], GANAUG_ALLOW_ANONYMOUS="false"
    )
    page.goto(f"{api.base_url}/ui/")
    dialog = page.locator("#key-dialog")
    pw.expect(dialog).to_be_visible()
    pw.expect(page.locator("#key-reason")).to_contain_text("This API needs an API key")
    pw.expect(page.locator("#notice")).to_contain_text("missing_api_key")

    page.fill("#key-input", "gak_not-a-key")
    page.click("#key-save")
    pw.expect(page.locator("#key-reason")).to_contain_text("unknown or revoked")
    pw.expect(dialog).to_be_visible()

    page.fill("#key-input", key)
    page.click("#key-save")
    pw.expect(dialog).to_be_hidden()
    pw.expect(page.locator("#datasets-empty")).to_be_visible()
    assert page.evaluate("localStorage.getItem('ganaug.apiKey')") == key

    zipped = tmp_path / "keyed.zip"
    zipped.write_bytes(shapes_zip_bytes(per_class=4, size=8))
    page.set_input_files("#upload-file", str(zipped))
    page.uncheck("#upload-train")
    page.click("#upload-submit")
    row = page.locator("#datasets tr", has_text="keyed")
    pw.expect(row.locator("td.classes")).to_have_text("circle 4 · square 4 · triangle 4")
    wait_image(page, "#datasets tr img.thumb")
    headers = {"X-API-Key": key}
    listed = httpx.get(f"{api.base_url}/v1/datasets", headers=headers).json()
    assert [d["name"] for d in listed["data"]] == ["keyed"], "stored for the key's tenant"

    page.reload()  # the key is remembered
    pw.expect(dialog).to_be_hidden()
    row.locator("button.delete").click()  # a same-origin DELETE with the key
    pw.expect(row).to_have_count(0)
    assert httpx.get(f"{api.base_url}/v1/datasets", headers=headers).json()["count"] == 0
    assert page.foreign_requests == []
