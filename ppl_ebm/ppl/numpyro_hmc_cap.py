"""NumPyro's HMC with a cap on leapfrog steps per iteration (mirrors :mod:`ppl_ebm.ppl.pyro_hmc_cap`).

With ``trajectory_length`` set (NumPyro's default, 2 pi) HMC takes ``ceil(length / step)``
leapfrog steps per iteration, uncapped: on a narrow or ill-conditioned target the adapted step
collapses and one iteration takes millions of steps, so a run through our front door hung in
warmup. NUTS has ``max_tree_depth`` (1023 steps); this gives HMC the same bound. Before each
iteration the trajectory is shortened to ``max_leapfrog_steps`` steps at the current step
size (the step is kept, so the cap does not push it into divergences); the state's
``trajectory_length`` is put back after, so an iteration whose step grew again takes the full
length.
"""

from __future__ import annotations

import jax.numpy as jnp
from numpyro.infer import HMC

__all__ = ["DEFAULT_MAX_LEAPFROG_STEPS", "CappedHMC"]

#: NUTS's own bound at its default ``max_tree_depth=10``: 2**10 steps.
DEFAULT_MAX_LEAPFROG_STEPS = 1024


class CappedHMC(HMC):
    """:class:`numpyro.infer.HMC` taking at most ``max_leapfrog_steps`` leapfrog steps per iteration.

    Without ``trajectory_length`` (``num_steps`` fixed) it is plain HMC. :meth:`capped` says,
    per chain, whether the cap shortens the next iteration's trajectory.
    """

    def __init__(self, *args, max_leapfrog_steps: int = DEFAULT_MAX_LEAPFROG_STEPS, **kwargs):
        super().__init__(*args, **kwargs)
        self.max_leapfrog_steps = int(max_leapfrog_steps)

    def _limit(self, state):
        # Half a step short of the cap, so NumPyro's ceil(length / step) is the cap itself.
        return (self.max_leapfrog_steps - 0.5) * state.adapt_state.step_size

    def capped(self, state):
        """Per chain: True where the next iteration would take more than the cap."""
        if self._num_steps is not None or self._trajectory_length is None:
            return jnp.zeros(jnp.shape(state.adapt_state.step_size), dtype=bool)
        return state.trajectory_length > self._limit(state)

    def sample(self, state, model_args, model_kwargs):
        if self._num_steps is not None or self._trajectory_length is None:
            return super().sample(state, model_args, model_kwargs)
        full = state.trajectory_length
        short = state._replace(trajectory_length=jnp.minimum(full, self._limit(state)))
        return super().sample(short, model_args, model_kwargs)._replace(trajectory_length=full)
