"""Batched MCMC kernels: pure steps mirrored name for name in torch (``*_torch``) and JAX
(``*_jax``), their adaptation (``adaptation/``) and composition (``cycle``)."""
