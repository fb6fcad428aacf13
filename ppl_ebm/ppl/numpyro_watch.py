"""NumPyro kernels that report each iteration to the host: clocks, a deadline, one progress bar.

NumPyro's ``MCMC.run`` runs warmup and sampling as one compiled loop, so a Python-side clock
cannot stop it or see where warmup ends, and its own bar shows nothing useful for vectorised
chains (no acceptance, no step). :func:`watched` subclasses a NumPyro kernel so that each
iteration first calls the host (one :func:`jax.experimental.io_callback` per iteration, not
per leapfrog step) with the chains' mean acceptance and step and their leapfrog counts; the
host (:class:`Watch`) updates the bar, notes the time warmup ends, adds up the gradients, and
answers whether the phase's deadline has passed. Past it, the state is frozen and marked
(``num_steps`` -1, a field the next iteration only reports, never reads), and every further
iteration sees the mark and returns at once without calling the host, so ``MCMC.run`` finishes
in microseconds per remaining iteration (~8 us on 2 loaded cores; a host call each would cost
~0.1-0.5 ms: 200,000 warmup iterations left were a minute and a half). NumPyro's loop has fixed
bounds, so those iterations cannot be skipped altogether. The iterations done are the host's count.
The driver stays NumPyro's own ``MCMC``.
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import io_callback

__all__ = ["Watch", "watched"]


class Watch:
    """The host side of a run of ``num_warmup`` + sampling iterations.

    ``max_seconds`` (or None) bounds warmup from its first iteration and sampling from the end
    of warmup (compilation comes before the first iteration and cannot be interrupted).
    After the run: ``iterations`` done, ``first_call`` (``perf_counter`` time of the first
    iteration: before it, NumPyro traced, compiled and initialised the chains), ``warmup_end`` (``perf_counter`` time, None if warmup
    did not end), ``expired``, and ``leapfrog_steps`` per chain (with :meth:`finish`) and, per
    phase, the iterations that took ``cap`` steps or more (``capped``)."""

    def __init__(self, num_warmup: int, max_seconds: float | None = None, bar=None,
                 cap: int | None = None):
        self.num_warmup, self.max_seconds, self.bar, self.cap = num_warmup, max_seconds, bar, cap
        self.deadline = None
        self.warmup_end = None
        self.first_call = None
        self.iterations = 0
        self.expired = False
        self.leapfrog_steps = None
        self.capped = None
        self._counted = 0
        self._shown = 0.0

    def _count(self, num_steps) -> None:
        # The steps of the iteration before this call, once (a frozen state repeats them).
        steps = np.asarray(num_steps, dtype=np.int64).reshape(-1)
        if self.iterations > self._counted and np.all(steps >= 0):
            if self.leapfrog_steps is None:
                self.leapfrog_steps = np.zeros_like(steps)
                self.capped = np.zeros_like(steps)
            self.leapfrog_steps += steps
            if self.cap is not None:
                self.capped += steps >= self.cap
            self._counted = self.iterations

    def __call__(self, acceptance, step_size, num_steps) -> np.ndarray:
        now = time.perf_counter()
        if self.first_call is None:
            self.first_call = now
            if self.max_seconds is not None and self.num_warmup:
                self.deadline = now + self.max_seconds  # warmup's budget
        self._count(num_steps)
        if self.iterations == self.num_warmup and self.warmup_end is None and not self.expired:
            self.warmup_end = now
            if self.max_seconds is not None:  # sampling's own budget, from the end of warmup
                self.deadline = now + self.max_seconds
        if self.expired or (self.deadline is not None and now >= self.deadline):
            self.expired = True
            return np.asarray(False)
        self.iterations += 1
        if self.bar is not None:
            self.bar.update(1)
            if now - self._shown >= 0.5 or self.iterations == 1:  # formatting every iteration costs more than a toy's NUTS
                self._shown = now
                self.bar.set_postfix({"step": f"{float(step_size):.2e}", "acc": f"{float(acceptance):.2f}"},
                                     refresh=False)
        return np.asarray(True)

    def finish(self, last_num_steps) -> None:
        """Count the last iteration's steps (no call followed it)."""
        self._count(last_num_steps)


def watched(kernel_class: type) -> type:
    """``kernel_class`` (NumPyro's NUTS or HMC) whose ``sample`` asks ``self.watch`` (a
    :class:`Watch`, or None: plain NumPyro) before each iteration."""

    class Watched(kernel_class):
        watch: Watch | None = None

        def sample(self, state, model_args, model_kwargs):
            parent = super().sample
            if self.watch is None:
                return parent(state, model_args, model_kwargs)
            def frozen(current):
                return current._replace(num_steps=jnp.full_like(current.num_steps, -1))

            def asked(current):
                go = io_callback(self.watch, jax.ShapeDtypeStruct((), jnp.bool_), jnp.mean(current.mean_accept_prob),
                                 jnp.mean(current.adapt_state.step_size), current.num_steps, ordered=False)
                return jax.lax.cond(go, lambda live: parent(live, model_args, model_kwargs), frozen, current)

            return jax.lax.cond(jnp.all(state.num_steps < 0), frozen, asked, state)

    Watched.__name__ = Watched.__qualname__ = f"Watched{kernel_class.__name__}"
    return Watched
