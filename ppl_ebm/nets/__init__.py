"""Network architectures (``architectures``), networks by name (``registry``) and their
translation from torch to JAX (``torch_to_jax``)."""

from ppl_ebm.nets.registry import NetworkConfig, build_network, network_names, register_network

__all__ = ["NetworkConfig", "build_network", "network_names", "register_network"]
