"""The sample grid can be read: tiles enlarged with `scale`, class names with `labels`."""

from __future__ import annotations

from collections.abc import Iterator
from types import SimpleNamespace

import numpy as np
import pytest
from fastapi.testclient import TestClient

from core.settings import Settings
from service.app import create_app
from tests.api_flows import decode_png
from tests.factories import SHAPES
from tests.service.served import upload_trained_model
from tests.tiny_model import SIZE


@pytest.fixture(scope="module")
def served(tiny_model: SimpleNamespace, tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    settings = Settings(data_dir=tmp_path_factory.mktemp("grid") / "data")
    with TestClient(create_app(settings), base_url="http://localhost") as client:
        model_id = upload_trained_model(client, settings, tiny_model)
        yield SimpleNamespace(client=client, url=f"/v1/models/{model_id}/samples")


def grid(served, **params) -> np.ndarray:
    answer = served.client.get(served.url, params={"n": 3, "seed": 4, **params})
    assert answer.status_code == 200, answer.text
    return decode_png(answer.content)


def test_scale_enlarges_the_tiles_and_labels_name_each_row(served):
    plain, scaled, labelled = grid(served), grid(served, scale=2), grid(served, scale=2, labels=1)
    pad = 2
    assert plain.shape[:2] == (len(SHAPES) * (SIZE + pad) + pad, 3 * (SIZE + pad) + pad)
    tile = plain[pad : pad + SIZE, pad : pad + SIZE]
    enlarged = scaled[pad : pad + 2 * SIZE, pad : pad + 2 * SIZE]
    assert np.array_equal(enlarged, tile.repeat(2, axis=0).repeat(2, axis=1))
    assert labelled.shape[0] == scaled.shape[0]
    margin = labelled.shape[1] - scaled.shape[1]
    assert margin > 20  # room for "triangle"
    assert np.array_equal(labelled[:, margin:], scaled)
    rows = [labelled[top : top + 2 * SIZE, :margin] for top in range(pad, scaled.shape[0] - pad,
                                                                      2 * SIZE + pad)]  # fmt: skip
    assert len(rows) == len(SHAPES) and all(row.max() > 0 for row in rows)  # text in each row
    assert not np.array_equal(rows[0], rows[1])  # "circle" is not "square"


def test_scale_and_labels_are_refused_off_the_grid(served):
    for params in ({"scale": 9}, {"scale": 0}):
        answer = served.client.get(served.url, params=params)
        assert answer.status_code == 422 and answer.json()["error"]["code"] == "validation_error"
    answer = served.client.get(served.url, params={"format": "zip", "labels": "true"})
    assert answer.status_code == 422
    assert answer.json()["error"]["code"] == "invalid_format"
    assert "format=zip" in answer.json()["error"]["message"]
