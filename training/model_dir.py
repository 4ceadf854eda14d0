"""The model directory a training run writes: ONNX graphs, manifest and sample grid."""

from __future__ import annotations

import importlib.metadata
import platform
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import onnx
import torch

from models.artifact import (
    CLASSIFIER_FILE,
    GENERATOR_FILE,
    SAMPLES_FILE,
    ClassifierInfo,
    ImageShape,
    Manifest,
    Selection,
    TrainingDevice,
    atomic_write_bytes,
    classifier_io,
    generator_io,
)
from models.drawing import draw_class_images
from models.images import encode_png, image_grid
from models.sampler import CPU, GeneratorSampler
from training.config import UNSUPERVISED_METHODS
from training.dataset import StoredDataset
from training.export import describe_model_onnx, export_classifier_onnx, export_generator_onnx

if TYPE_CHECKING:  # loop.py imports this module to write what its Trainer trained
    from training.loop import Trainer

SAMPLES_PER_CLASS = 8
SAMPLES_SEED = 0  # the same latents for every model, so sample grids compare across runs


def training_device(dev: torch.device) -> TrainingDevice:
    """The device as the manifest and the API name it: its type, and the GPU's name."""
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else None
    return TrainingDevice(type=dev.type, name=name)


def write_model(
    trainer: Trainer,
    out_dir: Path,
    model_id: str,
    final_losses: dict[str, float],
    selection: Selection | None = None,
    dataset: StoredDataset | None = None,
) -> None:
    """Export the generator (and the critic's classifier when it has a class head), then
    write the manifest (with the checkpoint selection, if any) and a per-class sample grid.

    A vcagan trainer's classes are the ones it discovered: both graphs take and give
    indices into them, and clusters.npy assigns every image of `dataset` to one."""
    config, data = trainer.config, trainer.data
    classes, class_map, clusters = data.classes, None, None
    if config.method in UNSUPERVISED_METHODS:
        from training.vcagan import write_virtual_model  # see loop.run()

        if dataset is None:
            raise ValueError("a vcagan model assigns its dataset's images: pass the dataset")
        classes, class_map, clusters = write_virtual_model(trainer, dataset, out_dir)
    export_generator_onnx(
        trainer.export_generator, out_dir / GENERATOR_FILE, z_dim=config.z_dim, class_map=class_map
    )
    _, channels, size, _ = data.images.shape
    image = ImageShape(height=size, width=size, channels=channels)
    inputs, outputs = generator_io(config.z_dim, image)
    classifier = write_classifier(trainer, out_dir, image, class_map)
    manifest = Manifest(
        model_id=model_id,
        method=config.method,
        classes=classes,
        z_dim=config.z_dim,
        image=image,
        config=config.model_dump(),
        versions=_versions(),
        final_losses=final_losses,
        steps_completed=trainer.steps_done,
        created_at=datetime.now(UTC),
        inputs=inputs,
        outputs=outputs,
        classifier=classifier,
        selection=selection,
        clusters=clusters,
        device=training_device(trainer.device),
    )
    describe_model_onnx(out_dir, manifest)
    manifest.save(out_dir)
    write_samples(out_dir, len(classes))


def write_classifier(
    trainer: Trainer, out_dir: Path, image: ImageShape, columns: list[int] | None = None
) -> ClassifierInfo | None:
    """classifier.onnx: the critic's trunk and class head, for critics that have one
    (`columns`: the class-head logits kept, vcagan's discovered classes)."""
    critic = trainer.critic
    if critic.conditioning != "aux":
        return None
    critic.eval()  # no dropout while measuring
    try:
        group_std = critic.real_group_std(trainer.data.images, trainer.config.batch_size)
    finally:
        critic.train()
    export_classifier_onnx(critic, out_dir / CLASSIFIER_FILE, group_std=group_std, columns=columns)
    num_classes = len(columns) if columns is not None else len(trainer.data.classes)
    inputs, outputs = classifier_io(num_classes, image)
    return ClassifierInfo(inputs=inputs, outputs=outputs, group_std=group_std)


def write_samples(out_dir: Path, num_classes: int) -> None:
    """samples.png: one row per class, untruncated, from the exported ONNX graph (the
    images `samples?n=8&seed=0` serves)."""
    sampler = GeneratorSampler(out_dir, providers=[CPU])
    images = np.concatenate(
        [draw_class_images(sampler, c, SAMPLES_PER_CLASS, SAMPLES_SEED) for c in range(num_classes)]
    )
    grid = image_grid(images, ncols=SAMPLES_PER_CLASS)
    atomic_write_bytes(out_dir / SAMPLES_FILE, encode_png(grid))


def _versions() -> dict[str, str]:
    return {
        "ganaug": importlib.metadata.version("ganaug"),
        "torch": torch.__version__,
        "onnx": onnx.__version__,
        "python": platform.python_version(),
    }
