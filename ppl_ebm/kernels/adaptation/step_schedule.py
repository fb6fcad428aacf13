"""Step-size and noise schedules for Langevin dynamics (DDLS App. B.2).

DDLS decays the step size by x0.1 every 200 steps and "anneals the noise simultaneously".
We multiply the noise scale by ``noise_decay_rate`` at the same steps; by default that is
``sqrt(decay_rate)``, which keeps ``noise_scale**2 / step_size`` fixed, so the chain keeps
targeting the same distribution while its steps shrink. Pass ``noise_decay_rate=decay_rate``
to shrink both by the same factor (a colder target as steps shrink, as some ports do).
Arithmetic operators only: ``step`` may be an int, a torch tensor or a traced JAX integer.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

__all__ = ["StepSchedule"]


class StepSchedule(NamedTuple):
    """``step_size * decay_rate ** (step // decay_every)`` and the matching noise scale.

    ``noise_scale=None`` means ``sqrt(step_size)``: exact Langevin dynamics (DDLS Eq. 4).
    ``decay_every=None`` means constant values.
    """

    step_size: float
    noise_scale: float | None = None
    decay_rate: float = 0.1
    decay_every: int | None = None
    noise_decay_rate: float | None = None

    def validate(self) -> "StepSchedule":
        if not (math.isfinite(self.step_size) and self.step_size > 0):
            raise ValueError(f"step_size must be a finite number > 0, got {self.step_size!r}.")
        if self.noise_scale is not None and not (
            math.isfinite(self.noise_scale) and self.noise_scale >= 0
        ):
            raise ValueError(f"noise_scale must be None or a number >= 0, got {self.noise_scale!r}.")
        if self.decay_every is not None and not (
            isinstance(self.decay_every, int) and self.decay_every > 0
        ):
            raise ValueError(f"decay_every must be None or a positive int, got {self.decay_every!r}.")
        for name in ("decay_rate", "noise_decay_rate"):
            value = getattr(self, name)
            if value is not None and not (0 < value <= 1):
                raise ValueError(f"{name} must be in (0, 1], got {value!r}.")
        return self

    @property
    def initial_noise_scale(self) -> float:
        return math.sqrt(self.step_size) if self.noise_scale is None else self.noise_scale

    def at(self, step: Any) -> tuple[Any, Any]:
        """(step size, noise scale) to use at 0-based iteration ``step``."""
        if self.decay_every is None:
            return self.step_size, self.initial_noise_scale
        decays = step // self.decay_every
        noise_decay_rate = (
            math.sqrt(self.decay_rate) if self.noise_decay_rate is None else self.noise_decay_rate
        )
        return (
            self.step_size * self.decay_rate**decays,
            self.initial_noise_scale * noise_decay_rate**decays,
        )
