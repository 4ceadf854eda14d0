"""What a model is trained with: the default method when a request names none, and a named
method's own defaults otherwise (recorded in full, so a worker trains exactly that)."""

from __future__ import annotations

import json

from tests.factories import shapes_zip_bytes
from tests.service.test_bad_input import client, post, settings  # noqa: F401 (fixtures)
from training import TrainConfig


def queued_model(client, **form: str) -> dict:  # noqa: F811 (the client fixture)
    upload = post(client, shapes_zip_bytes(per_class=3), train="true", **form)
    assert upload.status_code == 201, upload.text
    return upload.json()["model"]


def test_a_dataset_posted_without_config_trains_the_projection_cgan(client):  # noqa: F811
    model = queued_model(client)
    assert model["method"] == "cgan"
    config = model["config"]
    assert (config["adv_loss"], config["d_conditioning"], config["spectral_norm"]) == (
        "hinge",
        "projection",
        True,
    )
    assert (config["n_critic"], config["beta1"], config["beta2"]) == (2, 0.0, 0.9)
    assert (config["gp_weight"], config["aux_weight"]) == (0.0, 0.0)
    assert config == TrainConfig(seed=config["seed"]).model_dump()


def test_named_methods_are_stored_with_their_own_defaults(client):  # noqa: F811
    for method in ("wacgan-gp", "acgan"):
        model = queued_model(client, config=json.dumps({"method": method}))
        config = model["config"]
        assert model["method"] == method
        assert config == TrainConfig(method=method, seed=config["seed"]).model_dump()
    assert (config["n_critic"], config["beta1"], config["adv_loss"]) == (1, 0.5, "bce")
    created = client.post(
        "/v1/models", json={"dataset_id": model["dataset_id"], "method": "wacgan-gp"}
    )
    assert created.status_code == 202, created.text
    config = created.json()["config"]
    assert (config["gp_weight"], config["aux_weight"], config["spectral_norm"]) == (
        10.0,
        0.2,
        False,
    )
    assert config["adv_loss"] is None and config["d_conditioning"] is None
