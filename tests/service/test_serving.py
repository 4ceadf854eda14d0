"""Serving speed-ups keep the bytes: ORT session options, dynamic batching of concurrent
sample requests, the flat-memory archive writer and PNG levels (no timings here:
benchmarks/serving.py measures)."""

from __future__ import annotations

import asyncio
import io
import json
import shutil
import subprocess
import threading
import time
import tracemalloc
import zipfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import fastapi.routing
import numpy as np
import pytest
from fastapi.testclient import TestClient

from core.settings import Settings
from models.drawing import DrawSpec, draw_class_images
from models.images import encode_png
from models.sampler import GeneratorSampler
from models.truncation import sample_latents
from service import generation
from service.app import create_app
from service.compute import Compute
from service.routes.models import get_samples
from service.zipstream import ZipStream
from tests.factories import SHAPES
from tests.service.served import upload_trained_model

CPU = ["CPUExecutionProvider"]


def test_session_options_do_not_change_outputs(tiny_model):
    """No spinning and other thread counts give the same bytes as the spinning default of
    ORT."""
    labels = np.arange(40) % len(SHAPES)
    latents = sample_latents(np.random.default_rng(3), 40, 16)
    outputs = [
        GeneratorSampler(tiny_model.model_dir, CPU, threads=threads, spinning=spinning)
        .generate(labels, latents)
        .tobytes()
        for threads, spinning in [(1, False), (2, False), (2, True), (None, True)]
    ]
    assert len(set(outputs)) == 1


def _serve(tiny_model, root, **settings) -> tuple[TestClient, str, Settings]:
    config = Settings(data_dir=root / "data", **settings)
    client = TestClient(create_app(config), base_url="http://localhost")
    client.__enter__()
    model_id = upload_trained_model(client, config, tiny_model, report=True)
    return client, model_id, config


@pytest.fixture(scope="module")
def servers(tiny_model, tmp_path_factory) -> Iterator[SimpleNamespace]:
    """One gateway that batches (gathering for up to 200 ms) and one that never does."""
    root = tmp_path_factory.mktemp("serving")
    batched, model_id, _ = _serve(tiny_model, root / "batched", batch_wait_ms=200)
    plain, plain_id, plain_settings = _serve(tiny_model, root / "plain", batch_wait_ms=0)
    try:
        yield SimpleNamespace(
            batched=batched,
            model_id=model_id,
            plain=plain,
            plain_id=plain_id,
            plain_settings=plain_settings,
        )
    finally:
        batched.__exit__(None, None, None)
        plain.__exit__(None, None, None)


REQUESTS = [
    {"class": "square", "n": 1, "seed": 11, "format": "png"},
    {"class": "circle", "n": 1, "seed": 12, "format": "png"},
    {"class": "square", "n": 1, "seed": 13, "format": "png"},
    {"n": 3, "seed": 14, "format": "npz"},
    {"class": 1, "n": 5, "seed": 15, "format": "grid"},
    {"n": 2, "seed": 16, "format": "zip", "truncation": "0.7"},
    {"class": 0, "n": 4, "seed": 17, "format": "npz", "truncation": "1.5",
     "truncation_mode": "resample"},
    {"class": 2, "n": 2, "seed": 18, "format": "grid"},
]  # fmt: skip


def _content(client: TestClient, model_id: str, params: dict) -> bytes:
    response = client.get(f"/v1/models/{model_id}/samples", params=params)
    assert response.status_code == 200, response.text
    return response.content


def test_calls_gather_while_the_pool_is_busy_and_get_their_own_rows(tiny_model):
    sampler = GeneratorSampler(tiny_model.model_dir, CPU)
    calls = [
        (np.full(n, n % 3, np.int64), sample_latents(np.random.default_rng(n), n, 16))
        for n in (1, 3, 2, 5)
    ]

    async def gathered() -> list[np.ndarray]:
        compute = Compute(threads=1, batch_wait_ms=10_000, batch_max_images=64)
        release = threading.Event()
        blocker = asyncio.ensure_future(compute.run(release.wait))  # the only thread is busy
        await asyncio.sleep(0)
        waiting = [asyncio.ensure_future(compute.generate(sampler, *call)) for call in calls]
        await asyncio.sleep(0.05)
        assert not any(w.done() for w in waiting)
        release.set()  # the thread frees: the gathering runs at once, not after 10 s
        await blocker
        images = await asyncio.wait_for(asyncio.gather(*waiting), timeout=30)
        assert (compute.gathered_calls, compute.gathered_requests) == (1, len(calls))
        alone = await compute.generate(sampler, *calls[0])  # a free thread: no gathering
        assert compute.gathered_calls == 1 and alone.tobytes() == images[0].tobytes()
        compute.close()
        return images

    for (labels, latents), images in zip(calls, asyncio.run(gathered()), strict=True):
        assert images.tobytes() == sampler.generate(labels, latents).tobytes()


