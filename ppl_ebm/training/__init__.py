"""Fitting weights: GAN training, critic fine-tuning and calibration."""
