"""Every bad input gets one JSON error shape, the right 4xx and code, and stores nothing."""

from __future__ import annotations

import io
import json
import tarfile
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from core.db import repo
from core.db.session import session_scope
from core.settings import Settings
from service import catalog
from service.app import create_app
from tests.factories import shapes_zip_bytes
from tests.service.served import end_training, lease_report
from training.dataset import StoredDataset


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        max_upload_bytes=200_000,
        max_archive_members=200,
        max_uncompressed_bytes=2_000_000,
        max_compression_ratio=50.0,
        max_image_pixels=64 * 64,
    )


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings), base_url="http://localhost") as test_client:
        yield test_client


def assert_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and body["error"]["code"] == code, body
    assert len(body["error"]["message"]) > 10
    return body["error"]


def assert_nothing_stored(client: TestClient, settings: Settings) -> None:
    listing = client.get("/v1/datasets").json()
    assert listing["count"] == 0 and listing["data"] == []
    assert client.get("/v1/models").json()["count"] == 0
    for folder in (settings.datasets_dir, settings.models_dir):
        assert not folder.exists() or list(folder.iterdir()) == [], f"{folder} not empty"


def post(client: TestClient, payload: bytes, filename: str = "data.zip", **data: str):
    return client.post("/v1/datasets", files={"file": (filename, payload)}, data=data)


