"""The faces the PPLs see: Pyro and NumPyro models, ``MCMCKernel`` classes and batched potentials."""
