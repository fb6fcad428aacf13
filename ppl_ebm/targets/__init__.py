"""What is sampled: latent EBMs (torch and their JAX mirror), closed-form targets, target checks."""