def zip_of(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def png(size: int = 16, value: int = 128) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("L", (size, size), value).save(buffer, format="PNG")
    return buffer.getvalue()


def npz_of(**arrays: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


TWO_CLASSES = {"a/1.png": png(), "a/2.png": png(value=20), "b/1.png": png(value=200)}


def test_not_an_archive(client, settings):
    assert_error(post(client, b"hello, I am text", "notes.txt"), 415, "unsupported_format")
    assert_nothing_stored(client, settings)


def test_zero_images(client, settings):
    assert_error(post(client, zip_of({"a/": b"", "b/": b""})), 422, "empty_dataset")
    assert_nothing_stored(client, settings)


def test_single_class(client, settings):
    payload = npz_of(x=np.zeros((2, 8, 8), np.uint8), y=np.array([4, 4]))
    message = assert_error(post(client, payload, "one.npz"), 422, "single_class")["message"]
    assert "two or more" in message and "no y" in message
    assert_nothing_stored(client, settings)


def test_corrupt_member_is_named(client, settings):
    payload = zip_of({**TWO_CLASSES, "b/broken.png": b"\x89PNG not really"})
    assert "b/broken.png" in assert_error(post(client, payload), 422, "corrupt_image")["message"]
    assert_nothing_stored(client, settings)


@pytest.mark.parametrize("name", ["../evil/1.png", "/abs/1.png", "a/../../1.png"])
def test_zip_slip(client, settings, name):
    payload = zip_of({**TWO_CLASSES, name: png()})
    assert_error(post(client, payload), 422, "unsafe_path")
    assert_nothing_stored(client, settings)


def test_symlink_member(client, settings):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in TWO_CLASSES.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("b/link.png")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        archive.addfile(link)
    assert_error(post(client, buffer.getvalue(), "data.tar.gz"), 422, "unsafe_member")
    assert_nothing_stored(client, settings)


def test_too_many_members(client, settings):
    members = {f"{'ab'[i % 2]}/{i}.png": png(8) for i in range(201)}
    assert_error(post(client, zip_of(members)), 413, "too_many_members")
    assert_nothing_stored(client, settings)


def empty_entries_zip(count: int, declare: int | None = None) -> bytes:
    """A zip of `count` empty entries (the 31.6 MB zip of 300k in small); `declare` writes
    another count into its end of central directory record, as a forged archive might."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for i in range(count):
            archive.writestr(f"a/{i}.png", b"")
    data = bytearray(buffer.getvalue())
    if declare is not None:
        end = data.rfind(b"PK\x05\x06")
        data[end + 8 : end + 12] = declare.to_bytes(2, "little") * 2  # on this disk, in all
    return bytes(data)


@pytest.mark.parametrize("declare", [None, 3], ids=["declared", "forged-count"])
def test_too_many_members_refused_before_the_entry_list_is_parsed(
    client, settings, monkeypatch, declare
):
    """zipfile builds an object per entry (seconds for 300k); the count is read first."""
    parsed = []
    real_contents = zipfile.ZipFile._RealGetContents
    monkeypatch.setattr(
        zipfile.ZipFile,
        "_RealGetContents",
        lambda archive: parsed.append(1) or real_contents(archive),
    )
    payload = empty_entries_zip(1_500, declare)
    assert len(payload) < settings.max_upload_bytes
    error = assert_error(post(client, payload), 413, "too_many_members")
    assert "more than 200 entries" in error["message"]
    assert parsed == [], "zipfile parsed the central directory"
    assert_nothing_stored(client, settings)
    assert parsed == [], "the listing parsed no zip either"


def test_uncompressed_total_over_limit(client, settings):
    # Incompressible noise: under the upload cap compressed? no: kept below the ratio cap.
    rng = np.random.default_rng(0)
    members = {**TWO_CLASSES, "b/big.bin.png": rng.bytes(190_000)}
    settings.max_uncompressed_bytes = 100_000
    assert_error(post(client, zip_of(members)), 413, "archive_too_large")
    assert_nothing_stored(client, settings)


def test_compression_ratio_bomb(client, settings):
    members = {**TWO_CLASSES, "b/zeros.png": bytes(1_500_000)}
    assert_error(post(client, zip_of(members)), 413, "compression_ratio")
    assert_nothing_stored(client, settings)


def test_image_over_pixel_cap(client, settings):
    payload = zip_of({**TWO_CLASSES, "b/huge.png": png(size=100)})
    assert_error(post(client, payload), 413, "image_too_large")
    assert_nothing_stored(client, settings)


def test_npz_needing_pickle(client, settings):
    x = np.empty(2, dtype=object)
    x[0], x[1] = np.zeros((4, 4)), np.ones((4, 4))
    payload = npz_of(x=x, y=np.array([0, 1]))
    assert_error(post(client, payload, "data.npz"), 422, "npz_pickle")
    assert_nothing_stored(client, settings)


@pytest.mark.parametrize(
    "x", [np.zeros((4, 16, 16), np.float32), np.zeros((4, 16), np.uint8)], ids=["float", "rank2"]
)
def test_npz_bad_x(client, settings, x):
    payload = npz_of(x=x, y=np.array([0, 1, 0, 1]))
    assert_error(post(client, payload, "data.npz"), 422, "npz_invalid")
    assert_nothing_stored(client, settings)


def test_npz_length_mismatch(client, settings):
    payload = npz_of(x=np.zeros((4, 16, 16), np.uint8), y=np.array([0, 1, 0]))
    assert_error(post(client, payload, "data.npz"), 422, "npz_length_mismatch")
    assert_nothing_stored(client, settings)


@pytest.mark.parametrize(
    "config",
    [
        '{"stepz": 10}',
        '{"steps": 0}',
        '{"batch_size": 100000}',
        '{"method": "vae"}',
        "not json",
        "[1]",
    ],
)
def test_bad_training_options(client, settings, config):
    response = post(client, shapes_zip_bytes(per_class=3), train="true", config=config)
    assert_error(response, 422, "invalid_config")
    assert_nothing_stored(client, settings)


def test_upload_over_size_limit_by_content_length(client, settings):
    payload = np.random.default_rng(1).bytes(300_000)
    assert_error(post(client, payload), 413, "upload_too_large")
    assert_nothing_stored(client, settings)


def test_upload_over_size_limit_while_streaming(client, settings):
    """No Content-Length (chunked): the limit still holds as the body streams in."""
    boundary = "ganaugboundary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="d.zip"\r\n'
        "Content-Type: application/zip\r\n\r\n"
    ).encode()

    def body() -> Iterator[bytes]:
        yield head
        for _ in range(40):
            yield bytes(10_000)
        yield f"\r\n--{boundary}--\r\n".encode()

    response = client.post(
        "/v1/datasets",
        content=body(),
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    assert_error(response, 413, "upload_too_large")
    assert_nothing_stored(client, settings)


def test_unknown_ids_are_404(client):
    assert_error(client.get("/v1/datasets/nope"), 404, "dataset_not_found")
    assert_error(client.delete("/v1/datasets/nope"), 404, "dataset_not_found")
    assert_error(client.get("/v1/models/nope"), 404, "model_not_found")
    assert_error(client.get("/v1/models/nope/samples"), 404, "model_not_found")
    assert_error(client.post("/v1/models", json={"dataset_id": "nope"}), 404, "dataset_not_found")
    assert_error(client.get("/v1/no-such-route"), 404, "not_found")


def test_validation_errors_share_the_shape(client):
    error = assert_error(client.post("/v1/models", json={"steps": 5}), 422, "validation_error")
    assert "dataset_id" in error["message"]
    assert_error(client.get("/v1/datasets", params={"limit": 0}), 422, "validation_error")


def test_queued_model_has_no_samples_yet(client, settings):
    """Without a worker the model stays queued: samples, archive and ONNX are 409."""
    upload = post(client, shapes_zip_bytes(per_class=3), train="true", config='{"steps": 5}')
    assert upload.status_code == 201, upload.text
    model_id = upload.json()["model"]["id"]
    for path in ("samples", "archive", "generator.onnx"):
        assert_error(client.get(f"/v1/models/{model_id}/{path}"), 409, "model_not_ready")
    dataset_id = upload.json()["id"]
    assert_error(client.delete(f"/v1/datasets/{dataset_id}"), 409, "dataset_in_use")
    cancelled = client.post(f"/v1/models/{model_id}/cancel")
    assert cancelled.status_code == 202 and cancelled.json()["status"] == "cancelled"
    assert_error(client.post(f"/v1/models/{model_id}/cancel"), 409, "model_finished")
    assert client.delete(f"/v1/datasets/{dataset_id}").status_code == 204
    assert_nothing_stored(client, settings)


def test_dataset_crud(client, settings):
    created = post(client, shapes_zip_bytes(per_class=4), "shapes.zip", name="my shapes")
    assert created.status_code == 201, created.text
    body = created.json()
    assert "model" not in body and body["name"] == "my shapes" and body["num_images"] == 12
    assert len(StoredDataset.load(settings.datasets_dir / body["id"])) == 12
    assert client.get(f"/v1/datasets/{body['id']}").json() == body
    assert client.get("/v1/datasets").json()["count"] == 1
    assert client.delete(f"/v1/datasets/{body['id']}").status_code == 204
    assert_nothing_stored(client, settings)


def test_uploads_are_read_in_place_never_copied(client, settings, monkeypatch):
    """Ingestion reads the request's spooled file itself: no second copy on disk, kept or not."""
    seen: list[tuple[object, list[str]]] = []
    real_ingest = catalog.ingest

    def watched_ingest(upload, *args, **kwargs):
        seen.append((upload, sorted(p.name for p in settings.data_dir.iterdir())))
        return real_ingest(upload, *args, **kwargs)

    monkeypatch.setattr(catalog, "ingest", watched_ingest)
    assert post(client, shapes_zip_bytes(per_class=3)).status_code == 201
    assert_error(post(client, b"not a dataset", "junk.bin"), 415, "unsupported_format")
    assert len(seen) == 2
    for upload, data_dir_entries in seen:
        assert isinstance(upload, tempfile.SpooledTemporaryFile), type(upload)
        assert "uploads" not in data_dir_entries  # the old copy's folder
    assert not (settings.data_dir / "uploads").exists()


def test_config_without_train_is_rejected(client, settings):
    response = post(client, shapes_zip_bytes(per_class=3), config=json.dumps({"steps": 5}))
    assert_error(response, 422, "invalid_config")
    assert_nothing_stored(client, settings)


def upload_and_queue(client: TestClient, **config) -> dict:
    upload = post(client, shapes_zip_bytes(per_class=3), train="true", config=json.dumps(config))
    assert upload.status_code == 201, upload.text
    return upload.json()


def test_report_is_pending_until_training_ends(client, settings):
    """A report that will follow training reads `pending`; `none` once training fails."""
    body = upload_and_queue(client, steps=5, report="fast")
    model_id = body["model"]["id"]
    assert body["model"]["report"]["status"] == "pending"
    assert client.get(f"/v1/models/{model_id}").json()["report"]["status"] == "pending"
    end_training(settings, model_id, "failed")
    assert client.get(f"/v1/models/{model_id}").json()["report"]["status"] == "none"

    cancelled = upload_and_queue(client, steps=5)["model"]  # report: standard by default
    assert cancelled["report"]["status"] == "pending"
    cancel = client.post(f"/v1/models/{cancelled['id']}/cancel").json()
    assert (cancel["status"], cancel["report"]["status"]) == ("cancelled", "none")

    without = upload_and_queue(client, steps=5, report="none")["model"]
    assert without["report"]["status"] == "none"


def test_dataset_in_use_while_a_report_is_queued_or_running(client, settings):
    body = upload_and_queue(client, steps=5, report="fast")
    dataset_id, model_id = body["id"], body["model"]["id"]
    end_training(settings, model_id, "succeeded", report=True)
    assert client.get(f"/v1/models/{model_id}").json()["report"]["status"] == "queued"
    error = assert_error(client.delete(f"/v1/datasets/{dataset_id}"), 409, "dataset_in_use")
    assert "report" in error["message"]
    token = lease_report(settings, model_id)
    assert client.get(f"/v1/models/{model_id}").json()["report"]["status"] == "running"
    assert_error(client.delete(f"/v1/datasets/{dataset_id}"), 409, "dataset_in_use")
    assert client.get(f"/v1/models/{model_id}").status_code == 200  # nothing was deleted
    with session_scope(settings.sqlalchemy_url) as session:
        repo.finish_report(session, model_id, token, status="failed", error="stopped by the test")
    assert client.delete(f"/v1/datasets/{dataset_id}").status_code == 204
    assert_nothing_stored(client, settings)


@pytest.mark.parametrize("path", ["/v1/datasets", "/v1/models"])
@pytest.mark.parametrize("offset", [2**31, 2**63 - 1, 2**63, 2**64])
def test_list_offset_beyond_the_bound(client, path, offset):
    error = assert_error(client.get(path, params={"offset": offset}), 422, "validation_error")
    assert "offset" in error["message"]


@pytest.mark.parametrize("path", ["/v1/datasets", "/v1/models"])
def test_list_offset_at_the_bound_is_an_empty_page(client, path):
    listing = client.get(path, params={"offset": 2**31 - 1}).json()
    assert (listing["data"], listing["offset"]) == ([], 2**31 - 1)


@pytest.mark.parametrize("value", ["²", "١", "1.0", "-1", "+1", " 1", "3", "1" * 5000])
def test_class_is_a_name_or_an_ascii_index(client, settings, value):
    """Only ASCII digits are an index (the shapes have 3 classes); the check precedes drawing."""
    model_id = upload_and_queue(client, steps=5, report="none")["model"]["id"]
    end_training(settings, model_id, "succeeded", report=False)
    response = client.get(f"/v1/models/{model_id}/samples", params={"class": value})
    assert "unknown class" in assert_error(response, 422, "unknown_class")["message"].lower()