def test_unset_wait_batches_no_cpu_generator(tiny_model):
    sampler = GeneratorSampler(tiny_model.model_dir, CPU)
    labels, latents = np.zeros(2, np.int64), sample_latents(np.random.default_rng(0), 2, 16)

    async def run() -> int:
        compute = Compute(threads=1, batch_wait_ms=None)
        release = threading.Event()
        blocker = asyncio.ensure_future(compute.run(release.wait))
        await asyncio.sleep(0)
        waiting = [asyncio.ensure_future(compute.generate(sampler, labels, latents)) for _ in "ab"]
        await asyncio.sleep(0.05)
        release.set()
        await blocker
        await asyncio.gather(*waiting)
        compute.close()
        return compute.gathered_calls

    assert asyncio.run(run()) == 0


def test_concurrent_requests_are_batched_and_get_their_unbatched_bytes(servers):
    client = servers.batched
    compute = client.app.state.compute
    release = threading.Event()
    for _ in range(compute.threads):  # a busy pool, so the requests gather
        client.portal.start_task_soon(compute.run, release.wait)
    with ThreadPoolExecutor(len(REQUESTS)) as pool:
        responses = [pool.submit(_content, client, servers.model_id, params) for params in REQUESTS]
        time.sleep(0.5)
        release.set()
        together = [response.result() for response in responses]
    assert compute.gathered_requests > compute.gathered_calls, "no requests were gathered"
    alone = [_content(servers.plain, servers.plain_id, p) for p in REQUESTS]
    for params, got, expected in zip(REQUESTS, together, alone, strict=True):
        if params["format"] == "npz":  # a zip: compare what np.load gives
            got_npz, expected_npz = np.load(io.BytesIO(got)), np.load(io.BytesIO(expected))
            for key in ("x", "y", "classes", "p"):
                np.testing.assert_array_equal(got_npz[key], expected_npz[key], key)
        else:
            assert got == expected, f"batched bytes differ for {params}"


def test_sample_zip_and_npz_are_streamed_valid_archives(servers):
    response = servers.plain.get(
        f"/v1/models/{servers.plain_id}/samples", params={"n": 2, "seed": 5, "format": "zip"}
    )
    assert response.status_code == 200 and "content-length" not in response.headers
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        assert archive.testzip() is None
        assert sorted(archive.namelist()) == sorted(
            f"{shape}/sample_{i:05d}.png" for i, shape in enumerate(np.repeat(SHAPES, 2))
        )
    npz = np.load(io.BytesIO(_content(servers.plain, servers.plain_id, {"n": 2, "format": "npz"})))
    assert npz["x"].shape == (2 * len(SHAPES), 16, 16, 1)
    assert npz["y"].tolist() == [0, 0, 1, 1, 2, 2] and npz["classes"].tolist() == list(SHAPES)
    np.testing.assert_allclose(npz["p"].sum(axis=1), 1.0, rtol=1e-5)


def test_archive_members_hold_the_encoded_images_and_pass_unzip(servers, tiny_model, tmp_path):
    """The flat-memory writer stores what the zipfile writer stored: each real image's and
    each drawn image's PNG bytes (at the PNG level of the settings), under the same names."""
    level = Settings().png_compress_level
    response = servers.plain.get(
        f"/v1/models/{servers.plain_id}/archive", params={"per_class": 3, "seed": 8}
    )
    assert response.status_code == 200, response.text
    path = tmp_path / "archive.zip"
    path.write_bytes(response.content)
    if shutil.which("unzip"):
        tested = subprocess.run(["unzip", "-t", str(path)], capture_output=True, text=True)
        assert tested.returncode == 0 and "No errors detected" in tested.stdout, tested.stdout
    sampler = GeneratorSampler(tiny_model.model_dir, CPU)
    with zipfile.ZipFile(path) as archive:
        assert archive.testzip() is None
        for index, shape in enumerate(SHAPES):
            drawn = draw_class_images(sampler, index, 3, 8, DrawSpec())
            for i, image in enumerate(drawn):
                assert archive.read(f"{shape}/synthetic_{i:05d}.png") == encode_png(image, level)
            real = tiny_model.x[tiny_model.y == index]
            for j, image in enumerate(real):
                png = encode_png(image[..., None], level)
                assert archive.read(f"{shape}/real_{j:05d}.png") == png
        manifest = json.loads(archive.read("manifest.json"))
    assert manifest["complete"] and manifest["counts"]["circle"] == {
        "real": int((tiny_model.y == SHAPES.index("circle")).sum()),
        "synthetic": 3,
    }


