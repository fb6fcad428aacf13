"""Pyro's HMC with a cap on leapfrog steps per iteration (mirrors :mod:`ppl_ebm.ppl.numpyro_hmc_cap`).

Pyro's HMC takes ``int(trajectory_length / step_size)`` leapfrog steps per iteration
(``trajectory_length`` 2 pi unless ``num_steps`` is given), uncapped; its ``min_stepsize`` only
bounds the initial step search, not the adaptation, so a collapsing step makes one iteration
arbitrarily long. Here an iteration takes at most ``max_leapfrog_steps`` at the current step
(a shorter trajectory, the step kept), and the iterations the cap shortened are counted.
"""

from __future__ import annotations

from pyro.infer import HMC

__all__ = ["DEFAULT_MAX_LEAPFROG_STEPS", "CappedHMC"]

#: NUTS's own bound at its default ``max_tree_depth=10``: 2**10 steps.
DEFAULT_MAX_LEAPFROG_STEPS = 1024


class CappedHMC(HMC):
    """:class:`pyro.infer.HMC` taking at most ``max_leapfrog_steps`` leapfrog steps per
    iteration; ``capped_iterations`` counts the iterations the cap shortened."""

    def __init__(self, *args, max_leapfrog_steps: int = DEFAULT_MAX_LEAPFROG_STEPS, **kwargs):
        super().__init__(*args, **kwargs)
        self.max_leapfrog_steps = int(max_leapfrog_steps)
        self.capped_iterations = 0

    @property
    def num_steps(self):
        return min(self.max_leapfrog_steps, max(1, int(self.trajectory_length / self.step_size)))

    def sample(self, params):
        # Counted here, once per iteration (num_steps is also read by logging and diagnostics).
        if int(self.trajectory_length / self.step_size) > self.max_leapfrog_steps:
            self.capped_iterations += 1
        return super().sample(params)
