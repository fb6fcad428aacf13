"""Step-size adaptation and schedules, separate from the kernels they tune."""
