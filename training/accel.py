"""How the training step uses the hardware: bf16 autocast, compiled forwards and fused Adam,
chosen per method and device (docs/training.md, "On a GPU").

On a CPU every choice is off, so CPU training (and a bit-exact resume) is what it always was.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch

from training.config import UNSUPERVISED_METHODS, TrainConfig

AUTOCAST_DTYPE = torch.bfloat16  # bf16 keeps fp32's range: no loss scaling, no overflow


@dataclass(frozen=True)
class Acceleration:
    """The speed-ups one run's training step uses; `choose` picks them."""

    autocast_generator: bool = False  # generator step's forwards in bf16
    autocast_critic: bool = False  # critic step's forwards in bf16 (a GP stays fp32)
    compile_generator: bool = False  # torch.compile of the generator's training forward
    compile_critic: bool = False  # likewise the critic's: never with a GP or R1
    fused_adam: bool = False  # Adam(fused=True): one kernel per optimiser step

    @classmethod
    def choose(
        cls, config: TrainConfig, device: torch.device, *, compile: bool = False
    ) -> Acceleration:
        """Everything off on a CPU. On CUDA: fused Adam always; bf16 autocast for the
        labelled methods (the gradient penalty's forward and double backward stay fp32,
        and a critic step with R1, whose penalty differentiates the loss's own forward,
        stays fp32 whole); with `compile`, the generator's forward, and the critic's when
        no penalty needs a double backward (Inductor cannot differentiate its own
        backward): cgan's default hinge + spectral-norm critic compiles, wacgan-gp's not;
        nothing compiles under transitional conditioning. vcagan's own step (R1 and its
        classifier penalty) gets fused Adam only."""
        if device.type != "cuda":
            return cls()
        labelled = config.method not in UNSUPERVISED_METHODS
        double_backward = config.gp_weight > 0 or config.r1_weight > 0
        # a condition weight ramping step by step would recompile the graphs every step
        compile = compile and labelled and config.transition_end == 0
        return cls(
            autocast_generator=labelled,
            autocast_critic=labelled and config.r1_weight == 0,
            compile_generator=compile,
            compile_critic=compile and not double_backward,
            fused_adam=True,
        )

    def generator_precision(self, device: torch.device) -> contextlib.AbstractContextManager:
        """The context the generator step's forwards run in."""
        return _autocast(device) if self.autocast_generator else contextlib.nullcontext()

    def critic_precision(self, device: torch.device) -> contextlib.AbstractContextManager:
        """The context the critic step's forwards run in."""
        return _autocast(device) if self.autocast_critic else contextlib.nullcontext()

    def compiled(self, net: torch.nn.Module, on: bool) -> Callable:
        """`net`'s training forward: compiled when `on`, else `net` itself. The module stays
        uncompiled (same parameters), so export, EMA and checkpoints never see Dynamo."""
        return torch.compile(net) if on else net


def _autocast(device: torch.device) -> contextlib.AbstractContextManager:
    return torch.autocast(device.type, dtype=AUTOCAST_DTYPE)


@contextlib.contextmanager
def full_precision(device: torch.device) -> Iterator[None]:
    """Leave any autocast for fp32 (a penalty's double backward); a no-op without one."""
    with torch.autocast(device.type, enabled=False):
        yield
