"""Exceptions of the training package (torch-free, so callers can catch them cheaply)."""


class TrainingAborted(Exception):
    """Raised by `training.run` when its abort_fn returned True."""


class TrainingInterrupted(TrainingAborted):
    """Raised by `training.run` when its interrupt_fn returned True, after it saved a
    checkpoint: running again on the same directory resumes there."""
