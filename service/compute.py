"""The gateway's blocking work (ONNX Runtime, PNG, zip): a pool sized to the cores, and
dynamic batching of concurrent small sample requests (as Triton's dynamic batcher).

Handlers stay `async`; what blocks runs here, not on Starlette's 40-thread pool, so a busy
gateway has at most `compute_threads` generations at once instead of 40 threads contending
for 2 cores. Batching gathers the (labels, latents) of concurrent requests for one model
while the pool is busy (at most `batch_wait_ms`) and runs them in one ORT call: each
request's latents still come from its own seed, and the generator computes each row on its
own, so every request gets the bytes it would get alone (tests/service/test_serving.py).
"""

from __future__ import annotations

import asyncio
import functools
import os
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

from models.sampler import GeneratorSampler

T = TypeVar("T")
CUDA_BATCH_WAIT_MS = 2.0  # batch_wait_ms None: the wait on CUDA


def pool_size(threads: int) -> int:
    """The pool's threads: `threads`, or the machine's cores when 0."""
    return threads or os.cpu_count() or 1


@dataclass
class _Gathering:
    """Requests for one sampler waiting to run together."""

    labels: list[np.ndarray] = field(default_factory=list)
    latents: list[np.ndarray] = field(default_factory=list)
    waiters: list[asyncio.Future] = field(default_factory=list)
    rows: int = 0


class Compute:
    """A bounded pool for blocking calls, with dynamic batching of generator calls.

    Batching is adaptive: a small generator call runs at once while a pool thread is free,
    so a lone request waits for nothing; once every thread is busy, calls for the same model
    gather until a thread frees up or `batch_wait_ms` passes, whichever comes first, and
    then run as one.
    """

    def __init__(
        self, threads: int = 0, batch_wait_ms: float | None = 0.0, batch_max_images: int = 256
    ):
        """Args:
        threads: the pool's threads (0: the cores).
        batch_wait_ms: the longest a call waits to be gathered; 0: no batching; None:
            CUDA_BATCH_WAIT_MS for generators on CUDA, none on CPU.
        batch_max_images: rows of one gathered call; larger calls run alone.
        """
        self.threads = pool_size(threads)
        self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="ganaug-compute")
        self._wait_s = None if batch_wait_ms is None else batch_wait_ms / 1000
        self._max_rows = batch_max_images
        self._open: dict[GeneratorSampler, _Gathering] = {}
        self._busy = 0  # calls on the pool, queued or running
        self.gathered_calls = 0  # ORT calls that batching made, and the requests they served
        self.gathered_requests = 0

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """fn(*args, **kwargs) on the pool."""
        return await self._submit(functools.partial(fn, *args, **kwargs))

    def _submit(self, call: Callable[[], T]) -> asyncio.Future[T]:
        self._busy += 1
        done = asyncio.get_running_loop().run_in_executor(self._pool, call)
        done.add_done_callback(self._freed)
        return done

    def _freed(self, _done: asyncio.Future) -> None:
        self._busy -= 1
        if self._open and self._busy < self.threads:  # the oldest gathering runs now
            sampler, gathering = next(iter(self._open.items()))
            self._flush(sampler, gathering)

    async def iterate(self, chunks: Iterator[bytes]) -> AsyncIterator[bytes]:
        """A blocking byte stream (an archive being generated) pulled a part at a time on the
        pool, for a StreamingResponse."""
        while (chunk := await self.run(next, chunks, None)) is not None:
            yield chunk

    async def generate(
        self, sampler: GeneratorSampler, labels: np.ndarray, latents: np.ndarray
    ) -> np.ndarray:
        """`sampler.generate(labels, latents)`, gathered with concurrent calls when batching
        is on, the request is small and the pool is busy."""
        rows, wait_s = len(labels), self._wait_for(sampler)
        gathering = self._open.get(sampler)
        alone = wait_s <= 0 or rows == 0 or rows > self._max_rows
        if alone or (gathering is None and self._busy < self.threads):
            return await self.run(sampler.generate, labels, latents)
        loop = asyncio.get_running_loop()
        if gathering is not None and gathering.rows + rows > self._max_rows:
            self._flush(sampler, gathering)
            gathering = None
        if gathering is None:
            gathering = self._open[sampler] = _Gathering()
            loop.call_later(wait_s, self._flush, sampler, gathering)
        waiter = loop.create_future()
        gathering.labels.append(labels)
        gathering.latents.append(latents)
        gathering.waiters.append(waiter)
        gathering.rows += rows
        if gathering.rows == self._max_rows:
            self._flush(sampler, gathering)
        return await waiter

    def _wait_for(self, sampler: GeneratorSampler) -> float:
        if self._wait_s is not None:
            return self._wait_s
        # On CPU a generator's cost grows with its rows, so gathering saved nothing there
        # (benchmarks/results/serving.md); on a GPU one call of many rows costs about one.
        return CUDA_BATCH_WAIT_MS / 1000 if sampler.on_cuda else 0.0

    def _flush(self, sampler: GeneratorSampler, gathering: _Gathering) -> None:
        if self._open.get(sampler) is not gathering:
            return  # already sent (full, or a thread freed up), and this is its timer
        del self._open[sampler]
        self.gathered_calls += 1
        self.gathered_requests += len(gathering.waiters)
        labels, latents = np.concatenate(gathering.labels), np.concatenate(gathering.latents)
        done = self._submit(functools.partial(sampler.generate, labels, latents))
        done.add_done_callback(functools.partial(_hand_out, gathering))

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def _hand_out(gathering: _Gathering, done: asyncio.Future) -> None:
    """Give each waiting request its rows of the gathered call (or the call's error)."""
    error = done.exception() if not done.cancelled() else asyncio.CancelledError()
    start = 0
    for labels, waiter in zip(gathering.labels, gathering.waiters, strict=True):
        end = start + len(labels)
        if not waiter.done():  # a request whose client left is cancelled
            if error is not None:
                waiter.set_exception(error)
            else:
                waiter.set_result(done.result()[start:end])
        start = end
