"""Export the generator and the critic's classifier to ONNX, each checked against torch with
ONNX Runtime."""

from __future__ import annotations

import copy
import importlib.metadata
import io
import json
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch.nn.utils import parametrize

from models.artifact import CLASSIFIER_FILE, GENERATOR_FILE, Manifest, atomic_write_bytes
from models.networks import CriticClassifier, Discriminator, Generator

OPSET = 17
MAX_ABS_DIFF = 1e-4  # float32 kernels differ between torch and ORT by ~1e-6 on tanh outputs


def export_generator_onnx(
    generator: Generator, path: Path, *, z_dim: int, class_map: list[int] | None = None
) -> None:
    """Write `generator` (in eval mode) to path as ONNX with a dynamic batch axis.

    Inputs `latent` float32 (B, z_dim) and `class` int64 (B,); output `image` float32
    (B, C, H, W). `class_map[k]` is the generator's class for the graph's class k (VCAGAN's
    discovered virtual classes); None = the generator's own classes. Raises RuntimeError if
    ONNX Runtime disagrees with torch.
    """
    generator = copy.deepcopy(generator).cpu().eval()
    graph = _TwoInputs(generator, class_map).eval()
    rng = torch.Generator().manual_seed(0)  # leave the global RNG of the caller alone
    latent = torch.randn(3, z_dim, generator=rng)
    labels = torch.arange(3) % graph.num_classes
    buf = io.BytesIO()
    with warnings.catch_warnings():
        # The TorchScript exporter is deliberate (verified with ORT below); its deprecation
        # notices would repeat in every worker log.
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            graph,
            (latent, labels),
            buf,
            dynamo=False,
            opset_version=OPSET,
            input_names=["latent", "class"],
            output_names=["image"],
            dynamic_axes={"latent": {0: "B"}, "class": {0: "B"}, "image": {0: "B"}},
        )
    _check_against_torch(graph, buf.getvalue(), z_dim, rng)
    atomic_write_bytes(path, buf.getvalue())


