"""Exceptions of the training package (torch-free, so callers can catch them cheaply)."""


class TrainingAborted(Exception):
    """Raised by `training.run` when its abort_fn returned True."""