def test_start_up_opens_the_newest_models_sessions(servers):
    """A gateway starting over a data directory with a succeeded model has its ORT session
    open before the first request: that request finds it loaded."""
    settings = servers.plain_settings
    model_dir = settings.models_dir / servers.plain_id
    generation._sampler.cache_clear()
    with TestClient(create_app(settings), base_url="http://localhost"):
        assert generation._sampler.cache_info().currsize == 1
        generation.load_sampler(model_dir, settings.ort_threads, settings.ort_spinning)
        assert generation._sampler.cache_info().hits == 1
    generation._sampler.cache_clear()
    cold = settings.model_copy(update={"warm_models": 0})
    with TestClient(create_app(cold), base_url="http://localhost"):
        assert generation._sampler.cache_info().currsize == 0


def test_start_up_builds_the_routes_so_the_first_request_builds_none(servers, monkeypatch):
    """FastAPI builds an included router's routes (dependency trees, validators) on the
    first request that reaches it; the gateway builds them at start-up, so a first sample
    request after start builds none. Without start-up, the same request builds them (the
    spy sees route building at all)."""
    built: list = []
    build = fastapi.routing.get_dependant

    def spy(**kwargs):
        built.append(kwargs["call"])
        return build(**kwargs)

    monkeypatch.setattr(fastapi.routing, "get_dependant", spy)
    url = f"/v1/models/{servers.plain_id}/samples"
    with TestClient(create_app(servers.plain_settings), base_url="http://localhost") as client:
        assert get_samples in built  # at start-up
        built.clear()
        assert client.get(url, params={"n": 2, "seed": 1}).status_code == 200
    assert built == []
    unstarted = create_app(servers.plain_settings)
    try:
        response = TestClient(unstarted, base_url="http://localhost").get(url, params={"n": 2})
    finally:
        unstarted.state.compute.close()  # what its lifespan would have done
    assert response.status_code == 200 and get_samples in built


def test_png_level_changes_size_not_pixels(tiny_model, tmp_path):
    image = GeneratorSampler(tiny_model.model_dir, CPU).generate(
        np.zeros(1, np.int64), np.ones((1, 16), np.float32)
    )[0]
    fast, small = encode_png(image, 1), encode_png(image, 9)
    assert fast != small
    from PIL import Image

    for data in (fast, small):
        np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(data))), image[..., 0])


def _peak_bytes(write) -> int:
    tracemalloc.start()
    try:
        write()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


MEMBERS = 20_000
PAYLOAD = b"\x89PNG" + bytes(60)


def test_archive_writer_memory_per_member_is_bounded_unlike_zipfile():
    """Peak traced memory over 20,000 members stays under 120 bytes a member (names and
    numbers), where zipfile's ZipInfo per member needs several times that."""

    def ours() -> None:
        archive = ZipStream()
        for i in range(MEMBERS):
            archive.add(f"class_name/synthetic_{i:05d}.png", PAYLOAD)
        for _ in archive.finish():
            pass

    def with_zipfile() -> None:
        class Sink(io.RawIOBase):
            def writable(self) -> bool:
                return True

            def write(self, data) -> int:  # type: ignore[override]
                return len(data)

        with zipfile.ZipFile(Sink(), "w") as archive:
            for i in range(MEMBERS):
                archive.writestr(f"class_name/synthetic_{i:05d}.png", PAYLOAD)

    bound = 120 * MEMBERS
    assert _peak_bytes(ours) < bound
    assert _peak_bytes(with_zipfile) > 3 * bound  # the bound tells the two apart


def test_zip64_when_members_exceed_65535(tmp_path):
    archive, path = ZipStream(), tmp_path / "many.zip"
    with path.open("wb") as out:
        for i in range(65_536):
            out.write(archive.add(f"{i}", b"x" if i % 2 else b""))
        out.write(archive.add("ünïcode/name.txt", b"utf-8 names"))
        out.writelines(archive.finish())
    with zipfile.ZipFile(path) as read:
        names = read.namelist()
        assert len(names) == 65_537 and read.read("65535") == b"x" and read.read("0") == b""
        assert read.read("ünïcode/name.txt") == b"utf-8 names"
        assert read.testzip() is None