class _TwoInputs(torch.nn.Module):
    """The generator with only (latent, class) as inputs: its optional arguments keep their
    defaults (a fully conditional generator) instead of becoming graph inputs; with a
    `class_map` the graph's class k is the generator's class class_map[k]."""

    def __init__(self, generator: Generator, class_map: list[int] | None = None):
        super().__init__()
        self.generator = generator
        self.mapped = class_map is not None
        self.num_classes = len(class_map) if class_map else generator.config()["num_classes"]
        self.register_buffer("class_map", torch.tensor(class_map or [], dtype=torch.int64))

    def forward(self, latent: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if self.mapped:
            labels = self.class_map[labels]  # (B,) the generator's classes
        return self.generator(latent, labels)  # (B, C, H, W)


def _check_against_torch(graph: _TwoInputs, model: bytes, z_dim: int, rng: torch.Generator) -> None:
    batch = 5  # differs from the export batch, so the dynamic axis is exercised
    latent = torch.randn(batch, z_dim, generator=rng)
    labels = torch.arange(batch) % graph.num_classes
    with torch.no_grad():
        expected = graph(latent, labels).numpy()
    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    (actual,) = session.run(["image"], {"latent": latent.numpy(), "class": labels.numpy()})
    _check_close(actual, expected)


def export_classifier_onnx(
    critic: Discriminator,
    path: Path,
    *,
    group_std: float | None,
    columns: list[int] | None = None,
) -> None:
    """Write an `aux` critic's trunk and class head (in eval mode) to path as ONNX.

    Input `image` float32 (B, C, H, W) in [-1, 1], dynamic batch; output `probs` (B, K),
    softmax probabilities (see `CriticClassifier`; `group_std` stands in for the
    minibatch-stddev channel; `columns` keeps those logits only, in that order: VCAGAN's
    discovered classes). Raises RuntimeError if ONNX Runtime disagrees with torch.
    """
    critic = copy.deepcopy(critic).cpu().eval()
    config = critic.config()
    export_image_onnx(
        CriticClassifier(_plain_critic(critic), group_std, columns).eval(),
        path,
        outputs=["probs"],
        image_shape=(config["channels"], config["image_size"], config["image_size"]),
        reference=CriticClassifier(critic, group_std, columns).eval(),
    )


def export_image_onnx(
    graph: torch.nn.Module,
    path: Path,
    *,
    outputs: list[str],
    image_shape: tuple[int, int, int],
    reference: torch.nn.Module | None = None,
) -> None:
    """Write a graph of images to path as ONNX: input `image` float32 (B, C, H, W) in [-1, 1],
    `outputs` named in order, dynamic batch. Raises RuntimeError unless ONNX Runtime agrees
    with `reference` (default: the graph itself) on another batch size.
    """
    rng = torch.Generator().manual_seed(0)  # leave the global RNG of the caller alone
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # as for the generator, above
        torch.onnx.export(
            graph,
            (torch.rand(3, *image_shape, generator=rng) * 2 - 1,),
            buf,
            dynamo=False,
            opset_version=OPSET,
            input_names=["image"],
            output_names=outputs,
            dynamic_axes={name: {0: "B"} for name in ["image", *outputs]},
        )
    image = torch.rand(5, *image_shape, generator=rng) * 2 - 1  # another batch size
    with torch.no_grad():
        expected = (reference or graph)(image)
    expected = [expected] if isinstance(expected, torch.Tensor) else list(expected)
    session = ort.InferenceSession(buf.getvalue(), providers=["CPUExecutionProvider"])
    actual = session.run(outputs, {"image": image.numpy()})
    for got, want in zip(actual, expected, strict=True):
        _check_close(got, want.numpy())
    atomic_write_bytes(Path(path), buf.getvalue())


def _plain_critic(critic: Discriminator) -> Discriminator:
    """The critic (in eval mode) without spectral normalisation, its weights fixed at the
    normalised values: the exporter has no ONNX op for the power iteration (aten::vdot)."""
    if not critic.config()["spectral_norm"]:
        return critic
    state = {k: v for k, v in critic.state_dict().items() if ".parametrizations." not in k}
    with torch.no_grad():
        for name, module in critic.named_modules():
            if parametrize.is_parametrized(module):
                for tensor_name in module.parametrizations:
                    state[f"{name}.{tensor_name}"] = getattr(module, tensor_name)
    plain = Discriminator(**critic.config() | {"spectral_norm": False}).eval()
    plain.load_state_dict(state)
    return plain


def _check_close(actual: np.ndarray, expected: np.ndarray) -> None:
    scale = max(1.0, float(np.abs(expected).max()))  # features are unbounded: compare relative
    diff = float(np.abs(actual - expected).max()) if actual.shape == expected.shape else np.inf
    if diff > MAX_ABS_DIFF * scale:
        raise RuntimeError(
            f"ONNX export mismatch: shape {actual.shape} vs {expected.shape}, "
            f"max abs diff {diff:.2e}"
        )


# ONNX dimension denotations (onnx/docs/DimensionDenotation.md) of an NCHW image tensor
NCHW_DENOTATIONS = ("DATA_BATCH", "DATA_CHANNEL", "DATA_FEATURE", "DATA_FEATURE")


def describe_onnx(
    path: Path,
    metadata: dict[str, str],
    *,
    doc: str,
    image_shapes: dict[str, tuple[int, int, int]],
) -> None:
    """Make an exported graph describe itself: `metadata` as its metadata_props, `doc` as its
    doc_string, and each NCHW image tensor named in `image_shapes` with its (C, H, W) sizes
    fixed and its axes denoted batch, channel, feature, feature (the exporter leaves some
    sizes as generated names such as `Sliceimage_dim_2`). The batch axis stays `B`."""
    model = onnx.load(path)
    model.producer_name = "ganaug"
    model.doc_string = doc
    del model.metadata_props[:]
    for key, value in metadata.items():
        model.metadata_props.add(key=key, value=value)
    for tensor in [*model.graph.input, *model.graph.output]:
        if tensor.name not in image_shapes:
            continue
        dims = tensor.type.tensor_type.shape.dim
        for dim, size, denotation in zip(
            dims, (None, *image_shapes[tensor.name]), NCHW_DENOTATIONS, strict=True
        ):
            if size is not None:
                dim.dim_value = size  # replaces a generated dim_param
            dim.denotation = denotation
    onnx.checker.check_model(model)
    atomic_write_bytes(path, model.SerializeToString())


def describe_model_onnx(out_dir: Path, manifest: Manifest) -> None:
    """Put what a user of generator.onnx (and classifier.onnx) needs into the files
    themselves: class names, z_dim, the image shape and pixel range, the method, the model
    id and the ganaug version (as the manifest says them)."""
    image = manifest.image
    shape = (image.channels, image.height, image.width)
    common = {
        "class_names": json.dumps(manifest.classes),
        "num_classes": str(len(manifest.classes)),
        "image_height": str(image.height),
        "image_width": str(image.width),
        "image_channels": str(image.channels),
        "image_layout": "NCHW (batch, channels, height, width)",
        "pixel_range": "[-1, 1]; uint8 = round((x + 1) * 127.5)",
        "method": manifest.method,
        "model_id": manifest.model_id,
        "ganaug_version": importlib.metadata.version("ganaug"),
    }
    describe_onnx(
        out_dir / GENERATOR_FILE,
        common | {"z_dim": str(manifest.z_dim), "truncation": "z = sign(z) * min(|z|, t)"},
        doc="ganaug class-conditional generator. Inputs: latent float32 (B, z_dim), standard "
        "normal (optionally truncated); class int64 (B,), an index into class_names. Output: "
        "image float32 (B, C, H, W) in [-1, 1].",
        image_shapes={"image": shape},
    )
    if manifest.classifier is not None:
        describe_onnx(
            out_dir / CLASSIFIER_FILE,
            common,
            doc="ganaug critic class head. Input: image float32 (B, C, H, W) in [-1, 1]. "
            "Output: probs float32 (B, num_classes), softmax in class_names order.",
            image_shapes={"image": shape},
        )
