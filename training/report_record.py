"""The report's typed results' base, and how synthetic rows are mixed (a leaf module: the
report's setup and its results both use Mixing)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

from pydantic import BaseModel


class Record:
    """A typed result of the report; `record()` is its value in report.json."""

    def record(self) -> dict:
        return asdict(self)  # type: ignore[call-overload]  # subclasses are dataclasses


def record(value: Any) -> Any:
    """A part's result as report.json holds it: typed results (and lists of them) as their
    records, the manifest's pydantic models dumped, anything else as it is."""
    if isinstance(value, Record):
        return value.record()
    if isinstance(value, BaseModel):
        return value.model_dump()
    if isinstance(value, list):
        return [record(item) for item in value]
    return value


@dataclass(frozen=True)
class Mixing(Record):
    """How synthetic rows enter a classifier's training, as `ganaug.data` applies them
    (RecipeBatchSampler, recipe_loss): the Recipe's mixing fields, by their names."""

    synthetic_batch_fraction: float  # synthetic share of every batch
    synthetic_loss_weight: float  # factor on the loss of synthetic rows
    labels: Literal["soft", "hard"]  # the soft labeller's probabilities, or the drawn class
    real_only_final_steps: float  # fraction of the steps, at the end, on real rows only
