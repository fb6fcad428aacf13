"""Network architectures and their translation from torch to JAX."""
