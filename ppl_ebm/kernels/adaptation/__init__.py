"""Step-size adaptation and schedules, separate from the kernels they tune: the
``(init, update, final)`` schemes chosen by name (``step_size``), the dual-averaging arithmetic
they use (``dual_averaging``) and ULA's fixed decay schedule (``step_schedule``)."""
