"""The training run's stats: averaged step losses as stats.jsonl lines and progress reports."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path

from models.artifact import TrainingDevice, atomic_write_bytes
from training.losses import Stats
from training.results import Progress

REPORT_EVERY_STEPS = 10
REPORT_EVERY_S = 2.0


class Reporter:
    """Averages step stats; writes a stats.jsonl line and calls progress_fn per interval.

    `measure_fn` adds point measurements (the critic's Lipschitz bound) to each report.
    Lines are appended whole (O_APPEND, one write each) and synced before every checkpoint;
    a resumed run (`resume_step`) first keeps only the whole lines up to its checkpoint.
    """

    def __init__(
        self,
        total_steps: int,
        stats_path: Path,
        progress_fn: Callable[[Progress], None] | None,
        measure_fn: Callable[[], dict[str, float]] | None = None,
        *,
        resume_step: int | None = None,
        elapsed_s: float = 0.0,
        report_s: float | None = None,
        device: TrainingDevice | None = None,
    ):
        self.device = device  # passed on in Progress, so the API shows it while training
        self.total_steps, self.progress_fn, self.measure_fn = total_steps, progress_fn, measure_fn
        self.report_s = report_s  # the estimated report after training, passed on in Progress
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND
        if resume_step is None:
            flags |= os.O_TRUNC
        else:
            keep_stats_through(stats_path, resume_step)
        self.stats_fd = os.open(stats_path, flags, 0o644)
        self.start = self.last_report = time.perf_counter() - elapsed_s
        self.sums: Stats = {}
        self.count = 0
        self.last_losses: dict[str, float] = {}

    def add(
        self, step: int, stats: Stats, points: dict[str, float] | None = None, force: bool = False
    ) -> None:
        """Add a step's stats; `points` (measured at this step) or `force` report now."""
        for key, value in stats.items():
            self.sums[key] = self.sums.get(key, 0.0) + value
        self.count += 1
        now = time.perf_counter()
        if (
            force
            or points
            or step % REPORT_EVERY_STEPS == 0
            or step == self.total_steps
            or now - self.last_report >= REPORT_EVERY_S
        ):
            self._report(step, now, points or {})

    def flush(self, step: int) -> None:
        """Report the steps added since the last report, if any, as of `step`."""
        if self.count:
            self._report(step, time.perf_counter(), {})

    def _report(self, step: int, now: float, points: dict[str, float]) -> None:
        # .item() syncs with the device, so it happens once per report, not per step
        self.last_losses = {k: float(v.item()) / self.count for k, v in self.sums.items()}
        if self.measure_fn is not None:
            self.last_losses |= self.measure_fn()
        self.last_losses |= points
        self.sums, self.count, self.last_report = {}, 0, now
        elapsed = now - self.start
        eta = elapsed / step * (self.total_steps - step)
        line = {
            "step": step,
            "elapsed_s": round(elapsed, 3),
            "time": round(time.time(), 3),
            "losses": self.last_losses,
        }
        data = (json.dumps(line) + "\n").encode()
        while data:  # one write per line: O_APPEND puts it whole at the end
            data = data[os.write(self.stats_fd, data) :]
        if self.progress_fn is not None:
            progress = Progress(
                step,
                self.total_steps,
                self.last_losses,
                elapsed,
                eta,
                self.report_s,
                line["time"],
                device=None if self.device is None else self.device.type,
                device_name=None if self.device is None else self.device.name,
            )
            self.progress_fn(progress)

    def sync(self) -> None:
        """Make the lines written so far durable (before a checkpoint that follows them)."""
        os.fsync(self.stats_fd)

    @property
    def elapsed_s(self) -> float:
        return time.perf_counter() - self.start

    def close(self) -> None:
        self.sync()
        os.close(self.stats_fd)


def keep_stats_through(path: Path, step: int) -> None:
    """Keep the whole, valid stats lines up to `step` in increasing step order; drop the rest
    (lines a lost run wrote past its checkpoint, a torn last line, bytes that are no JSON)."""
    if not path.exists():
        return
    kept, last = [], 0
    for raw in path.read_bytes().split(b"\n")[:-1]:  # the part after the last newline is torn
        try:
            line_step = json.loads(raw)["step"]
        except (ValueError, TypeError, KeyError):
            continue
        if isinstance(line_step, int) and last < line_step <= step:
            kept.append(raw + b"\n")
            last = line_step
    atomic_write_bytes(path, b"".join(kept))
