"""The exported ONNX files describe themselves: a user with only generator.onnx (or
classifier.onnx) can read the class names, z_dim and image shape from it."""

from __future__ import annotations

import importlib.metadata
import json

import numpy as np
import onnx
import onnxruntime as ort

from tests.factories import SHAPES
from tests.tiny_model import SIZE, TINY_MODEL_CONFIG


def session(path) -> ort.InferenceSession:
    return ort.InferenceSession(path, providers=["CPUExecutionProvider"])


def test_generator_onnx_carries_what_it_takes_to_use_it(tiny_model):
    generator = session(tiny_model.model_dir / "generator.onnx")
    meta = generator.get_modelmeta()
    props = meta.custom_metadata_map
    assert json.loads(props["class_names"]) == list(SHAPES)
    assert int(props["z_dim"]) == TINY_MODEL_CONFIG["z_dim"]
    shape = (int(props["image_channels"]), int(props["image_height"]), int(props["image_width"]))
    assert shape == (1, SIZE, SIZE)
    assert props["method"] == TINY_MODEL_CONFIG["method"]
    assert props["ganaug_version"] == importlib.metadata.version("ganaug")
    assert meta.producer_name == "ganaug" and "latent" in meta.description
    assert generator.get_outputs()[0].shape == ["B", *shape]  # no generated dim names
    # what the metadata says is enough to draw a square
    square = json.loads(props["class_names"]).index("square")
    latent = np.random.default_rng(0).standard_normal((2, int(props["z_dim"]))).astype(np.float32)
    (images,) = generator.run(None, {"latent": latent, "class": np.array([square] * 2)})
    assert images.shape == (2, *shape)
    dims = onnx.load(tiny_model.model_dir / "generator.onnx").graph.output[0].type.tensor_type
    assert [d.denotation for d in dims.shape.dim] == [
        "DATA_BATCH",
        "DATA_CHANNEL",
        "DATA_FEATURE",
        "DATA_FEATURE",
    ]


def test_classifier_onnx_names_its_columns(tiny_model):
    classifier = session(tiny_model.model_dir / "classifier.onnx")
    props = classifier.get_modelmeta().custom_metadata_map
    assert json.loads(props["class_names"]) == list(SHAPES)
    assert classifier.get_inputs()[0].shape == ["B", 1, SIZE, SIZE]
    assert classifier.get_outputs()[0].shape == ["B", len(SHAPES)]
