"""Run an exported generator with ONNX Runtime (numpy + onnxruntime only)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnxruntime as ort

from models.artifact import GENERATOR_FILE, Manifest
from models.images import to_uint8_nhwc

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
# The default cuDNN algorithm, not the fastest one found by timing, so outputs are reproducible.
_CUDA_OPTIONS = {"cudnn_conv_algo_search": "DEFAULT"}
_ORT_DEFAULT_LOG_SEVERITY = 2
_ORT_SILENT = 4


def default_threads() -> int:
    """Intra-op threads when none are asked for: up to 4, leaving cores to the web server."""
    return min(4, os.cpu_count() or 1)


def _session_options(threads: int | None = None, spinning: bool = False) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or default_threads()
    options.inter_op_num_threads = 1
    options.use_deterministic_compute = True
    # Spinning threads keep polling for work after each call: on a shared or small machine
    # they take the cores the web server and the other requests need (issue 12: off gave
    # 1.6-1.7x the n=1 throughput on 2 loaded cores, byte-identical outputs).
    flag = "1" if spinning else "0"
    options.add_session_config_entry("session.intra_op.allow_spinning", flag)
    options.add_session_config_entry("session.inter_op.allow_spinning", flag)
    return options


_cuda_probe: list[bool] = []  # the answer, once known: a CUDA session start costs seconds


def cuda_usable(model_path: Path) -> bool:
    """True when ORT lists the CUDA provider and a session on model_path really starts on it.

    Probed once per process; later calls return the first answer.
    """
    if not _cuda_probe:
        _cuda_probe.append(CUDA in ort.get_available_providers() and _cuda_starts(model_path))
    return _cuda_probe[0]


def _cuda_starts(model_path: Path) -> bool:
    # A missing CUDA library makes ORT log an error and fall back to CPU; we check, not log.
    ort.set_default_logger_severity(_ORT_SILENT)
    try:
        session = ort.InferenceSession(
            str(model_path), _session_options(), providers=[(CUDA, _CUDA_OPTIONS), CPU]
        )
        return CUDA in session.get_providers()
    except Exception:  # any failure to start means "not usable"
        return False
    finally:
        ort.set_default_logger_severity(_ORT_DEFAULT_LOG_SEVERITY)


def open_session(
    model_path: Path,
    providers: list | None = None,
    *,
    threads: int | None = None,
    spinning: bool = False,
) -> ort.InferenceSession:
    """An ONNX Runtime session on model_path: CUDA when it really works here, else CPU.

    Args:
        providers: ONNX Runtime providers in order of preference, instead of that choice.
        threads: intra-op threads (None: `default_threads()`).
        spinning: let idle ORT threads spin for work (faster on an otherwise idle machine).
    """
    if providers is None:
        providers = [(CUDA, _CUDA_OPTIONS), CPU] if cuda_usable(model_path) else [CPU]
    options = _session_options(threads, spinning)
    return ort.InferenceSession(str(model_path), options, providers=providers)


class GeneratorSampler:
    """Loads `model_dir` (manifest + generator.onnx) and turns (class, latent) into images."""

    def __init__(
        self,
        model_dir: Path,
        providers: list[str] | None = None,
        *,
        threads: int | None = None,
        spinning: bool = False,
    ):
        """Args:
        model_dir: a directory written by `training.run`.
        providers: ONNX Runtime providers in order of preference; by default CUDA when
            it works on this machine, else CPU.
        threads, spinning: ONNX Runtime's intra-op threads and spinning (`open_session`).
        """
        self.model_dir = Path(model_dir)
        self.manifest: Manifest = Manifest.load(self.model_dir)
        self._session = open_session(
            self.model_dir / GENERATOR_FILE, providers, threads=threads, spinning=spinning
        )
        self._on_cuda = CUDA in self._session.get_providers()

    @property
    def on_cuda(self) -> bool:
        """Whether the session runs on CUDA."""
        return self._on_cuda

    @property
    def providers(self) -> list[str]:
        """The providers the session actually runs on."""
        return self._session.get_providers()

    def generate(
        self, labels: np.ndarray, latents: np.ndarray, batch_size: int = 256
    ) -> np.ndarray:
        """Generate one image per (label, latent) row; same inputs give byte-identical outputs.

        Args:
            labels: int64 (N,) class indices into manifest.classes.
            latents: float32 (N, z_dim).
            batch_size: rows per ONNX Runtime call (bounds memory).

        Returns:
            uint8 (N, H, W, C).
        """
        labels = np.asarray(labels, dtype=np.int64)
        latents = np.asarray(latents, dtype=np.float32)
        self._check_inputs(labels, latents)
        image = self.manifest.image
        out = np.empty((len(labels), image.height, image.width, image.channels), np.uint8)
        for start in range(0, len(labels), batch_size):
            rows = slice(start, start + batch_size)
            out[rows] = to_uint8_nhwc(self._run(latents[rows], labels[rows]))
        return out

    def _run(self, latents: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """float32 (B, C, H, W) images; on CUDA through IO binding, so the inputs are copied
        to the device once and the output stays there until the one copy back."""
        if not self._on_cuda:
            (x,) = self._session.run(["image"], {"latent": latents, "class": labels})
            return x
        binding = self._session.io_binding()
        binding.bind_cpu_input("latent", np.ascontiguousarray(latents))
        binding.bind_cpu_input("class", np.ascontiguousarray(labels))
        binding.bind_output("image", "cuda")
        self._session.run_with_iobinding(binding)
        return binding.copy_outputs_to_cpu()[0]

    def _check_inputs(self, labels: np.ndarray, latents: np.ndarray) -> None:
        z_dim, num_classes = self.manifest.z_dim, len(self.manifest.classes)
        if labels.ndim != 1 or latents.shape != (len(labels), z_dim):
            raise ValueError(
                f"expected labels (N,) and latents (N, {z_dim}), "
                f"got {labels.shape} and {latents.shape}"
            )
        if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
            raise ValueError(f"labels must be in 0..{num_classes - 1}")
